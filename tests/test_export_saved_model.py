"""Tests for `keras_transfer.export.to_saved_model`."""

import importlib
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_transfer.export import ParityError, to_saved_model
from tests.testing import changed_paths, weights_snapshot


# --- test helpers -----------------------------------------------------------
@keras.saving.register_keras_serializable(package="keras_transfer_tests")
class ScaleForExportTest(keras.layers.Layer):
    """Test helper: a custom registered layer with its own weight."""

    def build(self, input_shape):
        self.scale = self.add_weight(
            shape=(input_shape[-1],), initializer="ones", name="scale"
        )

    def call(self, x):
        return x * self.scale + 0.5


class CallCounterForExportTest(keras.layers.Layer):
    """Test helper: adds a Python-side call count, so the traced artifact
    (which bakes in the count at tracing time) differs from later eager calls."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.calls = 0

    def call(self, x):
        self.calls += 1
        return x + float(self.calls)


class WithTrainingPartsForExportTest(keras.Model):
    """Test helper: a two-headed training model with `inference_model()`."""

    def __init__(self, **kwargs):
        inputs = keras.Input((6,), name="features")
        hidden = keras.layers.Dense(8, activation="relu", name="body")(inputs)
        logits = keras.layers.Dense(3, name="classifier")(hidden)
        domain = keras.layers.Dense(16, name="discriminator")(hidden)
        super().__init__(inputs, [logits, domain], **kwargs)
        self._inference = keras.Model(inputs, logits, name="inference")

    def inference_model(self):
        return self._inference


def dense_model(inputs=6, outputs=3):
    x = keras.Input((inputs,), name="x")
    h = keras.layers.Dense(8, activation="relu")(x)
    return keras.Model(x, keras.layers.Dense(outputs)(h))


def serve(path, x):
    loaded = tf.saved_model.load(path)
    signature = loaded.signatures["serving_default"]
    (name,) = signature.structured_input_signature[1]
    return signature(**{name: tf.constant(x)})["output_0"].numpy()


# --- behaviour --------------------------------------------------------------
def test_export_matches_model_and_reloads(tmp_path):
    model = dense_model()
    path = str(tmp_path / "sm")
    result = to_saved_model(model, path)
    assert result.format == "tf_saved_model" and result.path == path
    assert result.parity_ok and result.max_abs_diff <= 1e-4
    assert result.tolerance == 1e-4 and result.num_parity_samples == 4
    assert result.size_bytes > 0
    assert os.path.isfile(os.path.join(path, "saved_model.pb"))
    x = np.random.normal(size=(5, 6)).astype("float32")
    np.testing.assert_allclose(serve(path, x), model.predict(x, verbose=0), atol=1e-5)
    # Nothing left next to the artifact.
    assert os.listdir(tmp_path) == ["sm"]


def test_multi_input_dict_output(tmp_path):
    a = keras.Input((4,), name="a")
    b = keras.Input((2, 3), name="b")
    h = keras.layers.Concatenate()([a, keras.layers.Flatten()(b)])
    model = keras.Model(
        {"a": a, "b": b},
        {"logits": keras.layers.Dense(5)(h), "score": keras.layers.Dense(1)(h)},
    )
    result = to_saved_model(model, str(tmp_path / "sm"))
    assert result.parity_ok and result.max_abs_diff <= 1e-4


def test_export_after_fit_carries_the_trained_weights(tmp_path):
    model = dense_model()
    x = np.random.normal(size=(16, 6)).astype("float32")
    y = np.random.randint(0, 3, size=(16,))
    before = weights_snapshot(model.trainable_variables)
    untrained = model.predict(x, verbose=0)
    model.compile(keras.optimizers.SGD(0.5), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    assert changed_paths(before, model.trainable_variables)
    path = str(tmp_path / "sm")
    result = to_saved_model(model, path, parity_inputs=x[:4])
    assert result.parity_ok and result.num_parity_samples == 4
    served = serve(path, x)
    np.testing.assert_allclose(served, model.predict(x, verbose=0), atol=1e-5)
    assert np.max(np.abs(served - untrained)) > 1e-3


def test_parity_check_catches_a_perturbed_artifact(tmp_path, monkeypatch):
    mod = importlib.import_module("keras_transfer.export.to_saved_model")
    real = mod._run_saved_model

    def perturbed(*args):
        return {k: v + 1e-3 for k, v in real(*args).items()}

    monkeypatch.setattr(mod, "_run_saved_model", perturbed)
    path = tmp_path / "sm"
    with pytest.raises(ParityError, match="exceeds the tolerance") as info:
        to_saved_model(dense_model(), str(path))
    assert info.value.result["max_abs_diff"] == pytest.approx(1e-3, rel=1e-2)
    assert not path.exists() and os.listdir(tmp_path) == []


def test_parity_check_catches_a_model_whose_export_differs(tmp_path):
    x = keras.Input((3,))
    model = keras.Model(x, CallCounterForExportTest()(x))
    with pytest.raises(ParityError, match="SavedModel export of `model`"):
        to_saved_model(model, str(tmp_path / "sm"))
    assert not (tmp_path / "sm").exists()
    result = to_saved_model(model, str(tmp_path / "sm"), check_parity=False)
    assert result.parity_ok is None and result.max_abs_diff is None
    assert (tmp_path / "sm" / "saved_model.pb").exists()


def test_custom_layer_and_savedmodel_layer(tmp_path):
    # A custom registered layer ...
    inner_in = keras.Input((6,))
    inner = keras.Model(inner_in, ScaleForExportTest()(keras.layers.Dense(4)(inner_in)))
    inner_path = str(tmp_path / "inner")
    assert to_saved_model(inner, inner_path).parity_ok
    # ... and a backbone that wraps a SavedModel (as HubLayer wraps TF-Hub).
    x = keras.Input((6,))
    wrapped = keras.layers.TFSMLayer(inner_path, call_endpoint="serve")(x)
    outer = keras.Model(x, keras.layers.Dense(2)(ScaleForExportTest()(wrapped)))
    result = to_saved_model(outer, str(tmp_path / "outer"))
    assert result.parity_ok and result.max_abs_diff <= 1e-4


def test_keras_file_round_trip_then_export(tmp_path):
    x = keras.Input((6,), name="x")
    model = keras.Model(x, keras.layers.Dense(2)(ScaleForExportTest()(x)))
    model.save(str(tmp_path / "m.keras"))
    loaded = keras.saving.load_model(str(tmp_path / "m.keras"), safe_mode=True)
    inputs = np.random.normal(size=(4, 6)).astype("float32")
    result = to_saved_model(loaded, str(tmp_path / "sm"), parity_inputs=inputs)
    assert result.parity_ok
    np.testing.assert_allclose(
        serve(str(tmp_path / "sm"), inputs), model.predict(inputs, verbose=0),
        atol=1e-5,
    )


def test_inference_model_protocol_leaves_training_parts_out(tmp_path):
    model = WithTrainingPartsForExportTest()
    path = str(tmp_path / "sm")
    result = to_saved_model(model, path)
    assert result.used_inference_model and result.parity_ok
    loaded = tf.saved_model.load(path)
    saved = sorted(tuple(v.shape) for v in loaded.variables)
    expected = sorted(tuple(v.shape) for v in model.inference_model().variables)
    assert saved == expected  # no (8, 16) discriminator kernel
    outputs = loaded.signatures["serving_default"](
        features=tf.zeros((2, 6))
    )
    assert list(outputs) == ["output_0"] and outputs["output_0"].shape == (2, 3)


def test_integer_inputs_need_parity_inputs(tmp_path):
    ids = keras.Input((5,), dtype="int32", name="ids")
    h = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(20, 4)(ids))
    model = keras.Model(ids, keras.layers.Dense(2)(h))
    with pytest.raises(ValueError, match="`parity_inputs` is required.*'ids'"):
        to_saved_model(model, str(tmp_path / "sm"))
    assert not (tmp_path / "sm").exists()
    tokens = np.random.randint(0, 20, size=(3, 5)).astype("int32")
    result = to_saved_model(model, str(tmp_path / "sm"), parity_inputs=tokens)
    assert result.parity_ok and result.num_parity_samples == 3


def test_under_mirrored_strategy(tmp_path, strategy):
    x = np.random.normal(size=(16, 6)).astype("float32")
    y = np.random.randint(0, 3, size=(16,))
    with strategy.scope():
        model = dense_model()
        model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    result = to_saved_model(model, str(tmp_path / "sm"), parity_inputs=x[:4])
    assert result.parity_ok and result.max_abs_diff <= 1e-4
    np.testing.assert_allclose(
        serve(str(tmp_path / "sm"), x), model.predict(x, verbose=0), atol=1e-5
    )


# --- paths and overwrite ----------------------------------------------------
def test_refuses_a_non_empty_path(tmp_path):
    path = tmp_path / "sm"
    path.mkdir()
    (path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="`path` already exists.*overwrite=True"):
        to_saved_model(dense_model(), str(path))
    assert os.listdir(path) == ["notes.txt"]
    assert (path / "notes.txt").read_text() == "mine"


def test_empty_directory_is_used(tmp_path):
    (tmp_path / "sm").mkdir()
    assert to_saved_model(dense_model(), str(tmp_path / "sm")).parity_ok


def test_overwrite_replaces_only_after_a_successful_export(tmp_path):
    path = tmp_path / "sm"
    first = dense_model()
    to_saved_model(first, str(path))
    x = np.random.normal(size=(3, 6)).astype("float32")
    old_outputs = serve(str(path), x)

    # A failing export (parity error) with overwrite=True keeps the old one.
    inp = keras.Input((6,), name="x")
    broken = keras.Model(inp, keras.layers.Dense(3)(CallCounterForExportTest()(inp)))
    with pytest.raises(ParityError):
        to_saved_model(broken, str(path), overwrite=True)
    np.testing.assert_allclose(serve(str(path), x), old_outputs)
    assert os.listdir(tmp_path) == ["sm"]  # no temporary sibling left behind

    # A successful one replaces it.
    second = dense_model()
    assert to_saved_model(second, str(path), overwrite=True).parity_ok
    np.testing.assert_allclose(
        serve(str(path), x), second.predict(x, verbose=0), atol=1e-5
    )
    assert os.listdir(tmp_path) == ["sm"]


# --- bad input --------------------------------------------------------------
class SubclassedForExportTest(keras.Model):
    """Test helper: a subclassed model (no symbolic inputs)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(2)

    def call(self, x):
        return self.dense(x)


