"""Distances between a source and a target feature distribution."""

import numpy as np

from keras_transfer.api_export import keras_transfer_export
from keras_transfer.transferability._validation import check_features

METHODS = ("a_distance", "mmd")


@keras_transfer_export("keras_transfer.transferability.domain_distance")
def domain_distance(
    source_features,
    target_features,
    method="a_distance",
    num_folds=5,
    max_samples=2000,
    seed=0,
):
    """How far apart two domains are in a feature space, before any training.

    Compute features of a source sample and of a target sample with the same
    pretrained model and compare them: a small distance means near transfer
    (the target looks like data the model has seen), a large one far transfer.

    - `"a_distance"`: the proxy A-distance of Ben-David et al. (2007),
      `2 (1 - 2 err)`, where `err` is the held-out error (k-fold
      cross-validation) of a linear classifier (ridge regression on
      standardised features, an intercept and -1/+1 domain targets) trained to
      tell source from target. 0 when the domains cannot be told apart, 2 when
      they are linearly separable. Clipped to [0, 2].
    - `"mmd"`: the squared maximum mean discrepancy with a Gaussian kernel
      `exp(-|x - y|^2 / h)`, `h` the median squared distance between pooled
      samples (median heuristic); the unbiased estimate, so it is close to 0
      (and can be slightly negative) for identical distributions. At most
      `max_samples` points of each domain are used (a random subset).

    Args:
        source_features: Array or tensor of shape `(num_source, num_features)`.
        target_features: Array or tensor of shape `(num_target, num_features)`.
        method: String. `"a_distance"` (default) or `"mmd"`.
        num_folds: Integer >= 2. Folds of the cross-validation for
            `"a_distance"`.
        max_samples: Integer. At most this many samples per domain are used.
        seed: Integer. Seed of the subsampling and the fold split.

    Returns:
        A Python float.

    Examples:

        >>> rng = np.random.default_rng(0)
        >>> source = rng.normal(size=(200, 8))
        >>> near = rng.normal(size=(200, 8))
        >>> far = rng.normal(size=(200, 8)) + 1.5
        >>> domain_distance(source, near) < 0.3 < domain_distance(source, far)
        True
        >>> near_mmd = domain_distance(source, near, "mmd")
        >>> bool(near_mmd < domain_distance(source, far, "mmd"))
        True
    """
    if method not in METHODS:
        raise ValueError(
            f"`method` must be one of {METHODS}. Received: method={method!r}"
        )
    if not isinstance(num_folds, (int, np.integer)) or num_folds < 2:
        raise ValueError(
            f"`num_folds` must be an integer >= 2. Received: num_folds={num_folds}"
        )
    if not isinstance(max_samples, (int, np.integer)) or max_samples < 2:
        raise ValueError(
            "`max_samples` must be an integer >= 2. Received: "
            f"max_samples={max_samples}"
        )
    xs = check_features(source_features, "source_features")
    xt = check_features(target_features, "target_features")
    if xs.shape[1] != xt.shape[1]:
        raise ValueError(
            "`source_features` and `target_features` must have the same number of "
            f"features. Received: source_features.shape={xs.shape} and "
            f"target_features.shape={xt.shape}. Extract both with the same model."
        )
    rng = np.random.default_rng(seed)
    xs = _subsample(xs, max_samples, rng)
    xt = _subsample(xt, max_samples, rng)
    if method == "mmd":
        return _mmd2(xs, xt)
    return _proxy_a_distance(xs, xt, num_folds, rng)


def _subsample(x, max_samples, rng):
    if x.shape[0] <= max_samples:
        return x
    return x[rng.choice(x.shape[0], max_samples, replace=False)]


def _proxy_a_distance(xs, xt, num_folds, rng):
    x = np.concatenate([xs, xt])
    t = np.concatenate([-np.ones(xs.shape[0]), np.ones(xt.shape[0])])
    n = x.shape[0]
    if n < 2 * num_folds:
        raise ValueError(
            f"`num_folds`={num_folds} needs at least {2 * num_folds} samples in "
            f"total. Received: {xs.shape[0]} source and {xt.shape[0]} target "
            "samples."
        )
    fold = rng.permutation(n) % num_folds
    errors = 0
    for k in range(num_folds):
        train, test = fold != k, fold == k
        mean = x[train].mean(axis=0)
        scale = x[train].std(axis=0)
        scale[scale == 0] = 1.0
        a = (x[train] - mean) / scale
        a = np.concatenate([a, np.ones((a.shape[0], 1))], axis=1)
        ridge = np.eye(a.shape[1])
        ridge[-1, -1] = 0.0  # no penalty on the intercept
        w = np.linalg.solve(a.T @ a + ridge, a.T @ t[train])
        b = (x[test] - mean) / scale
        prediction = np.concatenate([b, np.ones((b.shape[0], 1))], axis=1) @ w
        errors += int(np.sum(np.sign(prediction) != t[test]))
    err = errors / n
    return float(np.clip(2.0 * (1.0 - 2.0 * err), 0.0, 2.0))


def _mmd2(xs, xt):
    x = np.concatenate([xs, xt])
    sq = np.sum(x * x, axis=1)
    dist2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * x @ x.T, 0.0)
    off_diagonal = dist2[np.triu_indices(x.shape[0], k=1)]
    h = np.median(off_diagonal)
    if h <= 0:
        h = np.mean(off_diagonal) if np.any(off_diagonal > 0) else 1.0
    k = np.exp(-dist2 / h)
    m = xs.shape[0]
    kss, ktt, kst = k[:m, :m], k[m:, m:], k[:m, m:]
    n = xt.shape[0]
    term_s = (kss.sum() - np.trace(kss)) / (m * (m - 1))
    term_t = (ktt.sum() - np.trace(ktt)) / (n * (n - 1))
    return float(term_s + term_t - 2.0 * kst.mean())
