"""JMMDLoss: JAN's joint MMD over features and predictions."""

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from keras_transfer.losses import JMMDLoss, MMDLoss
from tests.testing import run_serialization_test

FLOATS = st.floats(-10, 10, allow_nan=False, width=32)


def _softmax(x):
    return keras.ops.convert_to_numpy(keras.ops.softmax(x))


PARTS = st.tuples(st.integers(2, 8), st.integers(1, 4), st.integers(2, 4)).flatmap(
    lambda s: st.tuples(*[
        arrays("float32", shape, elements=FLOATS)
        for shape in ((s[0], s[1]), (s[0], s[1]), (s[0], s[2]), (s[0], s[2]))
    ])
)


@settings(max_examples=30, deadline=None)
@given(PARTS)
def test_non_negative_symmetric_zero_on_identical(parts):
    fs, ft, ls, lt = parts
    ps, pt = _softmax(ls), _softmax(lt)
    loss = JMMDLoss()
    value = float(loss([fs, ps], [ft, pt]))
    assert np.isfinite(value) and value >= -1e-5
    assert value == pytest.approx(float(loss([ft, pt], [fs, ps])), abs=1e-4)
    assert abs(float(loss([fs, ps], [fs, ps]))) < 1e-5
    linear = JMMDLoss(linear=True)
    assert abs(float(linear([fs, ps], [fs, ps]))) < 1e-5


def test_one_part_is_mmd():
    rng = np.random.default_rng(0)
    xs, xt = rng.normal(size=(8, 3)), rng.normal(size=(8, 3)) + 1
    assert float(JMMDLoss()(xs, xt)) == pytest.approx(float(MMDLoss()(xs, xt)))


def test_sees_the_joint_not_only_the_marginals():
    # Same feature marginal and same prediction marginal, different pairing.
    f = np.array([[0.0], [0.0], [5.0], [5.0]], "float32")
    p = np.array([[1, 0], [0, 1], [1, 0], [0, 1]], "float32")
    p_swapped = p[[0, 0, 1, 1]]
    p_source = p[[0, 1, 0, 1]]
    same = float(JMMDLoss()([f, p_source], [f, p_source]))
    joint = float(JMMDLoss()([f, p_source], [f, p_swapped]))
    assert same == pytest.approx(0.0, abs=1e-6) and joint > 0.05


def test_finite_on_constant_features():
    ones = np.ones((4, 3), "float32")
    probs = np.full((4, 2), 0.5, "float32")
    assert np.isfinite(float(JMMDLoss()([ones, probs], [ones, probs])))


def test_serialization():
    run_serialization_test(JMMDLoss(prediction_sigma=None, linear=True))


def test_bad_input():
    with pytest.raises(ValueError, match="`prediction_sigma`"):
        JMMDLoss(prediction_sigma=0.0)
    with pytest.raises(ValueError, match="number of parts"):
        JMMDLoss()([np.zeros((4, 2))], [np.zeros((4, 2)), np.zeros((4, 2))])
    with pytest.raises(ValueError, match="batch_size=1"):
        JMMDLoss(linear=True)(np.zeros((1, 2)), np.zeros((1, 2)))
