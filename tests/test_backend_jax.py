"""The core on the JAX backend: what only JAX needs checking.

Runs in the JAX pass of `make test` (`KERAS_BACKEND=jax`, two CPU devices
from `XLA_FLAGS`); the TensorFlow pass deselects it (marker `jax`). The
backend-neutral test files run in both passes.
"""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from keras_transfer.backbones import Backbone
from keras_transfer.callbacks import GradualUnfreezing
from keras_transfer.optimizers import DiscriminativeLR

pytestmark = pytest.mark.jax


def make_model(seed=0, activation="relu"):
    """A three-group backbone (with BatchNorm) and a dense head."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((6,))
    h = keras.layers.Dense(8, activation=activation, name="low")(inputs)
    h = keras.layers.Dense(8, activation=activation, name="mid")(h)
    h = keras.layers.Dense(8, name="high")(h)
    h = keras.layers.BatchNormalization(name="high_bn")(h)
    backbone = Backbone(
        inputs, h, groups={"low": "low", "mid": "mid", "high": "high(_bn)?"},
        name="backbone",
    )
    x = keras.Input((6,))
    outputs = keras.layers.Dense(2, name="head")(backbone(x))
    return keras.Model(x, outputs, name="net"), backbone


def data(n=16):
    rng = np.random.default_rng(0)
    return (
        rng.normal(size=(n, 6)).astype("float32"),
        rng.normal(size=(n, 2)).astype("float32"),
    )


def values(model):
    return {v.path: keras.ops.convert_to_numpy(v).copy() for v in model.weights}


class PhaseRecorder(keras.callbacks.Callback):
    """The weights at each epoch start and at the end of training."""

    def __init__(self):
        super().__init__()
        self.snapshots = []

    def on_epoch_begin(self, epoch, logs=None):
        self.snapshots.append(values(self.model))

    def on_train_end(self, logs=None):
        self.snapshots.append(values(self.model))

    def changed(self, epoch):
        a, b = self.snapshots[epoch], self.snapshots[epoch + 1]
        return {p for p in a if not np.array_equal(a[p], b[p])}


def _names(paths):
    return {p.split("/")[-2] for p in paths}


# ------------------------------------------------------------ DiscriminativeLR
@pytest.mark.parametrize("steps_per_execution", [1, 2])
def test_factors_scale_the_sgd_update_numerically(steps_per_execution):
    """0 leaves a group bit-identical; 0.1 gives a tenth of plain SGD's step."""
    x, y = data()
    moved = []
    for wrap in (False, True):
        model, _ = make_model()
        start = values(model)
        opt = keras.optimizers.SGD(0.05)
        if wrap:
            opt = DiscriminativeLR(opt, multipliers={"^low/": 0.0, "^mid/": 0.1})
        model.compile(opt, "mse", steps_per_execution=steps_per_execution)
        # One step per call: the same gradient for both runs.
        model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
        end = values(model)
        moved.append({p: end[p] - start[p] for p in start})
        if wrap:
            for p in start:
                if p.startswith("low/"):
                    assert np.array_equal(end[p], start[p]), p
    plain, scaled = moved
    for path, delta in plain.items():
        if "moving" in path:
            continue
        factor = {"low": 0.0, "mid": 0.1}.get(path.split("/")[0], 1.0)
        # The deltas are differences of float32 weights of size ~0.5.
        np.testing.assert_allclose(
            scaled[path], factor * delta, rtol=1e-5, atol=2e-7, err_msg=path
        )
        assert np.abs(delta).max() > 0, path


