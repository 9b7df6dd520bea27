"""Domain adaptation with the fine-tuning engine, and export of the result."""

import os
import warnings

import keras
import numpy as np

from keras_transfer.adaptation import DANN, DomainAdaptationModel, pair_datasets
from keras_transfer.backbones import Backbone
from keras_transfer.callbacks import GradualUnfreezing
from keras_transfer.export import to_saved_model, to_tflite
from keras_transfer.layers import DomainDiscriminator
from keras_transfer.optimizers import DiscriminativeLR
from tests.testing import changed_paths, weights_snapshot


def _backbone():
    inputs = keras.Input((6,))
    h = keras.layers.Dense(8, activation="relu", name="low")(inputs)
    h = keras.layers.Dense(8, activation="relu", name="high")(h)
    return Backbone(inputs, h, groups={"low": "low", "high": "high"}, name="bb")


def _data():
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(32, 6)).astype("float32")
    ys = (xs[:, 0] > 0).astype("int64")
    xt = (rng.normal(size=(24, 6)) + 0.5).astype("float32")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pair_datasets((xs, ys), xt, batch_size=8, shuffle=False), xt


def _dann(backbone):
    head = keras.Sequential(
        [keras.Input((8,)), keras.layers.Dense(2, activation="softmax")], name="head"
    )
    return DomainAdaptationModel(
        backbone, head, method=DANN(discriminator=DomainDiscriminator((4,)))
    )


def test_dann_with_discriminative_lr_and_gradual_unfreezing():
    backbone = _backbone()
    model = _dann(backbone)
    optimizer = DiscriminativeLR(
        keras.optimizers.Adam(1e-2), multipliers={"low": 0.0}, groups=backbone
    )
    model.compile(optimizer, "sparse_categorical_crossentropy", metrics=["accuracy"])
    data, _ = _data()
    low = backbone.get_layer("low").trainable_weights
    high = backbone.get_layer("high").trainable_weights
    before = weights_snapshot(low + high)
    history = model.fit(
        data,
        epochs=3,
        verbose=0,
        callbacks=[GradualUnfreezing(backbone, schedule=[1, 2])],
    )
    assert history.history["unfrozen_groups"] == [0, 1, 2]
    changed = changed_paths(before, low + high)
    # "high" was unfrozen at epoch 1 and trained; "low" was unfrozen at epoch 2
    # but its learning-rate multiplier is 0: it must not move at all.
    assert {v.path for v in high} <= changed
    assert not ({v.path for v in low} & changed)
    assert np.isfinite(history.history["dann_loss"]).all()


def test_adapted_model_exports_without_training_parts(tmp_path):
    model = _dann(_backbone())
    model.compile("adam", "sparse_categorical_crossentropy")
    data, xt = _data()
    model.fit(data, epochs=1, verbose=0)
    saved = to_saved_model(model, os.path.join(tmp_path, "sm"), parity_inputs=xt[:4])
    lite = to_tflite(model, os.path.join(tmp_path, "m.tflite"), parity_inputs=xt[:4])
    for result in (saved, lite):
        assert result.used_inference_model and result.parity_ok
        assert result.max_abs_diff < 1e-4
    # The discriminator is not in the artifact: the TFLite file holds the
    # extractor and classifier weights only.
    inference_params = model.inference_model().count_params()
    assert inference_params < model.count_params()
    assert lite.size_bytes < 4 * model.count_params() + 20_000
