"""LEEP: log expected empirical prediction."""

import numpy as np

from keras_transfer.api_export import keras_transfer_export
from keras_transfer.transferability._validation import (
    check_class_labels,
    to_numpy,
)


@keras_transfer_export("keras_transfer.transferability.leep")
def leep(source_probabilities, labels, atol=1e-3):
    """LEEP score of a source classifier for a target task (Nguyen et al., 2020).

    Runs the source model's classifier on the target samples to get
    `theta(x)`, a distribution over the source classes `z`. LEEP builds the
    empirical conditional `P(y | z)` of target label given source label from
    the joint `P(y, z) = 1/N sum_{i: y_i = y} theta(x_i)_z`, and scores the
    "expected empirical predictor" `sum_z P(y | z) theta(x)_z` by its average
    log-likelihood on the target labels. It is at most 0; higher is better.

    Args:
        source_probabilities: Array or tensor of shape
            `(num_samples, num_source_classes)`. The source model's predicted
            class probabilities (after softmax) on the target samples. Rows
            must sum to one.
        labels: Array or tensor of shape `(num_samples,)`. Target class
            indices.
        atol: Float. How far a row of `source_probabilities` may sum from one.

    Returns:
        A Python float: the LEEP score (an average log-probability, <= 0).

    Examples:

        >>> theta = np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9], [0.3, 0.7]])
        >>> y = np.array([0, 0, 1, 1])
        >>> round(leep(theta, y), 4)
        -0.3426
    """
    p = to_numpy(source_probabilities, "source_probabilities")
    if p.ndim != 2:
        raise ValueError(
            "`source_probabilities` must be a 2D array of shape (num_samples, "
            "num_source_classes). Received: "
            f"source_probabilities.shape={p.shape}."
        )
    p = p.astype(np.float64)
    if not np.all(np.isfinite(p)):
        raise ValueError(
            "`source_probabilities` must be finite. Received: "
            f"{int(np.sum(~np.isfinite(p)))} NaN or infinite values."
        )
    if np.any(p < 0):
        raise ValueError(
            "`source_probabilities` must be probabilities in [0, 1]. Received: "
            f"min value {p.min():.4g}. Did you pass logits? Apply a softmax first."
        )
    sums = p.sum(axis=1)
    if np.any(np.abs(sums - 1.0) > atol):
        worst = int(np.argmax(np.abs(sums - 1.0)))
        raise ValueError(
            "Each row of `source_probabilities` must sum to 1 (within "
            f"atol={atol}). Received: row {worst} sums to {sums[worst]:.6g}. "
            "Pass the softmax of the source classifier's outputs, not logits."
        )
    y, classes = check_class_labels(labels, p.shape[0])
    n = p.shape[0]
    one_hot = (y[:, None] == np.arange(classes.size)[None, :]).astype(np.float64)
    joint = one_hot.T @ p / n  # (C_target, Z): P(y, z)
    marginal_z = joint.sum(axis=0, keepdims=True)  # P(z)
    conditional = np.divide(
        joint, marginal_z, out=np.zeros_like(joint), where=marginal_z > 0
    )  # P(y | z)
    eep = p @ conditional.T  # (N, C_target): sum_z P(y|z) theta(x)_z
    likelihood = eep[np.arange(n), y]
    return float(np.mean(np.log(likelihood)))