def test_set_multipliers_mid_fit_reaches_the_jitted_step():
    x, y = data()
    model, _ = make_model()
    opt = DiscriminativeLR(keras.optimizers.Adam(0.01))
    model.compile(opt, "mse")
    recorder = PhaseRecorder()

    class FreezeLow(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                self.model.optimizer.set_multipliers({"^low/": 0.0})

    model.fit(x, y, batch_size=4, epochs=2, verbose=0,
              callbacks=[FreezeLow(), recorder])
    assert "low" in _names(recorder.changed(0))
    assert _names(recorder.changed(1)) == {"mid", "high", "high_bn", "head"}


def test_use_ema_with_gradual_unfreezing_is_a_clear_error_before_training():
    x, y = data()
    model, backbone = make_model()
    opt = DiscriminativeLR(keras.optimizers.Adam(0.01, use_ema=True), groups=backbone)
    model.compile(opt, "mse")
    before = values(model)
    with pytest.raises(ValueError, match="use_ema.*'jax' backend"):
        model.fit(x, y, epochs=2, verbose=0,
                  callbacks=[GradualUnfreezing(backbone, schedule=[1])])
    after = values(model)  # the model is left as it was
    assert all(np.array_equal(before[p], after[p]) for p in before)


# ------------------------------------------------------------ GradualUnfreezing
def _phases(model, backbone, optimizer, epochs=3):
    x, y = data()
    model.compile(optimizer, "mse")
    recorder = PhaseRecorder()
    history = model.fit(
        x, y, batch_size=4, epochs=epochs, shuffle=False, verbose=0,
        callbacks=[GradualUnfreezing(backbone, schedule=[1, 2]), recorder],
    )
    return recorder, history


@pytest.mark.parametrize("wrap", [False, True])
def test_gradual_unfreezing_trains_each_phase_on_jax(wrap):
    model, backbone = make_model()
    optimizer = keras.optimizers.Adam(0.01)
    if wrap:
        optimizer = DiscriminativeLR(
            optimizer, groups=backbone, multipliers=slice(0.1, 1.0)
        )
    recorder, history = _phases(model, backbone, optimizer)
    assert history.history["unfrozen_groups"] == [0, 1, 2]
    # Frozen BatchNorm: inference mode, moving statistics unchanged.
    assert _names(recorder.changed(0)) == {"head"}
    assert _names(recorder.changed(1)) == {"head", "high", "high_bn"}
    assert _names(recorder.changed(2)) == {"head", "high", "high_bn", "mid"}
    assert model.optimizer is optimizer


def test_gradual_unfreezing_under_data_parallel_matches_one_device():
    """`keras.distribution.DataParallel` over the two CPU devices JAX has."""
    import jax

    devices = keras.distribution.list_devices("cpu")
    assert len(devices) == 2 and len(jax.devices()) == 2, devices

    def run():
        # tanh, not ReLU: with ReLU a sample whose `low` outputs are all zero
        # puts `mid`'s pre-activations exactly at the kink (its bias starts
        # at 0), where the one-device and the sharded programs may take
        # different subgradients and the runs part by a whole step.
        model, backbone = make_model(seed=3, activation="tanh")
        optimizer = DiscriminativeLR(
            keras.optimizers.SGD(0.05), groups=backbone, multipliers=[0.1, 0.3, 1.0]
        )
        recorder, history = _phases(model, backbone, optimizer)
        return model, recorder, history

    single, single_recorder, _ = run()
    keras.distribution.set_distribution(
        keras.distribution.DataParallel(devices=devices)
    )
    try:
        parallel, recorder, history = run()
        kernel = parallel.get_layer("head").kernel.value
        assert len(kernel.sharding.device_set) == 2  # replicated on both
    finally:
        keras.distribution.set_distribution(None)
    assert history.history["unfrozen_groups"] == [0, 1, 2]
    for epoch in range(3):
        assert recorder.changed(epoch) == single_recorder.changed(epoch), epoch
    for a, b in zip(single.weights, parallel.weights):
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b),
            rtol=1e-5, atol=1e-6, err_msg=a.path,
        )


