"""Our own LoRA layers: layers without `enable_lora`, dropout, matrix factoring."""

import keras
import numpy as np
import pytest

from keras_transfer.export import to_tflite
from keras_transfer.peft import enable_lora, load_adapters, merge_lora, save_adapters
from keras_transfer.peft._lora_layers import LoRADepthwiseConv2D, LoRAEinsumDense
from tests.testing import (
    changed_paths,
    run_model_saving_test,
    run_serialization_test,
    tiny_bert,
    weights_snapshot,
)

OWN = ["dw", "sep", "up"]


def cnn():
    """Layers Keras gives no `enable_lora`, and a head."""
    inputs = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(4, 1, name="pw")(inputs)
    h = keras.layers.DepthwiseConv2D(3, padding="same", name="dw")(h)
    h = keras.layers.SeparableConv2D(5, 3, name="sep")(h)
    h = keras.layers.Conv2DTranspose(3, 3, name="up")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    return keras.Model(inputs, keras.layers.Dense(2, name="head")(h))


def projections():
    """An attention-style EinsumDense and a Dense with an activation."""
    inputs = keras.Input((5, 6))
    h = keras.layers.EinsumDense(
        "abc,cde->abde", output_shape=(None, 2, 3), bias_axes="de", name="q"
    )(inputs)
    h = keras.layers.Reshape((5, 6))(h)
    h = keras.layers.Dense(4, activation="relu", name="ff")(h)
    return keras.Model(inputs, keras.layers.Dense(3, name="head")(h))


IMAGES = np.random.default_rng(0).random((8, 8, 8, 3)).astype("float32")
SEQUENCES = np.random.default_rng(0).normal(size=(8, 5, 6)).astype("float32")


def perturb(model):
    rng = np.random.default_rng(1)
    for v in model.weights:
        if v.path.endswith("lora_kernel_b"):
            v.assign(0.3 * rng.normal(size=v.shape).astype("float32"))


def fit(model, x, steps=1):
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    y = np.random.default_rng(2).normal(size=(len(x),) + model.output_shape[1:])
    model.fit(x, y, epochs=steps, batch_size=len(x), verbose=0)


def test_layers_without_enable_lora_get_our_own():
    model = cnn()
    before = model.predict(IMAGES, verbose=0)
    summary = enable_lora(model, rank=2, targets=OWN, train="head")
    assert summary.paths == OWN
    assert [r["class_name"] for r in summary.layers] == [
        "LoRADepthwiseConv2D", "LoRASeparableConv2D", "LoRAConv2DTranspose"
    ]
    # Depthwise (3, 3, 4, 1): window x channels; transposed (3, 3, 3, 5).
    dw = model.get_layer("dw")
    assert dw.lora_kernel_a.shape == (3, 3, 2) and dw.lora_kernel_b.shape == (2, 4, 1)
    assert model.get_layer("sep").lora_kernel_b.shape == (2, 5)
    np.testing.assert_allclose(model.predict(IMAGES, verbose=0), before, atol=1e-6)
    perturb(model)
    assert np.abs(model.predict(IMAGES, verbose=0) - before).max() > 1e-3


def test_fit_changes_only_adapters_and_head():
    model = cnn()
    enable_lora(model, rank=2, targets=OWN, train="head")
    snapshot = weights_snapshot(model.weights)
    fit(model, IMAGES)
    changed = changed_paths(snapshot, model.weights)
    adapters = {f"{p}/lora_kernel_{s}" for p in OWN for s in "ab"}
    assert {f"{p}/lora_kernel_b" for p in OWN} | {"head/kernel"} <= changed
    assert changed <= adapters | {"head/kernel", "head/bias"}  # base unchanged


