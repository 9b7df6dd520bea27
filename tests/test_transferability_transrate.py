"""TransRate against its coding-rate definition on closed forms."""

import numpy as np
import pytest

from keras_transfer.transferability import transrate


def rate(z, eps):
    n, d = z.shape
    return 0.5 * np.linalg.slogdet(np.eye(d) + z.T @ z / (n * eps))[1]


def test_matches_the_definition():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 60)
    f = rng.normal(size=(60, 5)) + np.eye(5)[y]
    z = f - f.mean(axis=0)
    expected = rate(z, 1e-4) - sum(
        np.mean(y == c) * rate(z[y == c], 1e-4) for c in range(3)
    )
    assert transrate(f, y) == pytest.approx(expected, rel=1e-10)
    # Fewer samples than features: the Gram matrix path gives the same value.
    f_wide = rng.normal(size=(12, 30))
    y_wide = np.repeat([0, 1], 6)
    z = f_wide - f_wide.mean(axis=0)
    expected = rate(z, 0.1) - 0.5 * rate(z[:6], 0.1) - 0.5 * rate(z[6:], 0.1)
    assert transrate(f_wide, y_wide, eps=0.1) == pytest.approx(expected, rel=1e-10)


def test_one_dimensional_closed_form():
    # f = (-1, 1, -1, 1) split so each class is one value: classes coded for
    # free given y. R(Z) = 1/2 log(1 + 1/eps); each class has Z_c = (v, v),
    # v = +-1, R(Z_c) = 1/2 log(1 + 1/eps) too: TransRate 0 (the paper's rate
    # is not centred per class).
    f = np.array([[-1.0], [-1.0], [1.0], [1.0]])
    y = np.array([0, 0, 1, 1])
    assert transrate(f, y, eps=0.5) == pytest.approx(0.0, abs=1e-12)
    # Orthogonal class directions: R(Z) counts two directions, each class one.
    f = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    eps = 0.5
    expected = 2 * 0.5 * np.log(1 + 0.5 / eps) - 0.5 * np.log(1 + 1.0 / eps)
    assert transrate(f, y, eps=eps) == pytest.approx(expected, rel=1e-12)


def test_bad_input():
    f = np.arange(8.0).reshape(4, 2)
    y = np.array([0, 0, 1, 1])
    with pytest.raises(ValueError, match="`eps` must be a positive"):
        transrate(f, y, eps=0)
    with pytest.raises(ValueError, match="`labels` must have one entry"):
        transrate(f, y[:2])
    with pytest.raises(ValueError, match="`features` must be finite"):
        transrate(f * np.nan, y)
    with pytest.raises(ValueError, match="at least 2 classes"):
        transrate(f, np.zeros(4, dtype=int))