# --------------------------------------------------- TensorFlow-only features
def test_tensorflow_only_features_name_the_backend_and_what_to_use(tmp_path):
    from keras_transfer.distribute import enable_multi_worker_fit
    from keras_transfer.export import to_saved_model, to_tflite
    from keras_transfer.layers import HubLayer

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    before = values(model)
    cases = [
        (lambda: HubLayer(str(tmp_path)), "`HubLayer`.*keras-hub preset"),
        (lambda: to_saved_model(model, str(tmp_path / "sm")), "to_saved_model"),
        (lambda: to_tflite(model, str(tmp_path / "m.tflite")), "to_tflite"),
        (enable_multi_worker_fit, "keras.distribution.DataParallel"),
    ]
    for call, match in cases:
        with pytest.raises(RuntimeError, match=match) as info:
            call()
        message = str(info.value)
        assert "TensorFlow backend" in message and "'jax' backend" in message
    assert not os.listdir(tmp_path)  # nothing written
    after = values(model)
    assert all(np.array_equal(before[p], after[p]) for p in before)


def test_a_hub_layer_in_a_saved_config_names_the_backend():
    config = {
        "module": None,
        "class_name": "HubLayer",
        "registered_name": "keras_transfer>HubLayer",
        "config": {"handle": "/nowhere", "name": "hub", "trainable": False},
    }
    with pytest.raises(RuntimeError, match="`HubLayer`.*'jax' backend"):
        keras.saving.deserialize_keras_object(config)


# ------------------------------------------------------------- across backends
_SAVE_ON_TENSORFLOW = """
import os, sys
os.environ["KERAS_BACKEND"] = "tensorflow"
import keras, numpy as np
sys.path.insert(0, {root!r})
from tests.test_backend_jax import data, make_model
from keras_transfer.optimizers import DiscriminativeLR
model, backbone = make_model()
model.compile(DiscriminativeLR(keras.optimizers.Adam(0.01), groups=backbone,
                               layer_decay=0.5), "mse")
x, y = data()
model.fit(x, y, batch_size=8, epochs=1, verbose=0)
model.save({path!r})
np.save({path!r} + ".pred.npy", model.predict(x, verbose=0))
"""


def test_a_model_saved_on_tensorflow_loads_and_trains_on_jax(tmp_path):
    path = str(tmp_path / "model.keras")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = textwrap.dedent(_SAVE_ON_TENSORFLOW.format(root=root, path=path))
    env = {**os.environ, "KERAS_BACKEND": "tensorflow"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True,
        timeout=300, env=env, cwd=root,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.optimizer, DiscriminativeLR)
    x, y = data()
    np.testing.assert_allclose(
        loaded.predict(x, verbose=0), np.load(path + ".pred.npy"),
        rtol=1e-5, atol=1e-6,
    )
    assert int(loaded.optimizer.iterations.numpy()) == 2
    factors = list(loaded.optimizer.get_multipliers().values())
    before = values(loaded)
    loaded.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert int(loaded.optimizer.iterations.numpy()) == 4
    assert list(loaded.optimizer.get_multipliers().values()) == factors
    after = values(loaded)
    assert any(not np.array_equal(before[p], after[p]) for p in before)


# ------------------------------------------------------------ domain adaptation
@pytest.mark.parametrize("method", ["dann", "coral"])
def test_domain_adaptation_model_trains_on_jax(method):
    from keras_transfer.adaptation import (
        CORAL,
        DANN,
        DomainAdaptationModel,
        pair_datasets,
    )
    from keras_transfer.layers import DomainDiscriminator

    keras.utils.set_random_seed(0)
    features = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(6, activation="relu")], name="f"
    )
    head = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(3, activation="softmax")], name="h"
    )
    chosen = (
        DANN(discriminator=DomainDiscriminator((6,)))
        if method == "dann" else CORAL()
    )
    model = DomainAdaptationModel(features, head, method=chosen)
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(16, 4)).astype("float32")
    xt = (rng.normal(size=(16, 4)) + 1.0).astype("float32")
    data = pair_datasets((xs, rng.integers(0, 3, 16)), xt, batch_size=8)
    before = values(model)
    history = model.fit(data, epochs=2, verbose=0)
    after = values(model)
    changed = {p for p in before if not np.array_equal(before[p], after[p])}
    assert any(p.startswith("f/") or "dense" in p for p in changed), changed
    assert np.isfinite(history.history["loss"]).all()
    assert f"{chosen.name}_loss" in history.history
    if method == "dann":
        # The reversal warms up along the DANN schedule, step by step.
        lam = float(keras.ops.convert_to_numpy(model.gradient_reversal.lambda_variable))
        assert 0.0 < lam < 1.0
        assert any("discriminator" in p for p in changed), changed
    # Evaluation on labelled target data runs through the JAX test step.
    logs = model.evaluate(xt, rng.integers(0, 3, 16), verbose=0, return_dict=True)
    assert np.isfinite(logs["loss"])


