"""Every adaptation loss on a plain `model.fit`: trains, saves, distributes.

Compiled as a Keras loss, `y_true` is the source batch and `y_pred` the
target batch: the model learns to map target inputs onto the source
distribution. (JMMD and MDD take several parts per domain and are trained
through `DomainAdaptationModel`, see tests/test_adaptation_model.py.)
"""

import keras
import numpy as np
import pytest

from keras_transfer import losses
from tests.testing import run_model_saving_test

FEATURE_LOSSES = {
    "mmd": lambda: losses.MMDLoss(),
    "mmd_linear": lambda: losses.MMDLoss(linear=True),
    "coral": lambda: losses.CORALLoss(),
}
PREDICTION_LOSSES = {
    "entropy": lambda: losses.EntropyLoss(),
    "mcc": lambda: losses.MCCLoss(),
}
ALL = {**FEATURE_LOSSES, **PREDICTION_LOSSES}


def _data(name):
    rng = np.random.default_rng(0)
    x_target = rng.normal(size=(64, 3)).astype("float32")
    if name in PREDICTION_LOSSES:
        return x_target, np.zeros((64, 3), "float32")
    source = (rng.normal(size=(64, 3)) * [3.0, 0.5, 1.0] + 2.0).astype("float32")
    return x_target, source


def _model(name):
    layers = [keras.Input((3,)), keras.layers.Dense(3)]
    if name in PREDICTION_LOSSES:
        layers.append(keras.layers.Softmax())
    return keras.Sequential(layers)


def _fit(name, epochs=8):
    x, y = _data(name)
    model = _model(name)
    model.compile(keras.optimizers.Adam(0.05), ALL[name]())
    history = model.fit(x, y, batch_size=16, epochs=epochs, verbose=0, shuffle=False)
    return model, history.history["loss"]


@pytest.mark.parametrize("name", sorted(ALL))
def test_fit_decreases_the_loss(name):
    _, loss = _fit(name)
    assert np.all(np.isfinite(loss))
    assert loss[-1] < 0.8 * loss[0], loss


@pytest.mark.parametrize("name", sorted(ALL))
def test_keras_saving_keeps_the_compiled_loss(name, tmp_path):
    model, _ = _fit(name, epochs=1)
    x, _ = _data(name)
    loaded = run_model_saving_test(model, x[:4], tmp_path)
    assert type(loaded.loss) is type(model.loss)
    assert loaded.loss.get_config() == model.loss.get_config()


@pytest.mark.parametrize("name", ["coral", "entropy", "mmd"])
def test_under_mirrored_strategy(name, strategy):
    x, y = _data(name)
    with strategy.scope():
        model = _model(name)
        model.compile(keras.optimizers.Adam(0.05), ALL[name]())
    loss = model.fit(x, y, batch_size=16, epochs=6, verbose=0).history["loss"]
    assert np.all(np.isfinite(loss))
    assert loss[-1] < 0.8 * loss[0], loss
