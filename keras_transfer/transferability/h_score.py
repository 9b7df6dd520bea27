"""H-score and its shrinkage-regularized variant."""

import numpy as np

from keras_transfer.api_export import keras_transfer_export
from keras_transfer.transferability._validation import (
    check_class_labels,
    check_features,
)


@keras_transfer_export("keras_transfer.transferability.h_score")
def h_score(features, labels, shrinkage=None):
    """H-score of features for a classification task (Bao et al., ICIP 2019).

    `H(f) = tr(cov(f)^-1 cov(E[f | y]))`: how much of the feature variance
    lies between the class means, the asymptotic error exponent of a
    classifier on `f`. The plain estimate uses a pseudo-inverse of the sample
    covariance and becomes unreliable when features are many and samples
    few. `shrinkage` selects the regularized H-score of Ibrahim et al. (2022):
    the covariance is replaced by `(1 - a) cov(f) + a (tr(cov(f)) / D) I` and
    the between-class covariance scaled by `1 - a`, with `a` the Ledoit-Wolf
    shrinkage by default. Higher is better.

    Args:
        features: Array or tensor of shape `(num_samples, num_features)`.
        labels: Array or tensor of shape `(num_samples,)`. Class indices.
        shrinkage: `None` (default, plain H-score), `"auto"` (Ledoit-Wolf
            estimate) or a float in `[0, 1]`, the shrinkage intensity `a`.

    Returns:
        A Python float: the H-score.

    Examples:

        >>> f = np.array([[0.0], [2.0], [4.0], [6.0]])
        >>> y = np.array([0, 0, 1, 1])
        >>> h_score(f, y)  # between-class variance 4 / total variance 5
        0.8
        >>> round(h_score(f, y, shrinkage=0.5), 4)  # 0.5 * 4 / (0.5 * 5 + 0.5 * 5)
        0.4
    """
    if shrinkage is not None and not (
        shrinkage == "auto"
        or (isinstance(shrinkage, (int, float)) and 0.0 <= shrinkage <= 1.0)
    ):
        raise ValueError(
            "`shrinkage` must be None, 'auto' or a float in [0, 1]. "
            f"Received: shrinkage={shrinkage!r}"
        )
    f = check_features(features)
    y, classes = check_class_labels(labels, f.shape[0])
    n, d = f.shape
    f = f - f.mean(axis=0, keepdims=True)
    cov = f.T @ f / n
    # Replace every sample by its class mean: the covariance of E[f | y].
    counts = np.bincount(y, minlength=classes.size).astype(np.float64)
    means = np.zeros((classes.size, d))
    np.add.at(means, y, f)
    means /= counts[:, None]
    between = (means * counts[:, None]).T @ means / n
    if shrinkage is None:
        return float(np.trace(np.linalg.pinv(cov, hermitian=True) @ between))
    a = _ledoit_wolf_shrinkage(f) if shrinkage == "auto" else float(shrinkage)
    mu = np.trace(cov) / d
    regularized = (1.0 - a) * cov + a * mu * np.eye(d)
    solved = np.linalg.lstsq(regularized, (1.0 - a) * between, rcond=None)[0]
    return float(np.trace(solved))


def _ledoit_wolf_shrinkage(centered):
    """Ledoit-Wolf (2004) shrinkage intensity towards a scaled identity.

    Args:
        centered: Float array (N, D) with zero column means.

    Returns:
        A float in [0, 1].
    """
    n, d = centered.shape
    cov = centered.T @ centered / n
    mu = np.trace(cov) / d
    # d^2 = ||S - mu I||_F^2 / D, with ||.||_F the Frobenius norm.
    dist2 = (np.sum(cov * cov) - 2.0 * mu * np.trace(cov) + d * mu * mu) / d
    # b^2 = 1/N^2 sum_k ||x_k x_k^T - S||_F^2 / D
    #     = (sum_k ||x_k||^4 - N ||S||_F^2) / (N^2 D)
    norms4 = np.sum(np.sum(centered * centered, axis=1) ** 2)
    b2 = (norms4 - n * np.sum(cov * cov)) / (n * n * d)
    if dist2 <= 0:
        return 1.0
    return float(np.clip(min(b2, dist2) / dist2, 0.0, 1.0))
