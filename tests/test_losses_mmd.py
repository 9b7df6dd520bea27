"""MMDLoss: the multi-kernel MMD of DAN, quadratic and linear-time estimators."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from keras_transfer.losses import MMDLoss
from tests.testing import run_serialization_test

FLOATS = st.floats(-10, 10, allow_nan=False, width=32)


def batches(min_n=2):
    return st.tuples(st.integers(min_n, 8), st.integers(1, 4)).flatmap(
        lambda s: st.tuples(
            arrays("float32", s, elements=FLOATS),
            arrays("float32", s, elements=FLOATS),
        )
    )


@settings(max_examples=30, deadline=None)
@given(batches())
def test_quadratic_is_non_negative_symmetric_and_zero_on_identical(pair):
    xs, xt = pair
    loss = MMDLoss()
    value = float(loss(xs, xt))
    assert np.isfinite(value)
    assert value >= -1e-5
    assert abs(value - float(loss(xt, xs))) < 1e-4
    assert abs(float(loss(xs, xs))) < 1e-5


@settings(max_examples=30, deadline=None)
@given(batches())
def test_linear_is_symmetric_and_zero_on_identical(pair):
    xs, xt = pair
    loss = MMDLoss(linear=True)
    assert np.isfinite(float(loss(xs, xt)))
    assert abs(float(loss(xs, xt)) - float(loss(xt, xs))) < 1e-4
    assert abs(float(loss(xs, xs))) < 1e-5


@pytest.mark.parametrize("linear", [False, True])
def test_finite_on_constant_features(linear):
    loss = MMDLoss(linear=linear)
    ones = np.ones((6, 3), "float32")
    assert np.isfinite(float(loss(ones, ones)))
    assert np.isfinite(float(loss(ones, 2.0 * ones)))
    assert float(loss(ones, ones)) == pytest.approx(0.0, abs=1e-6)


def test_grows_with_the_shift():
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(64, 4)).astype("float32")
    xt = rng.normal(size=(64, 4)).astype("float32")
    values = [float(MMDLoss()(xs, xt + shift)) for shift in (0.0, 0.5, 2.0)]
    assert values[0] < values[1] < values[2]


def test_different_batch_sizes():
    rng = np.random.default_rng(0)
    value = MMDLoss()(rng.normal(size=(5, 3)), rng.normal(size=(9, 3)))
    assert np.isfinite(float(value))


def test_serialization():
    run_serialization_test(MMDLoss(kernel_multipliers=(0.5, 1.0), linear=True))


def test_bad_input():
    with pytest.raises(ValueError, match="`kernel_multipliers`"):
        MMDLoss(kernel_multipliers=(1.0, -2.0))
    with pytest.raises(ValueError, match="same feature shape"):
        MMDLoss()(np.zeros((4, 3)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="batch_size=1"):
        MMDLoss(linear=True)(np.zeros((1, 3)), np.zeros((4, 3)))
    with pytest.raises(ValueError, match="target=None"):
        MMDLoss()(np.zeros((4, 3)))