def _state(model):
    """Copies of the model's weights and its optimizer's state."""
    weights = [w.copy() for w in model.get_weights()]
    slots = [keras.ops.convert_to_numpy(v).copy() for v in model.optimizer.variables]
    return weights, slots


def _assert_same_state(a, b):
    for part in (0, 1):
        assert len(a[part]) == len(b[part])
        for x, y in zip(a[part], b[part]):
            np.testing.assert_array_equal(x, y)


def test_bad_input_leaves_a_trained_adaptation_model_as_it_was():
    """The JAX trainer empties the variables before the first step: an error
    raised while that step is traced must not take the weights with it."""
    from keras_transfer.adaptation import DANN, DomainAdaptationModel
    from keras_transfer.layers import DomainDiscriminator

    keras.utils.set_random_seed(0)
    features = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(6, activation="relu")], name="f"
    )
    head = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(3, activation="softmax")], name="h"
    )
    model = DomainAdaptationModel(
        features, head, method=DANN(discriminator=DomainDiscriminator((6,)))
    )
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(16, 4)).astype("float32")
    xt = (rng.normal(size=(16, 4)) + 1.0).astype("float32")
    ys = rng.integers(0, 3, 16)
    paired = {"source": xs, "target": xt}
    model.fit(paired, ys, batch_size=8, epochs=1, verbose=0)
    trained = _state(model)
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 2

    bad_calls = [
        # Our own checks in `train_step` and `test_step`.
        (
            "pair_datasets(). Received: x = a tensor of shape (",
            lambda: model.fit(xs, ys, verbose=0),
        ),
        (
            "same feature shape",
            lambda: model.fit(
                {"source": xs, "target": xt[:, :3]}, ys, batch_size=8, verbose=0
            ),
        ),
        (
            "need at least 2 samples",
            lambda: model.fit(paired, ys, batch_size=1, verbose=0),
        ),
        (
            "Evaluation needs labelled target data",
            lambda: model.evaluate(paired, ys, batch_size=8, verbose=0),
        ),
        # Keras's own errors on labels and inputs that do not fit.
        (None, lambda: model.fit(paired, np.ones((16, 5)), batch_size=8, verbose=0)),
        (None, lambda: model.predict(np.ones((2, 5), "float32"), verbose=0)),
    ]
    for message, call in bad_calls:
        with pytest.raises((ValueError, TypeError)) as info:
            call()
        if message is not None:
            assert message in str(info.value), info.value
        _assert_same_state(_state(model), trained)

    # The model still predicts and trains from where it was.
    predictions = model.predict(xs, verbose=0)
    assert predictions.shape == (16, 3) and np.isfinite(predictions).all()
    model.fit(paired, ys, batch_size=8, epochs=1, verbose=0)
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 4
    weights = model.get_weights()
    assert any(not np.array_equal(a, b) for a, b in zip(weights, trained[0]))


