"""MCCLoss: minimum class confusion."""

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from keras_transfer.losses import MCCLoss
from tests.testing import run_serialization_test

LOGITS = st.tuples(st.integers(1, 8), st.integers(2, 6)).flatmap(
    lambda s: arrays("float32", s, elements=st.floats(-6, 6, width=32))
)


@settings(max_examples=30, deadline=None)
@given(LOGITS)
def test_between_zero_and_uniform_confusion(logits):
    num_classes = logits.shape[-1]
    probs = keras.ops.convert_to_numpy(keras.ops.softmax(logits))
    from_probs = float(MCCLoss()(probs))
    from_logits = float(MCCLoss(from_logits=True)(logits))
    for value in (from_probs, from_logits):
        assert np.isfinite(value)
        assert -1e-6 <= value <= (num_classes - 1) / num_classes + 1e-5
    assert from_probs == pytest.approx(from_logits, abs=1e-3)


def test_uniform_is_the_maximum_and_certain_is_near_zero():
    uniform = np.full((5, 4), 0.25, "float32")
    assert float(MCCLoss()(uniform)) == pytest.approx(0.75, rel=1e-5)
    certain = 30.0 * np.eye(4, dtype="float32")
    assert float(MCCLoss(from_logits=True)(certain)) < 1e-4


def test_temperature_sharpens():
    logits = np.array([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0]], "float32")
    hot = float(MCCLoss(temperature=5.0, from_logits=True)(logits))
    cold = float(MCCLoss(temperature=1.0, from_logits=True)(logits))
    assert cold < hot


def test_serialization():
    run_serialization_test(MCCLoss(temperature=3.0, from_logits=True))


def test_bad_input():
    with pytest.raises(ValueError, match="`temperature`"):
        MCCLoss(temperature=0)
