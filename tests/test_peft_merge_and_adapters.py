"""`merge_lora`, `save_adapters` / `load_adapters`, and export of adapted models."""

import os

import keras
import numpy as np
import pytest

from keras_transfer import _compat
from keras_transfer.export import to_saved_model, to_tflite
from keras_transfer.peft import enable_lora, load_adapters, merge_lora, save_adapters
from tests.testing import weights_snapshot


def mlp():
    inputs = keras.Input((6,))
    h = keras.layers.Dense(12, activation="relu", name="body")(inputs)
    h = keras.layers.Dense(12, activation="relu", name="mid")(h)
    outputs = keras.layers.Dense(3, name="head")(h)
    return keras.Model(inputs, outputs)


def cnn():
    inputs = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(6, 1, name="pointwise")(inputs)
    h = keras.layers.Conv2D(4, 3, name="conv3")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    return keras.Model(inputs, keras.layers.Dense(2, name="head")(h))


X = np.random.default_rng(0).normal(size=(8, 6)).astype("float32")
Y = np.arange(8) % 3


def train(model, epochs=3):
    model.compile(optimizer=keras.optimizers.Adam(3e-2),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(X, Y, epochs=epochs, verbose=0)


@pytest.mark.parametrize("dora", [False, True])
def test_merge_parity_and_no_adapter_variables(dora):
    model = mlp()
    enable_lora(model, rank=2, targets=["body", "mid"], train="head", dora=dora)
    train(model)
    before = model.predict(X, verbose=0)
    merged = merge_lora(model)
    assert merged == ["body", "mid"]
    assert [v.path for v in model.weights] == [
        "body/kernel", "body/bias", "mid/kernel", "mid/bias", "head/kernel", "head/bias"
    ]
    assert type(model.get_layer("body")) is keras.layers.Dense
    np.testing.assert_allclose(model.predict(X, verbose=0), before, atol=1e-5)
    # The merged model can get new adapters on top.
    assert enable_lora(model, rank=2, targets="body").paths == ["body"]


def test_merge_conv_dora_parity():
    model = cnn()
    enable_lora(model, rank=2, targets=["pointwise", "conv3"], dora=True)
    x = np.random.default_rng(0).random((2, 8, 8, 3)).astype("float32")
    for v in model.weights:
        if "lora_kernel_b" in v.path:
            v.assign(np.random.default_rng(2).normal(size=v.shape) * 0.2)
    before = model.predict(x, verbose=0)
    merge_lora(model)
    assert all("lora" not in v.path and "dora" not in v.path for v in model.weights)
    np.testing.assert_allclose(model.predict(x, verbose=0), before, atol=1e-5)


@pytest.mark.parametrize("dora", [False, True])
def test_adapter_file_round_trip_onto_a_fresh_base(tmp_path, dora):
    keras.utils.set_random_seed(0)
    base = mlp()
    pretrained = base.get_weights()
    enable_lora(base, rank=2, targets=["body", "mid"], train="head", dora=dora)
    train(base)
    expected = base.predict(X, verbose=0)
    path = str(tmp_path / "adapters.npz")
    size = save_adapters(base, path)
    full = tmp_path / "full.weights.h5"
    base.save_weights(str(full))
    assert size < os.path.getsize(full)

    fresh = mlp()
    fresh.set_weights(pretrained)
    summary = load_adapters(fresh, path)
    assert summary.paths == ["body", "mid"]
    np.testing.assert_allclose(fresh.predict(X, verbose=0), expected, atol=1e-6)
    # Training resumes: adapters and head train, the base stays frozen.
    assert {v.path for v in fresh.trainable_weights} == {
        v.path for v in base.trainable_weights
    }
    snapshot = weights_snapshot(fresh.weights)
    train(fresh, epochs=1)
    kernel = _compat.base_weight(fresh.get_layer("body")).numpy()
    assert np.array_equal(snapshot["body/kernel"], kernel)


def test_load_adapters_onto_a_model_with_the_same_adapters(tmp_path):
    trained = mlp()
    pretrained = trained.get_weights()
    enable_lora(trained, rank=2, targets="body", train="head")
    train(trained)
    path = str(tmp_path / "a.npz")
    save_adapters(trained, path)
    other = mlp()
    other.set_weights(pretrained)
    enable_lora(other, rank=2, targets="body", train="head")
    load_adapters(other, path)
    np.testing.assert_allclose(other.get_layer("body").lora_kernel_b.numpy(),
                               trained.get_layer("body").lora_kernel_b.numpy())
    np.testing.assert_allclose(other.get_layer("head").kernel.numpy(),
                               trained.get_layer("head").kernel.numpy())


@pytest.mark.parametrize("dora", [False, True])
def test_export_merges_a_copy_and_checks_parity(tmp_path, dora):
    model = mlp()
    enable_lora(model, rank=2, targets=["body", "mid"], train="head", dora=dora)
    train(model)
    paths_before = [v.path for v in model.weights]
    lite = to_tflite(model, str(tmp_path / "m.tflite"))
    assert lite.parity_ok and lite.max_abs_diff < 1e-5
    saved = to_saved_model(model, str(tmp_path / "sm"))
    assert saved.parity_ok
    # The user's model is untouched.
    assert [v.path for v in model.weights] == paths_before
    # The artifact is the base architecture's size.
    base = mlp()
    plain = to_tflite(base, str(tmp_path / "base.tflite"))
    assert abs(lite.size_bytes - plain.size_bytes) < 0.05 * plain.size_bytes
