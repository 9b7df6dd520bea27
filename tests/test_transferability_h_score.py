"""H-score and the shrinkage-regularized H-score on closed forms."""

import numpy as np
import pytest
from sklearn.covariance import ledoit_wolf

from keras_transfer.transferability import h_score
from keras_transfer.transferability.h_score import _ledoit_wolf_shrinkage


def test_one_dimensional_closed_form():
    # H = Var(E[f|y]) / Var(f): class means 1 and 5 around 3 -> 4; total 5.
    f = np.array([[0.0], [2.0], [4.0], [6.0]])
    y = np.array([0, 0, 1, 1])
    assert h_score(f, y) == pytest.approx(0.8, rel=1e-12)
    # Shrinkage a: ((1 - a) * 4) / ((1 - a) * 5 + a * 5) = (1 - a) * 0.8.
    for a in (0.0, 0.25, 0.5, 1.0):
        assert h_score(f, y, shrinkage=a) == pytest.approx((1 - a) * 0.8)


def test_two_dimensional_closed_form():
    # Diagonal covariance: H is the sum over axes of between / total variance.
    f = np.array([[0.0, 1.0], [2.0, -1.0], [4.0, -1.0], [6.0, 1.0]])
    y = np.array([0, 0, 1, 1])
    # axis 0: 4 / 5; axis 1: class means are 0 and 0 -> 0 / 1.
    assert h_score(f, y) == pytest.approx(0.8, rel=1e-12)


def test_invariant_to_invertible_linear_maps():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 200)
    f = rng.normal(size=(200, 5)) + np.eye(5)[y]
    a = rng.normal(size=(5, 5))
    assert h_score(f @ a + 3.0, y) == pytest.approx(h_score(f, y), rel=1e-8)


def test_ledoit_wolf_matches_scikit_learn():
    rng = np.random.default_rng(1)
    for n, d in [(40, 7), (20, 50), (200, 3)]:
        x = rng.normal(size=(n, d)) @ rng.normal(size=(d, d))
        x -= x.mean(axis=0)
        expected = ledoit_wolf(x, assume_centered=True)[1]
        assert _ledoit_wolf_shrinkage(x) == pytest.approx(expected, rel=1e-10)


def test_shrinkage_stabilises_few_samples_many_features():
    # With D close to N the plain H-score saturates for pure noise; the
    # regularized one stays small for noise and ranks signal above it.
    rng = np.random.default_rng(2)
    y = np.repeat([0, 1, 2], 10)
    noise = rng.normal(size=(30, 25))
    signal = noise + 2.0 * np.eye(25)[y]
    assert h_score(noise, y, shrinkage="auto") < h_score(signal, y, shrinkage="auto")
    assert h_score(noise, y, shrinkage="auto") < 0.5 * h_score(noise, y)


def test_bad_input():
    f = np.zeros((4, 2)) + np.arange(4)[:, None]
    y = np.array([0, 0, 1, 1])
    with pytest.raises(ValueError, match="`shrinkage` must be"):
        h_score(f, y, shrinkage=1.5)
    with pytest.raises(ValueError, match="`shrinkage` must be"):
        h_score(f, y, shrinkage="ledoit")
    with pytest.raises(ValueError, match="`labels` must have one entry"):
        h_score(f, y[:3])
    with pytest.raises(ValueError, match="`features` must be finite"):
        h_score(np.where(f > 2, np.inf, f), y)
    with pytest.raises(ValueError, match="`features` must be a 2D"):
        h_score(f[:, 0], y)
    with pytest.raises(ValueError, match="at least 2 samples"):
        h_score(f, np.array([0, 0, 0, 1]))
    with pytest.raises(ValueError, match="`labels` must be a 1D"):
        h_score(f, np.eye(4))
