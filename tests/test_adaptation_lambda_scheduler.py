"""DANNLambdaScheduler: lambda = max * (2 / (1 + exp(-gamma p)) - 1) per batch."""

import keras
import numpy as np
import pytest

from keras_transfer.callbacks import DANNLambdaScheduler
from keras_transfer.layers import GradientReversal
from tests.testing import run_serialization_test


def _model():
    inputs = keras.Input((2,))
    grl = GradientReversal(lambda_=5.0)
    model = keras.Model(inputs, keras.layers.Dense(1)(grl(inputs)))
    model.compile("sgd", "mse")
    return model, grl


class _Recorder(keras.callbacks.Callback):
    def __init__(self, layer):
        super().__init__()
        self.layer = layer
        self.values = []

    def on_train_batch_begin(self, batch, logs=None):
        self.values.append(float(self.layer.lambda_variable.numpy()))


def _expected(steps, max_value=1.0, gamma=10.0):
    p = np.arange(steps) / steps
    return max_value * (2 / (1 + np.exp(-gamma * p)) - 1)


def test_fit_follows_the_schedule_per_batch():
    model, grl = _model()
    scheduler = DANNLambdaScheduler(max_value=0.1)
    recorder = _Recorder(grl)
    x, y = np.zeros((12, 2)), np.zeros((12, 1))
    model.fit(x, y, batch_size=4, epochs=2, callbacks=[scheduler, recorder],
              verbose=0)
    np.testing.assert_allclose(recorder.values, _expected(6, 0.1), rtol=1e-6)
    # A second fit starts over.
    recorder.values = []
    model.fit(x, y, batch_size=4, epochs=1, callbacks=[scheduler, recorder],
              verbose=0)
    np.testing.assert_allclose(recorder.values, _expected(3, 0.1), rtol=1e-6)


def test_value_is_the_general_form():
    scheduler = DANNLambdaScheduler(max_value=2.0, gamma=5.0)
    assert scheduler.value(0.0) == 0.0
    assert scheduler.value(0.5) == pytest.approx(2.0 * (2 / (1 + np.exp(-2.5)) - 1))
    assert scheduler.value(3.0) == scheduler.value(1.0)


def test_total_steps_and_dataset_without_length():
    import tensorflow as tf

    model, grl = _model()
    data = tf.data.Dataset.from_tensor_slices(
        (np.zeros((8, 2), "float32"), np.zeros((8, 1), "float32"))
    ).batch(4).repeat()
    with pytest.raises(ValueError, match="`total_steps` must be a positive"):
        DANNLambdaScheduler(total_steps=0)
    unknown_length = data.take(2).filter(lambda x, y: True)
    with pytest.raises(ValueError, match="Pass `total_steps`"):
        model.fit(unknown_length, epochs=1, verbose=0,
                  callbacks=[DANNLambdaScheduler()])
    scheduler = DANNLambdaScheduler(total_steps=4)
    model.fit(data, steps_per_epoch=2, epochs=1, verbose=0, callbacks=[scheduler])
    assert float(grl.lambda_variable.numpy()) == pytest.approx(scheduler.value(0.25))


def test_serialization():
    run_serialization_test(DANNLambdaScheduler(max_value=0.5, gamma=7.0,
                                               total_steps=100))


def test_bad_input():
    with pytest.raises(ValueError, match="`max_value` must be >= 0"):
        DANNLambdaScheduler(max_value=-0.1)
    with pytest.raises(ValueError, match="`gamma`"):
        DANNLambdaScheduler(gamma=0)
