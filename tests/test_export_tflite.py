"""Tests for `keras_transfer.export.to_tflite`."""

import importlib
import os

import keras
import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from keras_transfer.export import ParityError, to_saved_model, to_tflite

tflite_module = importlib.import_module("keras_transfer.export.to_tflite")


# --- test helpers -----------------------------------------------------------
@keras.saving.register_keras_serializable(package="keras_transfer_tests")
class ShiftForTFLiteTest(keras.layers.Layer):
    """Test helper: a custom registered layer with its own weight."""

    def build(self, input_shape):
        self.shift = self.add_weight(
            shape=(input_shape[-1],), initializer="zeros", name="shift"
        )

    def call(self, x):
        return x + self.shift


def classifier(inputs=32, hidden=128, classes=4):
    """Big enough (> 1024 weights per kernel) that quantization kicks in."""
    x = keras.Input((inputs,), name="x")
    h = keras.layers.Dense(hidden, activation="relu")(x)
    return keras.Model(x, keras.layers.Dense(classes)(h))


def separable_data(n=96, inputs=32, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, size=n)
    centers = rng.normal(size=(classes, inputs)) * 2.0
    x = centers[y] + rng.normal(size=(n, inputs))
    return x.astype("float32"), y


def run_tflite(path, x):
    interpreter = Interpreter(model_path=path)
    runner = interpreter.get_signature_runner("serving_default")
    (name,) = interpreter.get_signature_list()["serving_default"]["inputs"]
    return runner(**{name: x})["output_0"]


@pytest.fixture(scope="module")
def trained():
    keras.utils.set_random_seed(7)
    model = classifier()
    x, y = separable_data()
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    model.fit(x[:64], y[:64], epochs=3, batch_size=16, verbose=0)
    return model, (x[:64], y[:64]), (x[64:], y[64:])


# --- float export -----------------------------------------------------------
def test_float_export_matches_and_runs_in_litert(tmp_path, trained):
    model, (x_train, _), (x_test, _) = trained
    path = str(tmp_path / "m.tflite")
    result = to_tflite(model, path)
    assert result.format == "tflite" and result.quantization is None
    assert result.parity_ok and result.max_abs_diff <= 1e-4
    assert result.size_bytes == os.path.getsize(path)
    np.testing.assert_allclose(
        run_tflite(path, x_test), model.predict(x_test, verbose=0), atol=1e-4
    )
    assert os.listdir(tmp_path) == ["m.tflite"]