def test_a_failure_after_the_first_step_keeps_what_the_steps_trained():
    """Only variables the trainer left empty are put back: a later step that
    raises leaves the state of the steps that ran, as Keras puts it back."""
    from keras_transfer.utils.kept_state import run_keeping_state

    class StopAtThirdStep(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if batch == 2:
                self.model  # noqa: B018  (attaches the state of step 2)
                self.seen = values(self.model)
                raise RuntimeError("stop")

    x, y = data()
    model, _ = make_model()
    model.compile(keras.optimizers.SGD(0.1), "mse")
    before = values(model)
    stop = StopAtThirdStep()
    with pytest.raises(RuntimeError, match="stop"):
        run_keeping_state(
            lambda callbacks: model.fit(
                x, y, batch_size=4, verbose=0, callbacks=callbacks
            ),
            [stop],
        )
    after = values(model)
    assert any(not np.array_equal(before[p], after[p]) for p in before)
    for path in after:
        np.testing.assert_array_equal(after[path], stop.seen[path], err_msg=path)


def test_gradient_reversal_gradient_on_jax():
    import jax

    from keras_transfer.layers import GradientReversal

    layer = GradientReversal(lambda_=0.3)
    x = np.arange(6, dtype="float32").reshape(2, 3)
    grad = jax.grad(lambda v: keras.ops.sum(layer(v) * 2.0))(x)
    np.testing.assert_allclose(np.asarray(grad), -0.3 * 2.0 * np.ones((2, 3)))
    np.testing.assert_array_equal(np.asarray(layer(x)), x)


# ---------------------------------------------------- the one-call recipes
def _classifier_data(n=64):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 6)).astype("float32"), rng.integers(0, 2, n)


def test_fine_tune_and_lr_find_on_jax():
    from keras_transfer import fine_tune, lr_find

    x, y = _classifier_data()
    model, backbone = make_model()
    start = [w.copy() for w in model.get_weights()]
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(True))
    result = lr_find(model, (x, y), steps=12, batch_size=16, verbose=0)
    assert result.steps >= 2 and result.suggestion() > 0
    # The range test leaves the model as it was.
    assert all(np.array_equal(a, b) for a, b in zip(start, model.get_weights()))
    history = fine_tune(
        model, backbone, (x, y), epochs=3, head_epochs=1, batch_size=16,
        loss=keras.losses.SparseCategoricalCrossentropy(True), verbose=0,
    )
    assert isinstance(model.optimizer, DiscriminativeLR)
    assert history.history["unfrozen_groups"][0] == 0
    assert history.history["unfrozen_groups"][-1] > 0
    assert np.isfinite(history.history["loss"]).all()
    # `epochs` left out: 64 examples at batch 16 are 4 steps an epoch, so
    # 30 epochs make the 120 steps of the default length.
    history = fine_tune(
        model, backbone, (x, y), batch_size=16,
        loss=keras.losses.SparseCategoricalCrossentropy(True), verbose=0,
    )
    assert history.params["epochs"] == 30
    assert len(history.history["loss"]) == 30


def test_fine_tune_with_labels_that_do_not_fit_keeps_the_trained_model():
    from keras_transfer import fine_tune

    x, y = _classifier_data()
    model, backbone = make_model()
    loss = keras.losses.SparseCategoricalCrossentropy(True)
    model.compile("adam", loss)
    model.fit(x, y, batch_size=16, verbose=0)
    trained = [w.copy() for w in model.get_weights()]
    # With the model's own compile (already built by its training), Keras's
    # loss refuses the labels while the first step is traced.
    with pytest.raises(ValueError, match="same shape"):
        fine_tune(
            model, backbone, (x, np.ones((64, 5), "float32")), epochs=2,
            head_epochs=1, batch_size=16, compile=False, verbose=0,
        )
    for a, b in zip(model.get_weights(), trained):
        np.testing.assert_array_equal(a, b)
    history = fine_tune(
        model, backbone, (x, y), epochs=2, head_epochs=1, batch_size=16,
        loss=loss, verbose=0,
    )
    assert np.isfinite(history.history["loss"]).all()


def test_lora_and_weight_averaging_on_jax():
    from keras_transfer.callbacks import WeightAveraging
    from keras_transfer.peft import enable_lora, merge_lora

    x, y = _classifier_data()
    model, _ = make_model()
    enable_lora(model, rank=2)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(True))
    averaging = WeightAveraging(method="ema")
    model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[averaging])
    assert averaging.num_averaged == 8
    before = model.predict(x, verbose=0)
    merged = merge_lora(model)
    assert merged
    np.testing.assert_allclose(model.predict(x, verbose=0), before, atol=1e-5)
