"""`HubLayer` (TF-Hub modules / SavedModels in Keras 3) and `Backbone.from_tfhub`."""

import socket

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_transfer.backbones import Backbone
from keras_transfer.layers import HubLayer, trust_hub_handles
from tests.testing import run_model_saving_test, run_serialization_test


class Scale(tf.Module):
    """Test helper: y = x @ w + b, plus 100 when training (to see the flag)."""

    def __init__(self):
        super().__init__()
        self.w = tf.Variable([[1.0, -1.0], [0.5, 2.0], [0.0, 1.0]], name="w")
        self.b = tf.Variable([0.0, 0.0], name="b")
        self.calls = tf.Variable(0.0, trainable=False, name="calls")

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, 3], tf.float32),
            tf.TensorSpec([], tf.bool),
        ]
    )
    def __call__(self, x, training=False):
        y = tf.matmul(x, self.w) + self.b
        return tf.cond(training, lambda: y + 100.0, lambda: y)


@pytest.fixture
def module_path(tmp_path):
    path = str(tmp_path / "scale_module")
    tf.saved_model.save(Scale(), path)
    return path


@pytest.fixture
def keras_export_path(tmp_path):
    inputs = keras.Input((3,), name="features")
    outputs = keras.layers.Dense(2, name="dense")(inputs)
    model = keras.Model(inputs, outputs)
    path = str(tmp_path / "exported")
    model.export(path, format="tf_saved_model", verbose=False)
    return path, model


def x_data(n=8, seed=0):
    return np.random.default_rng(seed).normal(size=(n, 3)).astype("float32")


def test_calls_module_and_passes_training(module_path):
    layer = HubLayer(module_path, trainable=True)
    x = x_data(2)
    expected = x @ np.array([[1.0, -1.0], [0.5, 2.0], [0.0, 1.0]], "float32")
    np.testing.assert_allclose(layer(x), expected, atol=1e-6)
    np.testing.assert_allclose(layer(x, training=True), expected + 100.0, atol=1e-5)
    assert sorted(v.shape.as_list() for v in layer.trainable_weights) == [[2], [3, 2]]
    assert [v.shape.as_list() for v in layer.non_trainable_weights] == [[]]


def test_signature_and_output_key(keras_export_path):
    path, model = keras_export_path
    layer = HubLayer(path, signature="serving_default")
    x = x_data(3)
    np.testing.assert_allclose(layer(x), model(x), atol=1e-6)
    # Exported Keras models are also callable through their `serve` endpoint.
    with pytest.raises(ValueError, match="`signature`"):
        HubLayer(path, signature="nope")
    with pytest.raises(ValueError, match="`output_key`"):
        HubLayer(path, signature="serving_default", output_key="nope")


def test_fit_updates_module_variables(module_path):
    layer = HubLayer(module_path, trainable=True, name="hub")
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(1, name="out")(layer(inputs)))
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    x = x_data(16)
    y = x.sum(axis=1, keepdims=True)
    before = model.predict(x, verbose=0)
    w_before = layer.trainable_weights[0].numpy().copy()
    # Training mode adds 100 inside the module: targets are near 0, so a
    # training step sees a large error; fit must still move the module.
    model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    assert not np.allclose(layer.trainable_weights[0].numpy(), w_before)
    assert not np.allclose(model.predict(x, verbose=0), before)
    frozen = HubLayer(module_path, trainable=False)
    assert frozen.trainable_weights == []


def test_saved_and_loaded_with_fine_tuned_values(module_path, tmp_path):
    layer = HubLayer(module_path, trainable=True, name="hub")
    inputs = keras.Input((3,))
    model = keras.Model(inputs, layer(inputs))
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    x = x_data(8)
    model.fit(x, np.zeros((8, 2)), batch_size=8, epochs=1, verbose=0)
    tuned = layer.trainable_weights[0].numpy()
    fresh = HubLayer(module_path)(x)
    assert not np.allclose(model(x), fresh)
    # Loading runs the module's graph: the proof opts in for this handle.
    with trust_hub_handles([module_path]):
        loaded = run_model_saving_test(model, x, tmp_path)
        revived = run_serialization_test(layer)
    hub = loaded.get_layer("hub")
    np.testing.assert_allclose(hub.trainable_weights[0].numpy(), tuned)
    assert revived.handle == module_path


def test_fit_under_mirrored_strategy(module_path, strategy):
    x = x_data(16)
    y = np.zeros((16, 2), "float32")

    def train():
        layer = HubLayer(module_path, trainable=True, name="hub")
        inputs = keras.Input((3,))
        model = keras.Model(inputs, layer(inputs))
        model.compile(optimizer=keras.optimizers.SGD(0.001), loss="mse")
        model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
        return sorted((v.numpy() for v in layer.trainable_weights), key=np.size)

    single = train()
    with strategy.scope():
        mirrored = train()
    for a, b in zip(single, mirrored):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert not np.allclose(single[-1], Scale().w.numpy())


def test_from_tfhub_backbone(module_path):
    backbone = Backbone.from_tfhub(module_path, input_shape=(3,))
    assert backbone.group_names == ["hub"]
    assert backbone.trainable_group_names == ["hub"]
    backbone.freeze()
    assert backbone.trainable_weights == []
    assert backbone(x_data(2)).shape == (2, 2)


def test_bad_handles(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="`handle`"):
        HubLayer(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="`handle`"):
        HubLayer(42)

    def fail(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fail)
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(ConnectionError, match="no network.*HubLayer\\('/path"):
        HubLayer(
            "https://tfhub.dev/google/imagenet/mobilenet_v2_035_96/feature_vector/5"
        )


