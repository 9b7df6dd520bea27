"""LogME: the log marginal evidence of a linear model on pretrained features."""

import warnings

import numpy as np

from keras_transfer.api_export import keras_transfer_export
from keras_transfer.transferability._validation import (
    check_class_labels,
    check_features,
    to_numpy,
)

# Added to the denominators of the fixed-point updates so that a target the
# features fit exactly (zero residual) or a zero weight vector stays finite.
_EPSILON = 1e-5


@keras_transfer_export("keras_transfer.transferability.logme")
def logme(features, labels, regression=None, tol=1e-3, max_iter=11):
    """LogME score of features for a target task (You et al., ICML 2021).

    LogME treats each target (one column of a one-hot encoding for
    classification, one output for regression) as a Bayesian linear
    regression on the features, `y = features @ w + noise` with
    `w ~ N(0, 1/alpha)` and `noise ~ N(0, 1/beta)`. It maximises the log
    marginal evidence `log p(y | features, alpha, beta)` over `alpha, beta`
    with the fixed-point updates of MacKay, and returns that maximum divided by
    the number of samples, averaged over targets. Higher is better; compare
    scores on the same target data only.

    The computation does one eigendecomposition of `F^T F` (or `F F^T` when
    there are fewer samples than features) shared by every target; each
    fixed-point iteration is then O(min(N, D)) per target and is vectorised
    over targets.

    Args:
        features: Array or tensor of shape `(num_samples, num_features)`.
            Features of the target samples from a pretrained model.
        labels: Array or tensor. Integer class indices of shape
            `(num_samples,)` for classification, or float targets of shape
            `(num_samples,)` or `(num_samples, num_targets)` for regression.
        regression: Optional boolean. `None` (default) infers it from
            `labels`: float labels are regression targets, integer labels are
            classes. Pass `False` to treat whole-number float labels as
            classes.
        tol: Float. The iterations for a target stop once `alpha / beta`
            changes by at most this fraction. Default 1e-3.
        max_iter: Integer. Maximum number of fixed-point iterations per
            target. Default 11 (they typically converge in 2-3).

    Returns:
        A Python float: the LogME score.

    Examples:

        >>> rng = np.random.default_rng(0)
        >>> y = rng.integers(0, 3, 300)
        >>> informative = rng.normal(size=(300, 16)) + 2.0 * np.eye(16)[y]
        >>> noise = rng.normal(size=(300, 16))
        >>> logme(informative, y) > logme(noise, y)
        True
        >>> targets = noise[:, :2] @ np.array([[1.0], [-2.0]])  # regression
        >>> round(logme(noise, targets[:, 0]), 1) > 0
        True
    """
    if not isinstance(tol, (int, float)) or not tol > 0:
        raise ValueError(f"`tol` must be a positive float. Received: tol={tol}")
    if not isinstance(max_iter, (int, np.integer)) or max_iter < 1:
        raise ValueError(
            f"`max_iter` must be a positive integer. Received: max_iter={max_iter}"
        )
    f = check_features(features)
    targets = _targets(labels, f.shape[0], regression)
    evidence = _evidence_per_target(f, targets, tol, int(max_iter))
    return float(np.mean(evidence))


def _targets(labels, num_samples, regression):
    """Return an (N, K) float64 matrix of regression targets / one-hot classes."""
    y = to_numpy(labels, "labels")
    if regression is None:
        regression = np.issubdtype(y.dtype, np.floating)
        if regression and y.ndim == 1 and np.all(np.isfinite(y)):
            distinct = np.unique(y)
            if distinct.size <= 50 and np.all(distinct == np.round(distinct)):
                warnings.warn(
                    f"`labels` are floats with {distinct.size} distinct whole "
                    "values: LogME treats them as regression targets. If they "
                    "are class indices, pass integer labels or "
                    "`regression=False`.",
                    stacklevel=3,
                )
    if not regression:
        if y.ndim == 2 and y.shape[1] > 1:
            raise ValueError(
                "`labels` for classification must have shape (num_samples,). "
                f"Received: labels.shape={y.shape}. Pass class indices, or "
                "`regression=True` for a matrix of regression targets."
            )
        codes, classes = check_class_labels(y, num_samples)
        return (codes[:, None] == np.arange(classes.size)[None, :]).astype(
            np.float64
        )
    if y.ndim == 1:
        y = y[:, None]
    if y.ndim != 2:
        raise ValueError(
            "`labels` for regression must have shape (num_samples,) or "
            f"(num_samples, num_targets). Received: labels.shape={y.shape}."
        )
    if y.shape[0] != num_samples:
        raise ValueError(
            f"`labels` must have one row per sample: expected {num_samples} rows "
            f"(the first dimension of `features`), received labels.shape={y.shape}."
        )
    y = y.astype(np.float64)
    if not np.all(np.isfinite(y)):
        raise ValueError(
            "`labels` must be finite. Received: regression targets with NaN or "
            "infinite values."
        )
    return y


def _evidence_per_target(f, y, tol, max_iter):
    """Maximum log evidence / N for every column of `y` (vectorised)."""
    n, d = f.shape
    if n > d:
        sigma, vectors = np.linalg.eigh(f.T @ f)
        keep = sigma > sigma[-1] * max(n, d) * np.finfo(np.float64).eps
        sigma, vectors = sigma[keep], vectors[:, keep]
        # Coordinates of y on the left singular vectors u_i = F v_i / s_i.
        x2 = (vectors.T @ (f.T @ y)) ** 2 / sigma[:, None]
    else:
        sigma, vectors = np.linalg.eigh(f @ f.T)
        keep = sigma > sigma[-1] * max(n, d) * np.finfo(np.float64).eps
        sigma, vectors = sigma[keep], vectors[:, keep]
        x2 = (vectors.T @ y) ** 2
    rank = sigma.size
    sigma = sigma[:, None]  # (k, 1), broadcast against (k, K)
    # Part of |y|^2 outside the span of the features (zero singular values).
    residual_outside = np.sum(y * y, axis=0) - np.sum(x2, axis=0)

    num_targets = y.shape[1]
    alpha = np.ones(num_targets)
    beta = np.ones(num_targets)
    m2 = np.zeros(num_targets)
    res2 = np.zeros(num_targets)
    active = np.ones(num_targets, dtype=bool)
    for _ in range(max_iter):
        idx = np.flatnonzero(active)
        t = alpha[idx] / beta[idx]  # ratio alpha / beta of the previous step
        s, xx = sigma, x2[:, idx]
        gamma = np.sum(s / (s + t), axis=0)
        m2_new = np.sum(s * xx / (s + t) ** 2, axis=0)
        res2_new = np.sum(xx * (t / (s + t)) ** 2, axis=0) + residual_outside[idx]
        alpha[idx] = gamma / (m2_new + _EPSILON)
        beta[idx] = (n - gamma) / (res2_new + _EPSILON)
        m2[idx], res2[idx] = m2_new, res2_new
        converged = np.abs(alpha[idx] / beta[idx] - t) / t <= tol
        active[idx[converged]] = False
        if not active.any():
            break
    log_det = np.sum(np.log(alpha[None, :] + beta[None, :] * sigma), axis=0) + (
        d - rank
    ) * np.log(alpha)
    evidence = (
        0.5 * d * np.log(alpha)
        + 0.5 * n * np.log(beta)
        - 0.5 * log_det
        - 0.5 * beta * res2
        - 0.5 * alpha * m2
        - 0.5 * n * np.log(2.0 * np.pi)
    )
    return evidence / n