@pytest.mark.parametrize("kind", ["own", "projections"])
def test_merge_parity_and_base_classes(kind):
    if kind == "own":
        model, x = cnn(), IMAGES
        enable_lora(model, rank=2, targets=OWN, train="head")
    else:
        model, x = projections(), SEQUENCES
        enable_lora(model, rank=2, targets=["q", "ff"], dropout=0.2,
                    factoring="matrix", train="head")
    perturb(model)
    paths = [v.path for v in model.weights if "lora" not in v.path]
    before = model.predict(x, verbose=0)
    merge_lora(model)
    np.testing.assert_allclose(model.predict(x, verbose=0), before, atol=1e-5)
    assert [v.path for v in model.weights] == paths
    for layer in model.layers:
        assert type(layer).__module__.startswith("keras."), type(layer)


@pytest.mark.parametrize("kind", ["own", "projections"])
def test_adapter_file_round_trip_onto_a_fresh_base(tmp_path, kind):
    build, x = (cnn, IMAGES) if kind == "own" else (projections, SEQUENCES)
    options = (
        {"targets": OWN} if kind == "own"
        else {"targets": ["q", "ff"], "dropout": 0.1, "factoring": "matrix"}
    )
    trained = build()
    pretrained = trained.get_weights()
    enable_lora(trained, rank=2, train="head", **options)
    fit(trained, x, steps=3)
    expected = trained.predict(x, verbose=0)
    path = str(tmp_path / "adapters.npz")
    save_adapters(trained, path)
    fresh = build()
    fresh.set_weights(pretrained)
    summary = load_adapters(fresh, path)
    assert [r["class_name"] for r in summary.layers] == [
        type(trained.get_layer(p)).__name__ for p in summary.paths
    ]
    np.testing.assert_allclose(fresh.predict(x, verbose=0), expected, atol=1e-6)
    assert {v.path for v in fresh.trainable_weights} == {
        v.path for v in trained.trainable_weights
    }
    if kind == "projections":
        assert fresh.get_layer("q").lora_dropout == 0.1


@pytest.mark.parametrize("kind", ["own", "projections"])
def test_keras_file_round_trip(tmp_path, kind):
    if kind == "own":
        model, x = cnn(), IMAGES
        enable_lora(model, rank=2, targets=OWN, train="head")
    else:
        model, x = projections(), SEQUENCES
        enable_lora(model, rank=2, targets=["q", "ff"], dropout=0.2,
                    factoring="matrix", train="head")
    perturb(model)
    loaded = run_model_saving_test(model, x, tmp_path, atol=1e-5)
    # Folded as Keras folds its own LoRA: the loaded adapters are at zero.
    name = "dw" if kind == "own" else "q"
    layer = loaded.get_layer(name)
    assert type(layer) is type(model.get_layer(name))
    assert np.all(layer.lora_kernel_b.numpy() == 0)
    assert layer.lora_kernel_b.shape == model.get_layer(name).lora_kernel_b.shape


def test_config_round_trip():
    layer = LoRADepthwiseConv2D(3, lora_rank=2, lora_alpha=4, name="dw")
    revived = run_serialization_test(layer)
    assert revived.lora_rank == 2 and revived.lora_alpha == 4
    revived.build((None, 8, 8, 4))
    assert revived.lora_kernel_a.shape == (3, 3, 2)
    einsum = LoRAEinsumDense(
        "abc,cde->abde", output_shape=(None, 2, 3), lora_rank=2,
        lora_dropout=0.1, lora_factoring="matrix",
    )
    revived = run_serialization_test(einsum)
    assert revived.lora_factoring == "matrix" and revived.lora_dropout == 0.1


def test_dropout_acts_on_the_adapter_input_in_training_only():
    model = projections()
    enable_lora(model, rank=2, targets=["q", "ff"], dropout=0.5)
    layer = model.get_layer("ff")
    x = np.random.default_rng(3).normal(size=(16, 6)).astype("float32")
    # B at zero: no update, so dropout changes nothing, in training or not.
    np.testing.assert_allclose(layer(x, training=True), layer(x), atol=1e-6)
    perturb(model)
    inference = keras.ops.convert_to_numpy(layer(x))
    training = keras.ops.convert_to_numpy(layer(x, training=True))
    assert np.abs(training - inference).max() > 1e-3
    # The base path is not dropped: with the update's scale at zero in
    # effect (alpha tiny), training and inference agree again.
    layer.lora_alpha = 1e-8
    np.testing.assert_allclose(layer(x, training=True), layer(x), atol=1e-5)