class Polymorphic(tf.Module):
    """Test helper: a module traced at two input shapes, with no signature."""

    def __init__(self):
        super().__init__()
        self.w = tf.Variable(2.0, name="w")

    @tf.function
    def __call__(self, x):
        return x * self.w


def test_from_tfhub_reads_the_input_signature(module_path, keras_export_path):
    backbone = Backbone.from_tfhub(module_path)
    assert backbone.input_shape == (None, 3)
    assert backbone(x_data(2)).shape == (2, 2)
    path, model = keras_export_path
    served = Backbone.from_tfhub(path, signature="serving_default")
    assert served.input_shape == (None, 3)
    np.testing.assert_allclose(served(x_data(3)), model(x_data(3)), atol=1e-6)
    assert HubLayer(module_path).input_signature.shape.as_list() == [None, 3]


def test_from_tfhub_asks_for_input_shape_only_without_a_signature(tmp_path):
    module = Polymorphic()
    module(tf.zeros((2, 3)))
    module(tf.zeros((2, 5)))
    path = str(tmp_path / "polymorphic")
    tf.saved_model.save(module, path)
    assert HubLayer(path).input_signature is None
    with pytest.raises(ValueError, match="no input signature.*pass `input_shape`"):
        Backbone.from_tfhub(path)
    backbone = Backbone.from_tfhub(path, input_shape=(5,))
    np.testing.assert_allclose(backbone(np.ones((2, 5), "float32")), 2.0)


# -- safe_mode ----------------------------------------------------------------


def _saved_hub_model(module_path, tmp_path):
    inputs = keras.Input((3,))
    model = keras.Model(inputs, HubLayer(module_path, name="hub")(inputs))
    path = str(tmp_path / "hub_model.keras")
    model.save(path)
    return model, path


@pytest.fixture
def count_loads(monkeypatch):
    """Counts every SavedModel load and TF-Hub resolve from here on."""
    import tensorflow_hub

    calls = []
    real_load = tf.saved_model.load

    def load(*args, **kwargs):
        calls.append(("load", args))
        return real_load(*args, **kwargs)

    def resolve(handle):
        calls.append(("resolve", handle))
        raise AssertionError("resolved a handle")

    monkeypatch.setattr(tf.saved_model, "load", load)
    monkeypatch.setattr(tensorflow_hub, "resolve", resolve)
    return calls


def test_safe_mode_refuses_a_hub_layer_before_touching_its_folder(
    module_path, tmp_path, count_loads
):
    _, path = _saved_hub_model(module_path, tmp_path)
    count_loads.clear()
    message = (
        f"handle='{module_path}' in safe mode.*"
        r"trust_hub_handles\(\['.*scale_module'\]\).*`safe_mode=False`.*"
        r"enable_unsafe_deserialization\(\)"
    )
    with pytest.raises(ValueError, match=message):
        keras.saving.load_model(path)
    with pytest.raises(ValueError, match=message):
        keras.saving.load_model(path, safe_mode=True)
    assert count_loads == []
    # The folder is not even looked at: without it the error is the same.
    import shutil

    shutil.rmtree(module_path)
    with pytest.raises(ValueError, match=message):
        keras.saving.load_model(path)
    assert count_loads == []


def test_a_url_handle_is_refused_without_any_network_access(tmp_path, count_loads):
    config = {"name": "hub", "trainable": False, "dtype": "float32",
              "handle": "https://tfhub.dev/someone/module/1",
              "signature": None, "output_key": None}
    serialized = {"module": None, "class_name": "HubLayer", "config": config,
                  "registered_name": "keras_transfer>HubLayer"}
    with pytest.raises(ValueError, match="tfhub.dev/someone/module/1"):
        keras.saving.deserialize_keras_object(serialized)
    with pytest.raises(ValueError, match="in safe mode"):
        HubLayer.from_config(config)  # outside any loading: safe as well
    assert count_loads == []


def test_opt_ins_load_the_hub_layer(module_path, tmp_path):
    model, path = _saved_hub_model(module_path, tmp_path)
    x = x_data(4)
    loaded = keras.saving.load_model(path, safe_mode=False)
    np.testing.assert_allclose(loaded(x), model(x), atol=1e-6)
    # The allow-list takes the folder in another spelling of the same path.
    import os

    other_spelling = os.path.join(os.path.dirname(module_path), ".", "scale_module/")
    with trust_hub_handles(other_spelling):
        loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded(x), model(x), atol=1e-6)
    # Outside the context the file is refused again; another handle does not help.
    with trust_hub_handles([str(tmp_path / "elsewhere")]):
        with pytest.raises(ValueError, match="in safe mode"):
            keras.saving.load_model(path)
    with pytest.raises(ValueError, match="`handles` must be a string"):
        with trust_hub_handles([3]):
            pass


def test_enable_unsafe_deserialization_loads_the_hub_layer(module_path, tmp_path):
    """In a fresh process: the switch is global and cannot be turned back."""
    import subprocess
    import sys

    _, path = _saved_hub_model(module_path, tmp_path)
    code = (
        "import keras, numpy as np, keras_transfer\n"
        f"path = {path!r}\n"
        "try:\n"
        "    keras.saving.load_model(path)\n"
        "    raise SystemExit('loaded in safe mode')\n"
        "except ValueError as e:\n"
        "    assert 'in safe mode' in str(e), e\n"
        "keras.config.enable_unsafe_deserialization()\n"
        "model = keras.saving.load_model(path)\n"
        "print(model(np.ones((1, 3), 'float32')).numpy().round(3).tolist())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[[1.5, 2.0]]"