def test_unknown_rank_input_names_model_and_input(tmp_path):
    model = SubclassedForExportTest()
    model(np.zeros((1, 3), "float32"))
    spec = tf.TensorSpec(shape=None, dtype=tf.float32, name="pixels")
    with pytest.raises(ValueError, match="`model` input 'pixels' has unknown rank"):
        to_saved_model(model, str(tmp_path / "sm"), input_signature=[spec])
    with pytest.raises(ValueError, match="`model`.*no symbolic inputs"):
        to_saved_model(model, str(tmp_path / "sm"))
    assert not (tmp_path / "sm").exists()
    # With a known rank the subclassed model exports.
    spec = tf.TensorSpec(shape=(None, 3), dtype=tf.float32, name="pixels")
    assert to_saved_model(model, str(tmp_path / "sm"), input_signature=[spec]).parity_ok


def test_other_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="`model` must be a `keras.Model`"):
        to_saved_model(keras.layers.Dense(2), str(tmp_path / "sm"))
    with pytest.raises(ValueError, match="`parity_atol`"):
        to_saved_model(dense_model(), str(tmp_path / "sm"), parity_atol=-1.0)
    with pytest.raises(ValueError, match="`num_parity_samples`"):
        to_saved_model(dense_model(), str(tmp_path / "sm"), num_parity_samples=0)
    with pytest.raises(ValueError, match="`parity_inputs` must match"):
        to_saved_model(
            dense_model(), str(tmp_path / "sm"),
            parity_inputs=[np.zeros((2, 6)), np.zeros((2, 6))],
        )
    with pytest.raises(ValueError, match="`path`"):
        to_saved_model(dense_model(), None)
    assert os.listdir(tmp_path) == []
