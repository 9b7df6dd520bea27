"""CORALLoss: Deep CORAL's covariance alignment."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from keras_transfer.losses import CORALLoss
from tests.testing import run_serialization_test

FLOATS = st.floats(-10, 10, allow_nan=False, width=32)
PAIRS = st.tuples(st.integers(2, 8), st.integers(1, 4)).flatmap(
    lambda s: st.tuples(
        arrays("float32", s, elements=FLOATS), arrays("float32", s, elements=FLOATS)
    )
)


@settings(max_examples=30, deadline=None)
@given(PAIRS)
def test_non_negative_symmetric_zero_on_identical(pair):
    xs, xt = pair
    loss = CORALLoss()
    value = float(loss(xs, xt))
    assert np.isfinite(value) and value >= 0.0
    assert value == pytest.approx(float(loss(xt, xs)), rel=1e-4, abs=1e-4)
    assert float(loss(xs, xs)) == pytest.approx(0.0, abs=1e-6)


def test_matches_the_covariance_formula():
    rng = np.random.default_rng(1)
    xs = rng.normal(size=(20, 3)).astype("float32")
    xt = (2.0 * rng.normal(size=(30, 3))).astype("float32")
    expected = np.sum((np.cov(xs.T) - np.cov(xt.T)) ** 2) / (4 * 3**2)
    assert float(CORALLoss()(xs, xt)) == pytest.approx(expected, rel=1e-4)


def test_finite_on_constant_features_and_mean_shift_invariant():
    ones = np.ones((5, 4), "float32")
    assert float(CORALLoss()(ones, 3.0 * ones)) == 0.0
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(10, 4)).astype("float32")
    assert float(CORALLoss()(xs, xs + 5.0)) == pytest.approx(0.0, abs=1e-5)


def test_serialization():
    run_serialization_test(CORALLoss(name="coral"))


def test_bad_input():
    with pytest.raises(ValueError, match="batch_size=1"):
        CORALLoss()(np.zeros((1, 3)), np.zeros((4, 3)))
    with pytest.raises(ValueError, match="same feature shape"):
        CORALLoss()(np.zeros((4, 3)), np.zeros((4, 5)))
    with pytest.raises(ValueError, match="`sample_weight`"):
        CORALLoss()(np.zeros((4, 3)), np.zeros((4, 3)), sample_weight=np.ones(4))
