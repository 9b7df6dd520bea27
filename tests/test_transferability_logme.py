"""LogME: reference value, the fixed-point formulation, the published evidence."""

import numpy as np
import pytest
import tensorflow as tf
from scipy.optimize import minimize

from keras_transfer.transferability import logme

REFERENCE = -0.609095746561909  # thuml/LogME (numpy + numba) on the case below


def slow_logme(f, targets, tol=1e-3, max_iter=11, eps=1e-5):
    """The fixed-point formulation written out with explicit D x D matrices.

    For each target column y: with t = alpha / beta, m = (F^T F + t I)^-1 F^T y,
    gamma = D - t tr((F^T F + t I)^-1), then alpha = gamma / |m|^2 and
    beta = (N - gamma) / |F m - y|^2; stop when t moves by <= tol (relative).
    The evidence is the Gaussian log marginal likelihood with A = alpha I +
    beta F^T F, divided by N.
    """
    n, d = f.shape
    gram = f.T @ f
    out = []
    for y in targets.T:
        alpha, beta = 1.0, 1.0
        for _ in range(max_iter):
            t = alpha / beta
            a_inv = np.linalg.inv(gram + t * np.eye(d))
            m = a_inv @ (f.T @ y)
            gamma = d - t * np.trace(a_inv)
            m2 = m @ m
            res2 = np.sum((f @ m - y) ** 2)
            alpha = gamma / (m2 + eps)
            beta = (n - gamma) / (res2 + eps)
            if abs(alpha / beta - t) / t <= tol:
                break
        _, logdet = np.linalg.slogdet(alpha * np.eye(d) + beta * gram)
        evidence = (
            d / 2 * np.log(alpha)
            + n / 2 * np.log(beta)
            - logdet / 2
            - beta / 2 * res2
            - alpha / 2 * m2
            - n / 2 * np.log(2 * np.pi)
        )
        out.append(evidence / n)
    return float(np.mean(out))


def one_hot(y):
    return (y[:, None] == np.unique(y)[None, :]).astype(np.float64)


def test_matches_the_reference_implementation():
    np.random.seed(0)
    f = np.random.randn(500, 64)
    y = np.random.randint(0, 5, 500)
    np.testing.assert_allclose(logme(f, y), REFERENCE, rtol=1e-6)


