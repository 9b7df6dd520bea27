"""Tests for `keras_transfer.callbacks.WeightAveraging` and Keras's `use_ema`
through `DiscriminativeLR`."""

import warnings

import keras
import numpy as np
import pytest

from keras_transfer import _compat
from keras_transfer.averaging import recompute_batch_norm
from keras_transfer.backbones import Backbone
from keras_transfer.callbacks import WeightAveraging
from keras_transfer.optimizers import DiscriminativeLR
from tests.testing import run_model_saving_test, run_serialization_test


def make_model(bn=False):
    layers = [keras.Input((4,)), keras.layers.Dense(8, activation="relu")]
    if bn:
        layers.append(keras.layers.BatchNormalization())
    layers.append(keras.layers.Dense(1))
    return keras.Sequential(layers)


def data(n=32):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 4)).astype("float32")
    return x, x.sum(axis=1, keepdims=True)


class Recorder(keras.callbacks.Callback):
    """Test helper: the weights after each batch and each epoch."""

    def __init__(self):
        super().__init__()
        self.epochs, self.batches = [], []

    def on_train_batch_end(self, batch, logs=None):
        self.batches.append(self.model.get_weights())

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append(self.model.get_weights())


def compiled(bn=False):
    keras.utils.set_random_seed(0)
    model = make_model(bn)
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    return model


def test_swa_is_the_mean_of_the_last_epochs():
    model = compiled()
    recorder = Recorder()
    swa = WeightAveraging("swa", start_epoch=-3)
    # The recorder runs before the averaging callback.
    model.fit(*data(), epochs=5, batch_size=8, callbacks=[recorder, swa], verbose=0)
    assert swa.num_averaged == 3
    for i, w in enumerate(model.get_weights()):
        expected = np.mean([e[i] for e in recorder.epochs[2:]], axis=0)
        np.testing.assert_allclose(w, expected, rtol=1e-5, atol=1e-7)
    for a, b in zip(swa.final_weights, recorder.epochs[-1]):
        np.testing.assert_array_equal(a, b)


def test_default_swa_start_is_the_last_quarter():
    model = compiled()
    swa = WeightAveraging()
    model.fit(*data(), epochs=8, batch_size=8, callbacks=[swa], verbose=0)
    assert swa.num_averaged == 2


def test_ema_is_the_debiased_moving_average_of_the_steps():
    model = compiled()
    recorder = Recorder()
    ema = WeightAveraging("ema", decay=0.8)
    model.fit(*data(), epochs=2, batch_size=8, callbacks=[recorder, ema], verbose=0)
    assert ema.num_averaged == 8
    for i, w in enumerate(model.get_weights()):
        average = np.zeros_like(w, dtype="float64")
        for weights in recorder.batches:
            average = 0.8 * average + 0.2 * weights[i]
        expected = average / (1 - 0.8**8)
        np.testing.assert_allclose(w, expected, rtol=1e-5, atol=1e-7)


def test_batch_norm_is_recomputed_for_the_averaged_weights():
    model = compiled(bn=True)
    x, y = data()
    swa = WeightAveraging("swa", start_epoch=1, batch_norm_data=x)
    model.fit(x, y, epochs=4, batch_size=8, callbacks=[swa], verbose=0)
    bn = model.layers[1]
    got = bn.moving_mean.numpy().copy()
    # The statistics of the averaged weights, recomputed from scratch.
    recompute_batch_norm(model, x)
    np.testing.assert_allclose(got, bn.moving_mean.numpy(), rtol=1e-6)
    swa_no_data = WeightAveraging("swa", start_epoch=1)
    with pytest.warns(UserWarning, match="batch_norm_data"):
        model.fit(x, y, epochs=3, batch_size=8, callbacks=[swa_no_data], verbose=0)


