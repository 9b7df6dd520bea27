"""TransRate: mutual information between features and labels by coding rate."""

import numpy as np

from keras_transfer.api_export import keras_transfer_export
from keras_transfer.transferability._validation import (
    check_class_labels,
    check_features,
)


@keras_transfer_export("keras_transfer.transferability.transrate")
def transrate(features, labels, eps=1e-4, center=True):
    """TransRate of features for a classification task (Huang et al., ICML 2022).

    TransRate estimates the mutual information between features `Z` and labels
    `Y` as a difference of coding rates, `R(Z) - R(Z | Y)`, where
    `R(Z) = 1/2 log det(I + Z^T Z / (N eps))` is the number of nats needed to
    code the (centred) features up to distortion `eps`, and
    `R(Z | Y) = sum_c (N_c / N) R(Z_c)` is the rate when each class is coded
    separately (with the features centred once, over all samples, as in the
    paper). Features whose classes span different directions, each class
    compact, score high. Scores depend on the feature scale; compare models on
    features normalised the same way.

    Args:
        features: Array or tensor of shape `(num_samples, num_features)`.
        labels: Array or tensor of shape `(num_samples,)`. Class indices.
        eps: Float. Distortion `eps` (the `epsilon^2` of the paper).
            Default 1e-4.
        center: Boolean. Subtract the feature mean first (as in the paper).

    Returns:
        A Python float: the TransRate in nats.

    Examples:

        >>> rng = np.random.default_rng(0)
        >>> y = np.repeat([0, 1], 50)
        >>> directions = np.array([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]])
        >>> noise = rng.normal(size=(100, 4))
        >>> separated = noise * directions[y]  # each class in its own 2D subspace
        >>> mixed = noise
        >>> transrate(separated, y) > transrate(mixed, y)
        True
    """
    if not isinstance(eps, (int, float)) or not eps > 0:
        raise ValueError(f"`eps` must be a positive float. Received: eps={eps}")
    f = check_features(features)
    y, classes = check_class_labels(labels, f.shape[0])
    if center:
        f = f - f.mean(axis=0, keepdims=True)
    n = f.shape[0]
    total = _coding_rate(f, eps)
    conditional = 0.0
    for c in range(classes.size):
        fc = f[y == c]
        conditional += fc.shape[0] / n * _coding_rate(fc, eps)
    return float(total - conditional)


def _coding_rate(z, eps):
    """1/2 log det(I + Z^T Z / (n eps)), via the smaller Gram matrix."""
    n, d = z.shape
    gram = z @ z.T if n < d else z.T @ z
    eigenvalues = np.linalg.eigvalsh(gram)
    return 0.5 * float(np.sum(np.log1p(np.maximum(eigenvalues, 0.0) / (n * eps))))