def test_dropout_fit_changes_only_adapters_and_head():
    model = projections()
    enable_lora(model, rank=2, targets=["q", "ff"], dropout=0.3, train="head")
    snapshot = weights_snapshot(model.weights)
    fit(model, SEQUENCES)
    changed = changed_paths(snapshot, model.weights)
    assert {"q/lora_kernel_b", "ff/lora_kernel_b", "head/kernel"} <= changed
    assert not changed & {"q/kernel", "q/bias", "ff/kernel", "ff/bias"}


def test_matrix_factoring_on_keras_hub_bert():
    backbone, preprocessor = tiny_bert()
    tokens = preprocessor(["good movie", "bad movie"])
    before = backbone(tokens)["sequence_output"]
    last_axis = enable_lora(tiny_bert()[0], rank=2, targets="query|value")
    summary = enable_lora(backbone, rank=2, targets="query|value", factoring="matrix")
    query = [r for r in summary.layers if r["path"].endswith("/query")][0]
    kernel = [v for v in backbone.weights if v.path.endswith("query/kernel")][0]
    hidden = kernel.shape[0]
    heads_times_size = kernel.shape[1] * kernel.shape[2]
    assert query["class_name"] == "LoRAEinsumDense"
    assert query["params"] == 2 * (hidden + heads_times_size)
    assert summary.adapter_params < last_axis.adapter_params
    np.testing.assert_allclose(backbone(tokens)["sequence_output"], before, atol=1e-6)


def test_export_merges_our_layers(tmp_path):
    model = cnn()
    enable_lora(model, rank=2, targets=OWN, train="head")
    perturb(model)
    paths = [v.path for v in model.weights]
    lite = to_tflite(model, str(tmp_path / "m.tflite"))
    assert lite.parity_ok and lite.max_abs_diff < 1e-5
    assert [v.path for v in model.weights] == paths  # the model is untouched
    plain = to_tflite(cnn(), str(tmp_path / "base.tflite"))
    assert abs(lite.size_bytes - plain.size_bytes) < 0.05 * plain.size_bytes


def test_mirrored_strategy(strategy):
    with strategy.scope():
        model = cnn()
        enable_lora(model, rank=2, targets=OWN, train="head")
        other = projections()
        enable_lora(other, rank=2, targets=["q", "ff"], dropout=0.2,
                    factoring="matrix", train="head")
        for m in (model, other):
            m.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    for m, x in ((model, IMAGES), (other, SEQUENCES)):
        snapshot = weights_snapshot(m.weights)
        y = np.zeros((len(x),) + m.output_shape[1:], "float32") + 1.0
        m.fit(x, y, epochs=1, batch_size=4, verbose=0)
        changed = changed_paths(snapshot, m.weights)
        assert any(p.endswith("lora_kernel_b") for p in changed), changed
        assert all("lora" in p or p.startswith("head/") for p in changed), changed


def test_mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = cnn()
        before = model.predict(IMAGES, verbose=0)
        enable_lora(model, rank=2, targets=OWN, train="head")
        other = projections()
        enable_lora(other, rank=2, targets=["q", "ff"], dropout=0.2,
                    factoring="matrix", train="head")
        assert model.get_layer("dw").lora_kernel_a.dtype == "float32"
        np.testing.assert_allclose(model.predict(IMAGES, verbose=0), before,
                                   atol=1e-3)
        for m, x in ((model, IMAGES), (other, SEQUENCES)):
            snapshot = weights_snapshot(m.weights)
            fit(m, x, steps=3)  # the loss scale may skip the first steps
            changed = changed_paths(snapshot, m.weights)
            assert any(p.endswith("lora_kernel_b") for p in changed), changed
            assert all("lora" in p or p.startswith("head/") for p in changed)
    finally:
        keras.mixed_precision.set_global_policy("float32")