def test_too_few_epochs_raises_before_training():
    model = compiled()
    before = model.get_weights()
    for averaging, epochs in [
        (WeightAveraging("swa", start_epoch=4), 5),
        (WeightAveraging("swa"), 1),
        (WeightAveraging("ema", start_epoch=3), 3),
        (WeightAveraging("swa", start_epoch=-6), 5),
    ]:
        with pytest.raises(ValueError, match="`start_epoch` leaves"):
            model.fit(*data(), epochs=epochs, callbacks=[averaging], verbose=0)
        for a, b in zip(before, model.get_weights()):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"method": "mean"}, "`method` must be one of"),
        ({"start_epoch": 1.5}, "`start_epoch` must be an integer"),
        ({"decay": 1.0}, "`decay` must be a float in"),
        ({"batch_norm_steps": 0}, "`batch_norm_steps`"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        WeightAveraging(**kwargs)


def test_config_round_trip():
    revived = run_serialization_test(
        WeightAveraging("ema", start_epoch=2, decay=0.9, batch_norm_steps=5)
    )
    assert revived.method == "ema" and revived.decay == 0.9


def test_under_mirrored_strategy_and_saving(strategy, tmp_path):
    with strategy.scope():
        model = make_model(bn=True)
        model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    x, y = data()
    swa = WeightAveraging("swa", start_epoch=1, batch_norm_data=(x, y))
    model.fit(x, y, epochs=3, batch_size=8, callbacks=[swa], verbose=0)
    assert swa.num_averaged == 2
    for a, b in zip(model.get_weights(), swa.averaged_weights):
        np.testing.assert_array_equal(a, b)
    run_model_saving_test(model, x[:4], tmp_path)


# ------------------------------------------------- use_ema, DiscriminativeLR
def ema_of_model(model):
    target = model.optimizer.inner_optimizer
    return [
        keras.ops.convert_to_numpy(_compat.moving_average_of(target, v))
        for v in model.trainable_weights
    ]


def test_use_ema_through_discriminative_lr():
    keras.utils.set_random_seed(0)
    model = make_model()
    inner = keras.optimizers.Adam(1e-2, use_ema=True, ema_momentum=0.9)
    model.compile(optimizer=DiscriminativeLR(inner, {"dense/": 0.5}), loss="mse")

    last = []

    class Last(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            last[:] = [self.model.get_weights()]

    model.fit(*data(), epochs=2, batch_size=8, callbacks=[Last()], verbose=0)
    # At the end of fit the weights are the moving averages, not the last step.
    for w, average in zip(model.get_weights(), ema_of_model(model)):
        np.testing.assert_array_equal(w, average)
    assert not np.allclose(model.get_weights()[0], last[0][0])


def test_use_ema_passed_to_the_wrapper_and_frozen_groups():
    inputs = keras.Input((4,))
    h = keras.layers.Dense(8, activation="relu", name="low")(inputs)
    h = keras.layers.Dense(8, activation="relu", name="high")(h)
    backbone = Backbone(inputs, h, groups={"low": "low", "high": "high"})
    model = keras.Sequential([backbone, keras.layers.Dense(1, name="head")])
    optimizer = DiscriminativeLR(
        keras.optimizers.SGD(0.05),
        layer_decay=0.5,
        groups=backbone,
        use_ema=True,
        ema_momentum=0.8,
    )
    assert optimizer.inner_optimizer.use_ema
    assert optimizer.inner_optimizer.ema_momentum == 0.8
    backbone.freeze_to(1)  # "low" frozen: the optimizer is built on more
    model.compile(optimizer=optimizer, loss="mse")
    low = backbone.get_layer("low")
    frozen = [w.copy() for w in low.get_weights()]
    model.fit(*data(), epochs=2, batch_size=8, verbose=0)
    for a, b in zip(frozen, low.get_weights()):
        np.testing.assert_array_equal(a, b)
    for w, average in zip(model.trainable_weights, ema_of_model(model)):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(w), average)
    revived = run_serialization_test(optimizer, check_type=True)
    assert revived.inner_optimizer.use_ema
    with pytest.raises(ValueError, match="`ema_momentum` must be a float"):
        DiscriminativeLR(keras.optimizers.SGD(), use_ema=True, ema_momentum=2.0)
    with pytest.raises(ValueError, match="no base optimizer arguments other"):
        DiscriminativeLR(keras.optimizers.SGD(), clipnorm=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.fit(*data(), epochs=1, batch_size=8, verbose=0)
