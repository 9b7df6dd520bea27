"""Domain distance: identical distributions ~0, growing with the shift."""

import numpy as np
import pytest

from keras_transfer.transferability import domain_distance


@pytest.mark.parametrize("method", ["a_distance", "mmd"])
def test_identical_small_shifted_large_and_monotone(method):
    rng = np.random.default_rng(0)
    source = rng.normal(size=(300, 16))
    values = [
        domain_distance(source, rng.normal(size=(300, 16)) + shift, method=method)
        for shift in (0.0, 0.25, 0.5, 1.0, 2.0)
    ]
    assert abs(values[0]) < (0.25 if method == "a_distance" else 0.01), values
    assert values[-1] > (1.8 if method == "a_distance" else 0.3), values
    assert all(b > a for a, b in zip(values, values[1:])), values


def test_a_distance_is_two_for_separable_domains():
    rng = np.random.default_rng(1)
    source = rng.normal(size=(100, 4))
    target = rng.normal(size=(100, 4)) + 20.0
    assert domain_distance(source, target) == 2.0


def test_mmd_closed_form_for_two_points():
    # One point per domain needs m(m-1) > 0: use two identical points each.
    # dist^2 between domains = 4, within = 0; median of pooled pair distances
    # (0, 4, 4, 4, 4, 0) is 4: k = exp(-1). MMD^2 = 1 + 1 - 2 exp(-1).
    source = np.array([[0.0, 0.0], [0.0, 0.0]])
    target = np.array([[2.0, 0.0], [2.0, 0.0]])
    assert domain_distance(source, target, method="mmd") == pytest.approx(
        2 - 2 * np.exp(-1)
    )


def test_subsampling_is_seeded():
    rng = np.random.default_rng(2)
    s, t = rng.normal(size=(500, 3)), rng.normal(size=(500, 3)) + 0.5
    a = domain_distance(s, t, method="mmd", max_samples=100, seed=3)
    assert a == domain_distance(s, t, method="mmd", max_samples=100, seed=3)


def test_bad_input():
    x = np.zeros((10, 3))
    with pytest.raises(ValueError, match="`method` must be one of"):
        domain_distance(x, x, method="kl")
    with pytest.raises(ValueError, match="same number of features"):
        domain_distance(x, np.zeros((10, 4)))
    with pytest.raises(ValueError, match="`target_features` must be finite"):
        domain_distance(x, x + np.nan)
    with pytest.raises(ValueError, match="`source_features` must be a 2D"):
        domain_distance(x[0], x)
    with pytest.raises(ValueError, match="`num_folds`"):
        domain_distance(x, x, num_folds=1)
    with pytest.raises(ValueError, match="`num_folds`=5 needs at least 10"):
        domain_distance(x[:2], x[:2])
    with pytest.raises(ValueError, match="`max_samples`"):
        domain_distance(x, x, max_samples=1)
