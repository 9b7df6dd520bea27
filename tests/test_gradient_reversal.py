"""GradientReversal: identity forward, -lambda * upstream backward."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from keras_transfer.layers import GradientReversal
from tests.testing import (
    run_model_saving_test,
    run_serialization_test,
)

FLOATS = st.floats(-100, 100, allow_nan=False, width=32)


@pytest.mark.tensorflow  # a tf.GradientTape (JAX: tests/test_backend_jax.py)
@settings(max_examples=25, deadline=None)
@given(
    st.tuples(st.integers(1, 5), st.integers(1, 4)).flatmap(
        lambda s: st.tuples(
            arrays("float32", s, elements=FLOATS), arrays("float32", s, elements=FLOATS)
        )
    ),
    st.floats(0, 10, width=32),
)
def test_gradient_is_minus_lambda_times_upstream(pair, lam):
    x_value, upstream = pair
    layer = GradientReversal(lambda_=lam)
    x = tf.constant(x_value)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
    np.testing.assert_array_equal(y.numpy(), x_value)
    grad = tape.gradient(y, x, output_gradients=tf.constant(upstream))
    expected = -np.float32(lam) * upstream
    np.testing.assert_allclose(grad.numpy(), expected, rtol=1e-6, atol=1e-30)


@pytest.mark.tensorflow  # a tf.GradientTape (JAX: tests/test_backend_jax.py)
def test_lambda_changes_without_retracing():
    layer = GradientReversal(lambda_=1.0)
    x = tf.Variable([[1.0, -2.0]])

    @tf.function
    def grad():
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(2.0 * layer(x))
        return tape.gradient(loss, x)

    np.testing.assert_allclose(grad().numpy(), [[-2.0, -2.0]])
    layer.set_lambda(0.25)
    np.testing.assert_allclose(grad().numpy(), [[-0.5, -0.5]])
    assert grad.experimental_get_tracing_count() == 1


def _models(lam):
    keras.utils.set_random_seed(3)
    inputs = keras.Input((3,))
    a = keras.layers.Dense(4, name="a")
    b = keras.layers.Dense(1, name="b")
    plain = keras.Model(inputs, b(a(inputs)))
    keras.utils.set_random_seed(3)
    inputs = keras.Input((3,))
    a2 = keras.layers.Dense(4, name="a")
    b2 = keras.layers.Dense(1, name="b")
    reversed_ = keras.Model(inputs, b2(GradientReversal(lam)(a2(inputs))))
    return plain, reversed_


def _fit_step(model):
    x = np.random.default_rng(0).normal(size=(8, 3)).astype("float32")
    y = np.ones((8, 1), "float32")
    before = [w.numpy().copy() for w in model.trainable_weights]
    model.compile(keras.optimizers.SGD(0.1), "mse")
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    return [w.numpy() - b for w, b in zip(model.trainable_weights, before)]


def test_fit_reverses_the_update_below_the_layer_only():
    plain, reversed_ = _models(0.5)
    d_plain, d_rev = _fit_step(plain), _fit_step(reversed_)
    # a.kernel, a.bias: reversed and scaled; b.kernel, b.bias: unchanged.
    np.testing.assert_allclose(d_rev[0], -0.5 * d_plain[0], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(d_rev[1], -0.5 * d_plain[1], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(d_rev[2], d_plain[2], rtol=1e-5, atol=1e-7)
    assert np.abs(d_plain[0]).max() > 1e-4


def test_under_mirrored_strategy_matches_single_device(strategy):
    _, single = _models(0.5)
    d_single = _fit_step(single)
    with strategy.scope():
        _, mirrored = _models(0.5)
        d_mirrored = _fit_step(mirrored)
    for a, b in zip(d_single, d_mirrored):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_serialization():
    run_serialization_test(GradientReversal(lambda_=0.3, name="grl"))


def test_keras_saving_keeps_the_current_lambda(tmp_path):
    inputs = keras.Input((2,))
    layer = GradientReversal(1.0)
    model = keras.Model(inputs, keras.layers.Dense(1)(layer(inputs)))
    layer.set_lambda(0.7)
    loaded = run_model_saving_test(model, np.ones((2, 2), "float32"), tmp_path)
    grl = [lyr for lyr in loaded.layers if isinstance(lyr, GradientReversal)][0]
    assert float(grl.lambda_variable.numpy()) == pytest.approx(0.7)


def test_bad_input():
    with pytest.raises(ValueError, match="`lambda_` must be >= 0"):
        GradientReversal(lambda_=-0.1)
    with pytest.raises(ValueError, match="`lambda_`"):
        GradientReversal(lambda_="big")
    with pytest.raises(ValueError, match="Received: lambda_=-1"):
        GradientReversal().set_lambda(-1.0)
