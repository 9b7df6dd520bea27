"""EntropyLoss: entropy minimization on target predictions."""

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from keras_transfer.losses import EntropyLoss
from tests.testing import run_serialization_test

LOGITS = st.tuples(st.integers(1, 8), st.integers(2, 6)).flatmap(
    lambda s: arrays("float32", s, elements=st.floats(-20, 20, width=32))
)


@settings(max_examples=30, deadline=None)
@given(LOGITS)
def test_bounded_by_zero_and_log_num_classes(logits):
    probs = keras.ops.convert_to_numpy(keras.ops.softmax(logits))
    num_classes = logits.shape[-1]
    for value in (EntropyLoss()(probs), EntropyLoss(from_logits=True)(logits)):
        value = float(value)
        assert np.isfinite(value)
        assert -1e-6 <= value <= np.log(num_classes) + 1e-5
    assert float(EntropyLoss()(probs)) == pytest.approx(
        float(EntropyLoss(from_logits=True)(logits)), abs=1e-3
    )


def test_minimal_on_one_hot_maximal_on_uniform():
    one_hot = np.eye(3, dtype="float32")
    assert float(EntropyLoss()(one_hot)) == pytest.approx(0, abs=1e-5)
    uniform = np.full((4, 3), 1 / 3, "float32")
    assert float(EntropyLoss()(uniform)) == pytest.approx(np.log(3), rel=1e-5)


def test_source_is_ignored():
    probs = np.array([[0.7, 0.3]], "float32")
    assert float(EntropyLoss()(np.eye(2, dtype="float32"), probs)) == pytest.approx(
        float(EntropyLoss()(probs))
    )


def test_serialization():
    run_serialization_test(EntropyLoss(from_logits=True))


def test_bad_input():
    with pytest.raises(ValueError, match="`sample_weight`"):
        EntropyLoss()(np.eye(2), sample_weight=np.ones(2))
