"""MDDLoss: the margin disparity discrepancy objective."""

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from keras_transfer.losses import MDDLoss
from tests.testing import run_serialization_test

FOUR = st.tuples(st.integers(1, 8), st.integers(2, 5)).flatmap(
    lambda s: st.tuples(
        *[arrays("float32", s, elements=st.floats(-30, 30, width=32))] * 4
    )
)


def _softmax(x):
    return keras.ops.convert_to_numpy(keras.ops.softmax(x))


@settings(max_examples=30, deadline=None)
@given(FOUR)
def test_non_negative_and_finite(logits):
    value = float(MDDLoss(from_logits=True)(list(logits[:2]), list(logits[2:])))
    assert np.isfinite(value) and value >= 0.0
    probs = [_softmax(x) for x in logits]
    value = float(MDDLoss()(probs[:2], probs[2:]))
    assert np.isfinite(value) and value >= 0.0


def test_matches_the_definition():
    main_s = np.array([[0.9, 0.1], [0.3, 0.7]], "float32")
    adv_s = np.array([[0.6, 0.4], [0.2, 0.8]], "float32")
    main_t = np.array([[0.2, 0.8]], "float32")
    adv_t = np.array([[0.5, 0.5]], "float32")
    expected = 3.0 * np.mean([-np.log(0.6), -np.log(0.8)]) - np.log(1 - 0.5)
    value = MDDLoss(margin=3.0)([main_s, adv_s], [main_t, adv_t])
    assert float(value) == pytest.approx(expected, rel=1e-5)


@pytest.mark.tensorflow  # a tf.GradientTape (JAX: tests/test_backend_jax.py)
def test_no_gradient_through_the_main_predictions():
    import tensorflow as tf

    main = tf.Variable([[2.0, 0.0], [0.0, 1.0]])
    adv = tf.Variable([[0.5, 0.1], [0.2, 0.3]])
    with tf.GradientTape() as tape:
        m, a = tf.identity(main), tf.identity(adv)
        value = MDDLoss(from_logits=True)([m, a], [m, a])
    g_main, g_adv = tape.gradient(value, [main, adv])
    assert g_main is None or float(tf.reduce_max(tf.abs(g_main))) == 0.0
    assert float(tf.reduce_max(tf.abs(g_adv))) > 0.0


def test_serialization():
    run_serialization_test(MDDLoss(margin=2.0, from_logits=True))


def test_bad_input():
    with pytest.raises(ValueError, match="`margin`"):
        MDDLoss(margin=-1.0)
    with pytest.raises(ValueError, match="`source`"):
        MDDLoss()(np.zeros((2, 2)), [np.zeros((2, 2)), np.zeros((2, 2))])