def test_fit_changes_what_is_exported(tmp_path):
    model = classifier()
    x, y = separable_data(n=32)
    untrained = model.predict(x, verbose=0)
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    history = model.fit(x, y, epochs=3, batch_size=8, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    path = str(tmp_path / "m.tflite")
    assert to_tflite(model, path).parity_ok
    exported = run_tflite(path, x)
    np.testing.assert_allclose(exported, model.predict(x, verbose=0), atol=1e-4)
    assert np.max(np.abs(exported - untrained)) > 1e-2


def test_parity_check_catches_a_perturbed_artifact(tmp_path, monkeypatch):
    real = tflite_module._Runner.__call__

    def perturbed(self, inputs):
        return {k: v * 1.001 + 1e-3 for k, v in real(self, inputs).items()}

    monkeypatch.setattr(tflite_module._Runner, "__call__", perturbed)
    with pytest.raises(ParityError, match="TFLite export of `model`"):
        to_tflite(classifier(), str(tmp_path / "m.tflite"))
    assert os.listdir(tmp_path) == []
    # A quantized export is not held to the float tolerance, only reported.
    x, _ = separable_data(n=16)
    result = to_tflite(
        classifier(), str(tmp_path / "q.tflite"), quantization="dynamic"
    )
    assert result.parity_ok is None and result.max_abs_diff >= 1e-3


def test_custom_layer_multi_input_and_savedmodel_layer(tmp_path):
    a = keras.Input((4,), name="a")
    b = keras.Input((3,), name="b")
    h = ShiftForTFLiteTest()(keras.layers.Concatenate()([a, b]))
    inner = keras.Model([a, b], keras.layers.Dense(3)(h))
    result = to_tflite(inner, str(tmp_path / "inner.tflite"))
    assert result.parity_ok and result.max_abs_diff <= 1e-4
    # int8 with two inputs: calibration feeds each input by its name.
    rows = [np.random.normal(size=(20, 4)), np.random.normal(size=(20, 3))]
    result = to_tflite(
        inner, str(tmp_path / "inner8.tflite"), quantization="int8",
        representative_data=rows,
    )
    assert result.max_abs_diff < 0.5
    # A backbone wrapping a SavedModel, as `HubLayer` wraps a TF-Hub model.
    single = keras.Input((7,))
    saved = keras.Model(single, keras.layers.Dense(5)(ShiftForTFLiteTest()(single)))
    to_saved_model(saved, str(tmp_path / "sm"))
    x = keras.Input((7,))
    wrapped = keras.layers.TFSMLayer(str(tmp_path / "sm"), call_endpoint="serve")
    outer = keras.Model(x, keras.layers.Dense(2)(wrapped(x)))
    result = to_tflite(outer, str(tmp_path / "outer.tflite"))
    assert result.parity_ok and result.max_abs_diff <= 1e-4


def test_list_outputs_and_dict_inputs(tmp_path, monkeypatch):
    a = keras.Input((4,), name="left")
    b = keras.Input((3,), name="right")
    h = keras.layers.Concatenate()([a, b])
    model = keras.Model(
        {"left": a, "right": b},
        [keras.layers.Dense(2)(h), keras.layers.Dense(6)(h)],
    )
    inputs = {"left": np.ones((2, 4), "float32"), "right": np.zeros((2, 3), "float32")}
    result = to_tflite(model, str(tmp_path / "m.tflite"), parity_inputs=inputs)
    assert result.parity_ok and result.num_parity_samples == 2
    # Both outputs are compared: perturbing the second one is caught.
    real = tflite_module._Runner.__call__

    def second_off(self, feeds):
        outputs = real(self, feeds)
        outputs["output_1"] = outputs["output_1"] + 1.0
        return outputs

    monkeypatch.setattr(tflite_module._Runner, "__call__", second_off)
    with pytest.raises(ParityError, match="'output_1'"):
        to_tflite(model, str(tmp_path / "m2.tflite"))


# --- quantization -----------------------------------------------------------
@pytest.mark.parametrize("quantization", ["dynamic", "float16", "int8"])
def test_quantization_modes(tmp_path, trained, quantization):
    model, (x_train, _), (x_test, y_test) = trained
    float_size = to_tflite(model, str(tmp_path / "float.tflite")).size_bytes
    path = str(tmp_path / f"{quantization}.tflite")
    result = to_tflite(
        model,
        path,
        quantization=quantization,
        representative_data=x_train if quantization == "int8" else None,
        evaluation_data=(x_test, y_test),
    )
    assert result.quantization == quantization and result.parity_ok is None
    # Smaller file: int8 weights are ~1/4, float16 ~1/2 of float32.
    ratio = result.size_bytes / float_size
    assert ratio < (0.7 if quantization == "float16" else 0.55), ratio
    # Still close to the float model ...
    assert 0 < result.max_abs_diff < 0.5
    assert result.argmax_agreement >= 0.75
    # ... and the reported accuracies are what the artifact really scores.
    predictions = run_tflite(path, x_test)
    expected = float(np.mean(np.argmax(predictions, -1) == y_test))
    assert result.artifact_accuracy == pytest.approx(expected)
    keras_accuracy = float(
        np.mean(np.argmax(model.predict(x_test, verbose=0), -1) == y_test)
    )
    assert result.keras_accuracy == pytest.approx(keras_accuracy)
    assert result.accuracy_change == pytest.approx(expected - keras_accuracy)
    assert result.keras_accuracy > 0.7


def test_int8_quantizes_activations(tmp_path, trained):
    model, (x_train, _), _ = trained
    path = str(tmp_path / "int8.tflite")
    to_tflite(model, path, quantization="int8", representative_data=x_train)
    types = {d["dtype"] for d in Interpreter(model_path=path).get_tensor_details()}
    assert np.int8 in types
    # Inputs and outputs stay float.
    interpreter = Interpreter(model_path=path)
    assert interpreter.get_input_details()[0]["dtype"] == np.float32
    assert interpreter.get_output_details()[0]["dtype"] == np.float32


def test_representative_data_as_a_generator(tmp_path, trained):
    model, (x_train, _), _ = trained

    def samples():
        for row in x_train[:16]:
            yield [row[None]]

    result = to_tflite(
        model, str(tmp_path / "int8.tflite"), quantization="int8",
        representative_data=samples,
    )
    assert result.argmax_agreement >= 0.75


def test_under_mirrored_strategy(tmp_path, strategy):
    x, y = separable_data(n=32)
    with strategy.scope():
        model = classifier()
        model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    result = to_tflite(model, str(tmp_path / "m.tflite"), parity_inputs=x[:4])
    assert result.parity_ok and result.max_abs_diff <= 1e-4


# --- paths and overwrite ----------------------------------------------------
def test_refuses_existing_file_and_keeps_it_on_failed_overwrite(tmp_path, monkeypatch):
    path = tmp_path / "m.tflite"
    model = classifier()
    to_tflite(model, str(path))
    original = path.read_bytes()
    with pytest.raises(ValueError, match="`path` already exists"):
        to_tflite(classifier(), str(path))
    assert path.read_bytes() == original

    def failing_convert(*args, **kwargs):
        raise RuntimeError("converter crashed")

    monkeypatch.setattr(tflite_module, "_convert", failing_convert)
    with pytest.raises(RuntimeError, match="converter crashed"):
        to_tflite(classifier(), str(path), overwrite=True)
    assert path.read_bytes() == original
    assert os.listdir(tmp_path) == ["m.tflite"]
    monkeypatch.undo()
    result = to_tflite(classifier(), str(path), overwrite=True)
    assert result.parity_ok and path.read_bytes() != original


# --- bad input --------------------------------------------------------------
def test_bad_arguments(tmp_path):
    model = classifier()
    path = str(tmp_path / "m.tflite")
    with pytest.raises(ValueError, match="`representative_data` is required"):
        to_tflite(model, path, quantization="int8")
    with pytest.raises(ValueError, match="`quantization` must be one of"):
        to_tflite(model, path, quantization="int4")
    with pytest.raises(ValueError, match="`evaluation_data`"):
        to_tflite(model, path, quantization="dynamic", evaluation_data=np.zeros(3))
    with pytest.raises(ValueError, match="`representative_data` must match"):
        to_tflite(
            model, path, quantization="int8",
            representative_data=[np.zeros((4, 32)), np.zeros((4, 32))],
        )
    ids = keras.Input((5,), dtype="int32", name="ids")
    pooled = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(9, 4)(ids))
    with pytest.raises(ValueError, match="`parity_inputs` is required.*'ids'"):
        to_tflite(keras.Model(ids, pooled), path)
    assert os.listdir(tmp_path) == []
