"""NCE: negative conditional entropy of target labels given source labels."""

import numpy as np

from keras_transfer.api_export import keras_transfer_export
from keras_transfer.transferability._validation import (
    check_class_labels,
    check_same_length,
    to_numpy,
)


@keras_transfer_export("keras_transfer.transferability.nce")
def nce(source_labels, labels):
    """Negative conditional entropy `-H(Y | Z)` (Tran et al., ICCV 2019).

    `Z` are the labels the source model assigns to the target samples (its
    argmax predictions, or the source-task labels when the same samples are
    labelled for both tasks) and `Y` the target labels. NCE is
    `sum_{y,z} P(y, z) log P(y | z)` with the empirical joint distribution:
    0 when the source label determines the target label, `-log(C)` when it
    says nothing about `C` balanced target classes. Higher is better.

    Args:
        source_labels: Array or tensor of shape `(num_samples,)`. Integer
            source class of each target sample.
        labels: Array or tensor of shape `(num_samples,)`. Target class
            indices.

    Returns:
        A Python float: the NCE score (in nats, <= 0).

    Examples:

        >>> z = np.array([0, 0, 1, 1, 2, 2])
        >>> nce(z, np.array([0, 0, 1, 1, 1, 1]))  # z determines y
        0.0
        >>> round(nce(np.array([0, 1, 0, 1]), np.array([0, 0, 1, 1])), 4)  # -log 2
        -0.6931
    """
    z = to_numpy(source_labels, "source_labels")
    y = to_numpy(labels, "labels")
    if z.ndim == 2 and z.shape[1] == 1:
        z = z[:, 0]
    if z.ndim != 1:
        raise ValueError(
            "`source_labels` must be a 1D array of source class indices, shape "
            f"(num_samples,). Received: source_labels.shape={z.shape}. For "
            "probabilities use `np.argmax(p, axis=-1)`, or `leep`."
        )
    check_same_length(z, y, "source_labels", "labels")
    y, _ = check_class_labels(y, z.shape[0])
    if np.issubdtype(z.dtype, np.floating):
        if not np.all(z == np.round(z)):
            raise ValueError(
                "`source_labels` must hold integer class indices. Received: "
                "non-integer floats. For probabilities use `leep`."
            )
    elif not (np.issubdtype(z.dtype, np.integer) or z.dtype == bool):
        raise ValueError(
            "`source_labels` must hold integer class indices. Received: "
            f"source_labels.dtype={z.dtype}"
        )
    _, z = np.unique(z, return_inverse=True)
    z = z.reshape(-1)
    n = y.shape[0]
    joint = np.zeros((z.max() + 1, y.max() + 1))
    np.add.at(joint, (z, y), 1.0)
    joint /= n
    marginal_z = joint.sum(axis=1, keepdims=True)
    nonzero = joint > 0
    conditional = np.where(nonzero, joint / np.maximum(marginal_z, 1e-300), 1.0)
    return float(np.sum(joint[nonzero] * np.log(conditional[nonzero])))