@pytest.mark.parametrize(
    "n, d, c, seed",
    [(300, 20, 4, 1), (200, 50, 3, 2), (40, 100, 3, 3), (60, 60, 2, 4)],
)
def test_matches_slow_fixed_point_classification(n, d, c, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    f = rng.normal(size=(n, d)) + 0.7 * rng.normal(size=(c, d))[y]
    np.testing.assert_allclose(logme(f, y), slow_logme(f, one_hot(y)), rtol=1e-6)


@pytest.mark.parametrize("n, d", [(150, 10), (30, 80)])
def test_matches_slow_fixed_point_regression(n, d):
    rng = np.random.default_rng(n)
    f = rng.normal(size=(n, d))
    targets = f[:, :3] @ rng.normal(size=(3, 2)) + 0.3 * rng.normal(size=(n, 2))
    np.testing.assert_allclose(logme(f, targets), slow_logme(f, targets), rtol=1e-6)
    np.testing.assert_allclose(
        logme(f, targets[:, 0]), slow_logme(f, targets[:, :1]), rtol=1e-6
    )


def test_rank_deficient_features_match_slow_version():
    rng = np.random.default_rng(5)
    base = rng.normal(size=(120, 6))
    f = np.concatenate([base, base @ rng.normal(size=(6, 4))], axis=1)  # rank 6
    y = rng.integers(0, 3, 120)
    np.testing.assert_allclose(logme(f, y), slow_logme(f, one_hot(y)), rtol=1e-6)


def test_converged_value_is_the_maximum_of_the_marginal_likelihood():
    # Published definition: y ~ N(0, F F^T / alpha + I / beta); LogME is the
    # maximum over alpha, beta of log p(y) / N. Maximise it numerically.
    rng = np.random.default_rng(7)
    n, d = 80, 5
    f = rng.normal(size=(n, d))
    y = f @ rng.normal(size=d) + 0.5 * rng.normal(size=n)

    def negative_log_evidence(log_params):
        alpha, beta = np.exp(log_params)
        cov = f @ f.T / alpha + np.eye(n) / beta
        _, logdet = np.linalg.slogdet(cov)
        quad = y @ np.linalg.solve(cov, y)
        return 0.5 * (logdet + quad + n * np.log(2 * np.pi)) / n

    best = minimize(negative_log_evidence, x0=[0.0, 0.0], method="Nelder-Mead",
                    options={"xatol": 1e-10, "fatol": 1e-14, "maxiter": 5000})
    ours = logme(f, y, tol=1e-12, max_iter=1000)
    np.testing.assert_allclose(ours, -best.fun, rtol=1e-6)


def test_tiny_closed_form():
    # One feature, one target, N = 2: f = (1, -1), y = (1, -1). At the optimum
    # the evidence is that of y ~ N(0, (1/alpha) f f^T + I/beta); y lies along
    # f, so beta -> large is limited by the 1e-5 guard; the score is finite
    # and larger than for y orthogonal to f, y = (1, 1).
    f = np.array([[1.0], [-1.0]])
    aligned = logme(f, np.array([1.0, -1.0]), regression=True)
    orthogonal = logme(
        f, np.array([1.0, 1.0]), regression=True, tol=1e-12, max_iter=1000
    )
    assert np.isfinite(aligned) and aligned > orthogonal
    # For y orthogonal to f the best weight is 0: the evidence is that of
    # y ~ N(0, I / beta) with beta = N / |y|^2 = 1, i.e. -log(2 pi)/2 - 1/2,
    # in the alpha -> infinity limit (finite here because of the 1e-5 guard).
    np.testing.assert_allclose(
        orthogonal, -0.5 * np.log(2 * np.pi) - 0.5, atol=2e-3
    )


def test_better_features_score_higher():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 400)
    scores = [
        logme(rng.normal(size=(400, 32)) + s * np.eye(32)[y], y)
        for s in (0.0, 0.5, 1.0, 2.0)
    ]
    assert scores == sorted(scores)


def test_accepts_tensors_and_label_values():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 100)
    f = rng.normal(size=(100, 8)).astype("float32")
    expected = logme(f, y)
    assert logme(tf.constant(f), tf.constant(y)) == pytest.approx(expected)
    # Class values need not be 0..C-1.
    assert logme(f, y * 10 + 3) == pytest.approx(expected)
    # Whole-number floats are regression unless told otherwise (with a warning).
    assert logme(f, y.astype(float), regression=False) == pytest.approx(expected)
    with pytest.warns(UserWarning, match="regression targets"):
        as_regression = logme(f, y.astype(float))
    assert as_regression != pytest.approx(expected)


def test_bad_input():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(20, 4))
    y = np.repeat([0, 1], 10)
    with pytest.raises(ValueError, match="`labels`.*one entry per sample"):
        logme(f, y[:-1])
    with pytest.raises(ValueError, match="`features` must be finite"):
        logme(np.where(np.eye(20, 4) > 0, np.nan, f), y)
    with pytest.raises(ValueError, match="`features` must be finite"):
        logme(np.where(np.eye(20, 4) > 0, np.inf, f), y)
    with pytest.raises(ValueError, match="`features` must be a 2D array"):
        logme(f[None], y)
    with pytest.raises(ValueError, match="at least 2 classes"):
        logme(f, np.zeros(20, dtype=int))
    with pytest.raises(ValueError, match=r"at least 2 samples.*\{2: 1\}"):
        logme(f, np.concatenate([y[:-1], [2]]))
    with pytest.raises(ValueError, match="`labels` for classification"):
        logme(f, np.stack([y, y], axis=1), regression=False)
    with pytest.raises(ValueError, match="`labels` for regression"):
        logme(f, np.zeros((20, 2, 2)))
    with pytest.raises(ValueError, match="`labels` must have one row per sample"):
        logme(f, np.zeros((19, 2)))
    with pytest.raises(ValueError, match="`labels` must be finite"):
        logme(f, np.full(20, np.nan))
    with pytest.raises(ValueError, match="`tol`"):
        logme(f, y, tol=0)
    with pytest.raises(ValueError, match="`max_iter`"):
        logme(f, y, max_iter=0)
