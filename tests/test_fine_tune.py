"""Tests for `keras_transfer.fine_tune`."""

import contextlib

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_transfer.backbones import Backbone
from keras_transfer.fine_tune import LABEL_SMOOTHING, fine_tune
from keras_transfer.losses import SparseCategoricalCrossentropy
from keras_transfer.optimizers import DiscriminativeLR
from keras_transfer.schedules import OneCycle, SlantedTriangular
from tests.testing import run_model_saving_test, weights_snapshot


def make_model(seed=0, units=3, activation=None):
    """Backbone of three groups (low, mid, high with BatchNorm) and a head."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((6,))
    h = keras.layers.Dense(8, activation="relu", name="low")(inputs)
    h = keras.layers.Dense(8, activation="relu", name="mid")(h)
    h = keras.layers.Dense(8, name="high")(h)
    h = keras.layers.BatchNormalization(name="high_bn")(h)
    backbone = Backbone(
        inputs, h, groups={"low": "low", "mid": "mid", "high": "high(_bn)?"}
    )
    x = keras.Input((6,))
    outputs = keras.layers.Dense(units, activation=activation, name="head")(
        backbone(x)
    )
    return keras.Model(x, outputs, name="classifier"), backbone


def data(n=32, classes=3):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 6)).astype("float32")
    y = (x[:, 0] > 0).astype("int64") + (x[:, 1] > 0.5).astype("int64")
    return x, y % classes


def test_recipe_head_first_then_gradual_unfreezing_with_layer_decay():
    model, backbone = make_model()
    x, y = data()
    history = fine_tune(
        model, backbone, (x, y), epochs=5, head_epochs=2, batch_size=8, verbose=0
    )
    logs = history.history
    assert logs["unfrozen_groups"] == [0, 0, 1, 2, 3]
    assert logs["loss"][-1] < logs["loss"][0]
    assert "accuracy" in logs

    optimizer = model.optimizer
    assert isinstance(optimizer, DiscriminativeLR)
    assert isinstance(optimizer.inner_optimizer, keras.optimizers.Adam)
    schedule = optimizer.inner_optimizer._learning_rate
    assert isinstance(schedule, OneCycle)
    assert schedule.total_steps == 4 * 5 and schedule.max_lr == 1e-3
    multipliers = optimizer.get_multipliers()
    assert multipliers["head/kernel"] == pytest.approx(1.0)
    assert multipliers["high/kernel"] == pytest.approx(0.5)
    assert multipliers["mid/kernel"] == pytest.approx(0.25)
    assert multipliers["low/kernel"] == pytest.approx(0.125)
    assert int(optimizer.iterations.numpy()) == 20


def test_batchnorm_stays_in_inference_mode_by_default():
    model, backbone = make_model()
    x, y = data()
    bn = backbone.get_layer("high_bn")
    before = weights_snapshot(bn.weights)
    fine_tune(model, backbone, (x, y), epochs=3, head_epochs=1, verbose=0)
    for v in bn.weights:  # gamma, beta and the moving statistics
        np.testing.assert_array_equal(before[v.path], v.numpy())
    assert backbone.get_layer("high").trainable  # the group itself trained


def test_frozen_head_phase_changes_only_the_head():
    model, backbone = make_model()
    x, y = data()
    before = weights_snapshot(backbone.weights)
    fine_tune(model, backbone, (x, y), epochs=3, head_epochs=2, verbose=0)
    # Epochs 0-1 train the head only; epoch 2 unfreezes "high" alone.
    changed = {
        v.path
        for v in backbone.weights
        if not np.array_equal(before[v.path], v.numpy())
    }
    assert changed == {"high/kernel", "high/bias"}


def test_every_default_can_be_overridden():
    model, backbone = make_model()
    x, y = data()
    sgd = keras.optimizers.SGD(momentum=0.9)
    history = fine_tune(
        model,
        backbone,
        (x, y),
        validation_data=(x, y),
        epochs=4,
        head_epochs=1,
        unfreeze_every=2,
        learning_rate=0.05,
        layer_decay=0.6,
        schedule="slanted_triangular",
        optimizer=sgd,
        freeze_bn=False,
        loss="sparse_categorical_crossentropy",
        metrics=[],
        batch_size=16,
        verbose=0,
    )
    assert history.history["unfrozen_groups"] == [0, 1, 1, 2]
    assert "val_loss" in history.history
    inner = model.optimizer.inner_optimizer
    assert isinstance(inner, keras.optimizers.SGD) and inner.momentum == 0.9
    assert isinstance(inner._learning_rate, SlantedTriangular)
    assert inner._learning_rate.total_steps == 2 * 4
    assert model.optimizer.get_multipliers()["mid/kernel"] == pytest.approx(0.36)


def test_unfreeze_every_zero_unfreezes_every_group_after_the_head_phase():
    model, backbone = make_model()
    x, y = data()
    before = weights_snapshot(backbone.weights)
    history = fine_tune(
        model, backbone, (x, y), epochs=4, head_epochs=2, unfreeze_every=0,
        verbose=0,
    )
    assert history.history["unfrozen_groups"] == [0, 0, 3, 3]
    for name in ("low", "mid", "high"):  # every group trained, the lowest too
        kernel = backbone.get_layer(name).kernel
        assert not np.array_equal(before[kernel.path], kernel.numpy()), name


def test_constant_schedule_and_a_given_schedule():
    model, backbone = make_model()
    x, y = data()
    fine_tune(model, backbone, (x, y), epochs=2, schedule="constant", verbose=0)
    rate = model.optimizer.inner_optimizer.learning_rate
    assert float(keras.ops.convert_to_numpy(rate)) == pytest.approx(1e-3)
    model, backbone = make_model()
    given = keras.optimizers.schedules.ExponentialDecay(1e-2, 10, 0.5)
    fine_tune(model, backbone, (x, y), epochs=2, schedule=given, verbose=0)
    assert model.optimizer.inner_optimizer._learning_rate is given


def test_compile_false_keeps_the_users_compile():
    model, backbone = make_model()
    optimizer = keras.optimizers.Adam(1e-2)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
    x, y = data()
    history = fine_tune(
        model, backbone, (x, y), epochs=3, head_epochs=1, compile=False, verbose=0
    )
    assert model.optimizer is optimizer
    assert history.history["unfrozen_groups"] == [0, 1, 2]
    assert "accuracy" not in history.history


def test_tf_data_input():
    model, backbone = make_model()
    x, y = data()
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    history = fine_tune(model, backbone, dataset, epochs=2, verbose=0)
    assert model.optimizer.inner_optimizer._learning_rate.total_steps == 4 * 2
    assert history.history["unfrozen_groups"] == [0, 1]


@pytest.mark.parametrize(
    "units, activation, labels, expected, from_logits",
    [
        (3, None, "int", SparseCategoricalCrossentropy, True),
        (3, "softmax", "int", SparseCategoricalCrossentropy, False),
        (3, None, "onehot", keras.losses.CategoricalCrossentropy, True),
        (1, None, "binary", keras.losses.BinaryCrossentropy, True),
        (1, "sigmoid", "binary", keras.losses.BinaryCrossentropy, False),
    ],
)
def test_loss_is_inferred(units, activation, labels, expected, from_logits):
    model, backbone = make_model(units=units, activation=activation)
    x, y = data(16)
    if labels == "onehot":
        y = np.eye(3, dtype="float32")[y]
    elif labels == "binary":
        y = (y > 0).astype("float32")[:, None]
    fine_tune(model, backbone, (x, y), epochs=2, verbose=0)
    loss = model.loss
    assert isinstance(loss, expected)
    assert loss.get_config()["from_logits"] is from_logits
    # The default label smoothing, on every inferred loss.
    assert loss.get_config()["label_smoothing"] == pytest.approx(LABEL_SMOOTHING)
    # label_smoothing=0: Keras's own losses, unsmoothed.
    fine_tune(model, backbone, (x, y), epochs=2, label_smoothing=0, verbose=0)
    plain = {
        SparseCategoricalCrossentropy: keras.losses.SparseCategoricalCrossentropy
    }.get(expected, expected)
    assert type(model.loss) is plain
    assert model.loss.get_config().get("label_smoothing", 0.0) == 0.0


def test_label_smoothing_is_the_loss_the_fit_minimizes():
    """The loss in the History is the smoothed cross-entropy of the model."""
    model, backbone = make_model()
    x, y = data(16)
    history = fine_tune(
        model, backbone, (x, y), epochs=2, label_smoothing=0.3, verbose=0,
        batch_size=16, shuffle=False, head_epochs=0,
    )
    assert model.loss.label_smoothing == pytest.approx(0.3)
    logits = model.predict(x, verbose=0)
    target = 0.7 * np.eye(3)[y] + 0.1
    log_p = logits - np.log(np.sum(np.exp(logits), -1, keepdims=True))
    expected = float(np.mean(-np.sum(target * log_p, -1)))
    # After the last step, the model's loss on the batch it trained on is
    # the smoothed cross-entropy, not the plain one.
    plain = float(np.mean(-log_p[np.arange(16), y]))
    assert model.evaluate(x, y, verbose=0)[0] == pytest.approx(expected, rel=1e-5)
    assert abs(expected - plain) > 1e-3
    assert np.isfinite(history.history["loss"]).all()


def test_label_smoothing_of_a_loss_that_is_not_inferred_is_an_error():
    model, backbone = make_model()
    x, y = data(8)
    before = weights_snapshot(model.weights)
    with pytest.raises(
        ValueError, match=r"`label_smoothing`.*loss='mse'.*label_smoothing=0.2"
    ):
        fine_tune(
            model, backbone, (x, y), loss="mse", label_smoothing=0.2, verbose=0
        )
    model.compile("adam", "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match=r"`label_smoothing`.*compile=False"):
        fine_tune(
            model, backbone, (x, y), compile=False, label_smoothing=0.1, verbose=0
        )
    for v in model.weights:
        np.testing.assert_array_equal(before[v.path], v.numpy())
    assert model.loss == "sparse_categorical_crossentropy"
    # Left out, the user's loss is kept as it is.
    own = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    fine_tune(model, backbone, (x, y), epochs=2, loss=own, verbose=0)
    assert model.loss is own


def test_model_saves_and_loads_after_fine_tune(tmp_path):
    model, backbone = make_model()
    x, y = data(16)
    fine_tune(model, backbone, (x, y), epochs=2, verbose=0)
    loaded = run_model_saving_test(model, x, tmp_path)
    assert isinstance(loaded.optimizer, DiscriminativeLR)


def test_under_mirrored_strategy_matches_single_device(strategy):
    x, y = data()

    def train(scope):
        with scope:
            model, backbone = make_model(seed=4)
            fine_tune(
                model,
                backbone,
                (x, y),
                epochs=3,
                head_epochs=1,
                batch_size=8,
                shuffle=False,
                verbose=0,
            )
        return model

    single = train(contextlib.nullcontext())
    mirrored = train(strategy.scope())
    assert isinstance(mirrored.optimizer, DiscriminativeLR)
    for a, b in zip(single.weights, mirrored.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)


# -- bad input -------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"epochs": 0}, "`epochs` must be >= 1"),
        ({"epochs": 2.5}, "`epochs` must be an integer"),
        ({"epochs": 3, "head_epochs": 3}, "`head_epochs` must be smaller"),
        ({"head_epochs": -1}, "`head_epochs` must be >= 0"),
        ({"unfreeze_every": -1}, "`unfreeze_every` must be >= 0"),
        ({"learning_rate": 0.0}, "`learning_rate` must be a positive"),
        ({"layer_decay": 0.0}, r"`layer_decay` must be a float in \(0, 1\]"),
        ({"layer_decay": 1.5}, r"`layer_decay` must be a float in \(0, 1\]"),
        ({"schedule": "cosine"}, "`schedule` must be one of"),
        ({"optimizer": "adam"}, "`optimizer` must be a keras.optimizers"),
        ({"validation_split": 0.2}, "`validation_split` is not supported"),
        ({"train_bn": True, "freeze_bn": True}, "`train_bn` and `freeze_bn`"),
        ({"label_smoothing": 1.0}, r"`label_smoothing` must be a float in \[0, 1\)"),
        ({"label_smoothing": -0.1}, r"`label_smoothing` must be a float in \[0, 1\)"),
        ({"label_smoothing": "0.1"}, r"Received: label_smoothing='0.1'"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, match):
    model, backbone = make_model()
    x, y = data(8)
    before = weights_snapshot(model.weights)
    with pytest.raises(ValueError, match=match):
        fine_tune(model, backbone, (x, y), verbose=0, **kwargs)
    for v in model.weights:
        np.testing.assert_array_equal(before[v.path], v.numpy())


def test_loss_that_cannot_be_inferred_asks_for_loss():
    model, backbone = make_model()
    x, _ = data(8)
    y = np.random.default_rng(0).normal(size=(8, 1)).astype("float32")
    with pytest.raises(ValueError, match="Pass loss="):
        fine_tune(model, backbone, (x, y), verbose=0)


def test_compile_false_on_an_uncompiled_model_is_an_error():
    model, backbone = make_model()
    x, y = data(8)
    with pytest.raises(ValueError, match="`compile=False`"):
        fine_tune(model, backbone, (x, y), compile=False, verbose=0)


def test_backbone_not_in_model_is_an_error():
    model, _ = make_model()
    _, other = make_model(seed=1)
    x, y = data(8)
    with pytest.raises(ValueError, match="`backbone`.*is not part of the model"):
        fine_tune(model, other, (x, y), verbose=0)



@pytest.mark.parametrize(
    "units, labels, match",
    [
        (1, np.arange(8) % 3, r"1 output.*values \[0 1 2\].*give the head 3 units"),
        (2, np.arange(8) % 3, r"2 outputs.*from 0 to 2.*Give the head 3 units"),
        (3, np.arange(8) % 3 - 1, r"3 outputs.*from -1 to 1"),
    ],
)
def test_loss_is_not_inferred_when_labels_do_not_fit_the_head(units, labels, match):
    model, backbone = make_model(units=units)
    x, _ = data(8)
    before = weights_snapshot(model.weights)
    with pytest.raises(ValueError, match=match + ".*pass loss="):
        fine_tune(model, backbone, (x, labels.astype("int64")), epochs=2, verbose=0)
    for v in model.weights:
        np.testing.assert_array_equal(before[v.path], v.numpy())
    # The same check reads one batch of a tf.data pipeline.
    dataset = tf.data.Dataset.from_tensor_slices((x, labels)).batch(4)
    with pytest.raises(ValueError, match=match):
        fine_tune(model, backbone, dataset, epochs=2, verbose=0)
    # An explicit loss is the user's choice and is kept.
    if units > 1:
        return
    fine_tune(
        model, backbone, (x, labels), epochs=2, loss="mse", verbose=0
    )
    assert model.loss == "mse"


def test_one_epoch_error_is_about_epochs_and_head_epochs_zero_runs():
    model, backbone = make_model()
    x, y = data(8)
    with pytest.raises(ValueError, match=r"`epochs` must be >= 2.*epochs=1$") as e:
        fine_tune(model, backbone, (x, y), epochs=1, verbose=0)
    assert "head_epochs=1" not in str(e.value)
    history = fine_tune(model, backbone, (x, y), epochs=1, head_epochs=0, verbose=0)
    assert history.history["unfrozen_groups"] == [1]


def test_train_bn_needs_no_freeze_bn_argument():
    model, backbone = make_model()
    x, y = data(16)
    bn = backbone.get_layer("high_bn")
    moving = bn.moving_mean.numpy().copy()
    history = fine_tune(
        model, backbone, (x, y), epochs=2, head_epochs=1, train_bn=True, verbose=0
    )
    assert history.history["unfrozen_groups"] == [0, 1]
    # train_bn: the BatchNorm of the frozen head phase trained (its moving
    # statistics moved), which freeze_bn=True would have prevented.
    assert not np.allclose(bn.moving_mean.numpy(), moving)
    with pytest.raises(ValueError, match="`train_bn` and `freeze_bn`"):
        fine_tune(model, backbone, (x, y), epochs=2, train_bn=True, freeze_bn=True)


def test_default_verbosity_writes_plain_lines_to_a_log(capsys):
    model, backbone = make_model()
    x, y = data(16)
    fine_tune(model, backbone, (x, y), epochs=2, batch_size=8)
    out = capsys.readouterr().out
    assert "Epoch 2/2" in out and "loss:" in out
    for control in ("\x1b", "\r", "\b"):
        assert control not in out, repr(out)


def test_epochs_left_out_counts_at_least_120_steps():
    model, backbone = make_model()
    x, y = data(32)
    # 32 examples at batch 8: 4 steps an epoch, so 30 epochs (120 steps).
    history = fine_tune(model, backbone, (x, y), batch_size=8, verbose=0)
    assert history.params["epochs"] == 30
    assert len(history.history["loss"]) == 30
    schedule = model.optimizer.inner_optimizer._learning_rate
    assert schedule.total_steps == 120
    # The head phase and the unfreezing follow the chosen length.
    assert history.history["unfrozen_groups"][:6] == [0, 0, 0, 1, 2, 3]


def test_epochs_left_out_is_20_on_a_larger_set_and_an_unknown_size():
    model, backbone = make_model()
    x, y = data(48)
    # 48 examples at batch 8: 6 steps an epoch, 120 steps in 20 epochs.
    history = fine_tune(model, backbone, (x, y), batch_size=8, verbose=0)
    assert history.params["epochs"] == 20
    # A dataset of unknown size and the model's own compile: 20 epochs.
    model, backbone = make_model()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    dataset = (
        tf.data.Dataset.from_tensor_slices((x, y)).filter(lambda a, b: True).batch(16)
    )
    assert dataset.cardinality() == tf.data.UNKNOWN_CARDINALITY
    history = fine_tune(model, backbone, dataset, compile=False, verbose=0)
    assert history.params["epochs"] == 20
    # With compile=True the schedule needs the steps: a clear error.
    model, backbone = make_model()
    with pytest.raises(ValueError, match="Pass steps_per_epoch="):
        fine_tune(model, backbone, dataset, verbose=0)


def test_epochs_left_out_counts_steps_of_tf_data_and_steps_per_epoch(capsys):
    model, backbone = make_model()
    x, y = data(32)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    # Two batches an epoch: 60 epochs, said on the output.
    history = fine_tune(model, backbone, dataset, verbose=2)
    assert history.params["epochs"] == 60
    out = capsys.readouterr().out
    assert "fine_tune: 60 epochs of 2 steps" in out
    assert "Epoch 60/60" in out
    # steps_per_epoch on a repeated dataset sets the length too.
    model, backbone = make_model()
    history = fine_tune(
        model, backbone, dataset.repeat(), steps_per_epoch=5, verbose=0
    )
    assert history.params["epochs"] == 24
    assert model.optimizer.inner_optimizer._learning_rate.total_steps == 120


def test_epochs_left_out_counts_the_batches_of_a_py_dataset():
    class Batches(keras.utils.PyDataset):
        def __init__(self, x, y):
            super().__init__()
            self.x, self.y = x, y

        def __len__(self):
            return 3

        def __getitem__(self, index):
            part = slice(index * 8, (index + 1) * 8)
            return self.x[part], self.y[part]

    model, backbone = make_model()
    x, y = data(24)
    history = fine_tune(model, backbone, Batches(x, y), verbose=0)
    assert history.params["epochs"] == 40


@pytest.mark.parametrize("batch_size", [0, 2.5, "32"])
def test_bad_batch_size_names_the_argument(batch_size):
    model, backbone = make_model()
    x, y = data(8)
    before = weights_snapshot(model.weights)
    with pytest.raises(ValueError, match="`batch_size` must be"):
        fine_tune(model, backbone, (x, y), batch_size=batch_size, verbose=0)
    for v in model.weights:
        np.testing.assert_array_equal(before[v.path], v.numpy())
