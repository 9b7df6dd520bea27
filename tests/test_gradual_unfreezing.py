"""Tests for `keras_transfer.callbacks.GradualUnfreezing`."""

import keras
import numpy as np
import pytest

from keras_transfer import _compat
from keras_transfer.backbones import Backbone
from keras_transfer.callbacks import GradualUnfreezing
from tests.testing import (
    changed_paths,
    run_model_saving_test,
    run_serialization_test,
    weights_snapshot,
)

# -- helpers ---------------------------------------------------------------


def make_backbone(bn=True):
    """Three groups, input to output: low, mid, high (+ BatchNorm)."""
    inputs = keras.Input((6,))
    h = keras.layers.Dense(6, activation="relu", name="low")(inputs)
    h = keras.layers.Dense(6, activation="relu", name="mid")(h)
    h = keras.layers.Dense(6, name="high")(h)
    if bn:
        h = keras.layers.BatchNormalization(name="high_bn")(h)
    groups = {"low": "low", "mid": "mid", "high": "high(_bn)?"}
    return Backbone(inputs, h, groups=groups, name="backbone")


def make_model(seed=0, bn=True):
    """A tiny backbone of three groups (low, mid, high) and a dense head."""
    keras.utils.set_random_seed(seed)
    backbone = make_backbone(bn=bn)
    inputs = keras.Input((6,))
    outputs = keras.layers.Dense(2, name="head")(backbone(inputs))
    return keras.Model(inputs, outputs, name="classifier"), backbone


def data(n=16):
    rng = np.random.default_rng(0)
    return (
        rng.normal(size=(n, 6)).astype("float32"),
        rng.normal(size=(n, 2)).astype("float32"),
    )


def group_paths(backbone, *names):
    out = set()
    for group in backbone.groups:
        if group.name in names:
            out |= {v.path for v in group.variables}
    return out


def bn_paths(backbone):
    return {
        v.path
        for layer in backbone.layers
        if isinstance(layer, keras.layers.BatchNormalization)
        for v in layer.weights
    }


class EpochSnapshots(keras.callbacks.Callback):
    """Test helper: weights at the start of each epoch and at the end."""

    def __init__(self):
        super().__init__()
        self.snapshots = []

    def on_epoch_begin(self, epoch, logs=None):
        self.snapshots.append(weights_snapshot(self.model.weights))

    def on_train_end(self, logs=None):
        self.snapshots.append(weights_snapshot(self.model.weights))

    def changed(self, epoch):
        before = self.snapshots[epoch]
        after = self.snapshots[epoch + 1]
        return {p for p in before if not np.array_equal(before[p], after[p])}


def count_traces(model):
    """Wrap `model.train_step` so each trace of the train function is counted."""
    counter = {"traces": 0}
    original = model.train_step

    def counting_train_step(*args):
        # TensorFlow passes the batch, JAX the state and the batch.
        counter["traces"] += 1
        return original(*args)

    model.train_step = counting_train_step
    return counter


HEAD = {"head/kernel", "head/bias"}


def _expected_built(backbone, *groups):
    """What the optimizer is built over: the head and `groups` will train.

    On JAX, `fit` builds the optimizer over the model's trainable variables
    (here every variable) before any callback runs, so it also holds state
    for groups that stay frozen; the optimizer is kept all the same.
    """
    if keras.backend.backend() == "jax":
        return HEAD | {v.path for v in backbone.variables}
    return HEAD | group_paths(backbone, *groups)


# -- behaviour -------------------------------------------------------------


def test_each_phase_trains_exactly_the_scheduled_groups():
    model, backbone = make_model(bn=False)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    snapshots = EpochSnapshots()
    x, y = data()
    model.fit(
        x,
        y,
        batch_size=8,
        epochs=3,
        callbacks=[GradualUnfreezing(backbone, schedule=[1, 2]), snapshots],
        verbose=0,
    )
    high = group_paths(backbone, "high")
    mid = group_paths(backbone, "mid")
    assert snapshots.changed(0) == HEAD
    assert snapshots.changed(1) == HEAD | high
    assert snapshots.changed(2) == HEAD | high | mid
    assert backbone.trainable_group_names == ["mid", "high"]


def test_dict_schedule_can_unfreeze_several_groups_at_once():
    model, backbone = make_model(bn=False)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    snapshots = EpochSnapshots()
    x, y = data()
    history = model.fit(
        x,
        y,
        batch_size=8,
        epochs=3,
        callbacks=[GradualUnfreezing(backbone, schedule={2: 3}), snapshots],
        verbose=0,
    )
    assert history.history["unfrozen_groups"] == [0, 0, 3]
    assert snapshots.changed(1) == HEAD
    assert snapshots.changed(2) == HEAD | group_paths(
        backbone, "low", "mid", "high"
    )


def test_every_unfreezes_one_group_every_k_epochs():
    model, backbone = make_model(bn=False)
    model.compile(optimizer="sgd", loss="mse")
    x, y = data(8)
    history = model.fit(
        x,
        y,
        batch_size=8,
        epochs=7,
        callbacks=[GradualUnfreezing(backbone, every=2)],
        verbose=0,
    )
    assert history.history["unfrozen_groups"] == [0, 0, 1, 1, 2, 2, 3]


def test_train_function_is_rebuilt_exactly_once_per_unfreeze_event():
    model, backbone = make_model()
    model.compile(optimizer="adam", loss="mse")
    counter = count_traces(model)
    x, y = data()
    unfreezing = GradualUnfreezing(backbone, schedule=[2, 4])
    model.fit(x, y, batch_size=4, epochs=6, callbacks=[unfreezing], verbose=0)
    # One trace for the frozen phase, then one per unfreeze event; the 4
    # steps of each of the 6 epochs trace nothing more.
    assert unfreezing.events == [(2, 1), (4, 2)]
    assert counter["traces"] == 1 + len(unfreezing.events)


def test_frozen_phase_equals_a_statically_frozen_model():
    x, y = data()
    model, backbone = make_model(seed=3)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    model.fit(
        x,
        y,
        batch_size=8,
        epochs=2,
        shuffle=False,
        callbacks=[GradualUnfreezing(backbone, schedule=[5])],
        verbose=0,
    )
    static, static_backbone = make_model(seed=3)
    static_backbone.trainable = False
    static.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    static.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    for a, b in zip(model.weights, static.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)


def test_optimizer_is_kept_and_built_over_every_variable_that_will_train():
    model, backbone = make_model(bn=False)
    optimizer = keras.optimizers.Adam(1e-2)
    model.compile(optimizer=optimizer, loss="mse")
    x, y = data()

    class OptimizerState(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.sizes = []
            self.high_momentum = []

        def on_epoch_end(self, epoch, logs=None):
            opt = self.model.optimizer
            self.sizes.append(len(opt.variables))
            kernel = backbone.groups[-1].layers[0].kernel
            moment = opt._momentums[_compat.variable_index(opt, kernel)]
            self.high_momentum.append(float(np.abs(moment.numpy()).max()))

    state = OptimizerState()
    model.fit(
        x,
        y,
        batch_size=8,
        epochs=3,
        callbacks=[GradualUnfreezing(backbone, schedule=[1]), state],
        verbose=0,
    )
    assert model.optimizer is optimizer
    # Built once, over the head and the one group the schedule unfreezes (on
    # JAX `fit` builds it over the trainable model before any callback runs:
    # then it also holds state for the groups that stay frozen).
    assert len(set(state.sizes)) == 1
    built = {v.path for v in _compat.built_variables(optimizer)}
    assert built == _expected_built(backbone, "high")
    # The top group's Adam moment stays zero while frozen, then moves.
    assert state.high_momentum[0] == 0.0
    assert state.high_momentum[1] > 0.0 and state.high_momentum[2] > 0.0
    assert int(optimizer.iterations.numpy()) == 6


def test_optimizer_covers_only_groups_the_schedule_unfreezes():
    model, backbone = make_model(bn=False)
    model.compile(optimizer="adam", loss="mse")
    x, y = data(8)
    model.fit(
        x,
        y,
        epochs=1,
        callbacks=[GradualUnfreezing(backbone, schedule={3: 1})],
        verbose=0,
    )
    built = {v.path for v in _compat.built_variables(model.optimizer)}
    assert built == _expected_built(backbone, "high")


def test_freeze_bn_keeps_every_batchnorm_in_inference_mode():
    model, backbone = make_model(bn=True)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    snapshots = EpochSnapshots()
    x, y = data()
    model.fit(
        x,
        y,
        batch_size=8,
        epochs=2,
        callbacks=[
            GradualUnfreezing(backbone, schedule=[1], freeze_bn=True),
            snapshots,
        ],
        verbose=0,
    )
    bn = bn_paths(backbone)
    assert bn  # the "high" group holds a BatchNormalization
    assert not (snapshots.changed(0) | snapshots.changed(1)) & bn
    assert snapshots.changed(1) == HEAD | (group_paths(backbone, "high") - bn)


def test_train_bn_trains_batchnorm_of_frozen_groups():
    model, backbone = make_model(bn=True)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    snapshots = EpochSnapshots()
    x, y = data()
    model.fit(
        x,
        y,
        batch_size=8,
        epochs=1,
        callbacks=[
            GradualUnfreezing(backbone, schedule=[1], train_bn=True),
            snapshots,
        ],
        verbose=0,
    )
    assert snapshots.changed(0) == HEAD | bn_paths(backbone)


def test_history_records_unfreeze_events():
    model, backbone = make_model(bn=False)
    model.compile(optimizer="sgd", loss="mse")
    x, y = data(8)
    history = model.fit(
        x,
        y,
        epochs=4,
        callbacks=[GradualUnfreezing(backbone, schedule=[1, 3])],
        verbose=0,
    )
    assert history.history["unfrozen_groups"] == [0, 1, 1, 2]
    head = 6 * 2 + 2
    per_group = 6 * 6 + 6
    assert history.history["trainable_params"] == [
        head,
        head + per_group,
        head + per_group,
        head + 2 * per_group,
    ]


def test_one_instance_serves_several_fits_and_finds_the_backbone():
    model, backbone = make_model(bn=False)
    model.compile(optimizer="sgd", loss="mse")
    x, y = data(8)
    unfreezing = GradualUnfreezing(schedule=[1])  # backbone found in the model
    model.fit(x, y, epochs=2, callbacks=[unfreezing], verbose=0)
    assert unfreezing.backbone is backbone
    assert unfreezing.events == [(1, 1)]
    history = model.fit(x, y, epochs=2, callbacks=[unfreezing], verbose=0)
    assert unfreezing.events == [(1, 1)]
    assert history.history["unfrozen_groups"] == [0, 1]


def test_resumed_training_matches_an_uninterrupted_one(tmp_path):
    x, y = data()

    def run(backup_dir, interrupt_at=None):
        model, backbone = make_model(seed=7)
        model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
        callbacks = [
            keras.callbacks.BackupAndRestore(str(backup_dir)),
            GradualUnfreezing(backbone, schedule=[1, 2]),
        ]
        if interrupt_at is not None:

            class Interrupt(keras.callbacks.Callback):
                def on_epoch_begin(self, epoch, logs=None):
                    if epoch == interrupt_at:
                        raise RuntimeError("interrupted")

            callbacks.append(Interrupt())
        model.fit(
            x,
            y,
            batch_size=8,
            epochs=4,
            shuffle=False,
            callbacks=callbacks,
            verbose=0,
        )
        return model, backbone

    reference, reference_backbone = run(tmp_path / "reference")
    # Interrupted after the second unfreeze event (epoch 2), resumed with a
    # fresh model object: BackupAndRestore loads epoch 3's starting state.
    with pytest.raises(RuntimeError, match="interrupted"):
        run(tmp_path / "resumed", interrupt_at=3)
    resumed, resumed_backbone = run(tmp_path / "resumed")

    assert (
        resumed_backbone.trainable_group_names
        == reference_backbone.trainable_group_names
        == ["low", "mid", "high"][1:]
    )
    assert [v.path for v in resumed.trainable_variables] == [
        v.path for v in reference.trainable_variables
    ]
    for a, b in zip(resumed.weights, reference.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)
    assert len(resumed.optimizer.variables) == len(reference.optimizer.variables)
    for a, b in zip(resumed.optimizer.variables, reference.optimizer.variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)


def test_model_trained_with_gradual_unfreezing_saves_and_loads(tmp_path):
    model, backbone = make_model()
    model.compile(optimizer="adam", loss="mse")
    x, y = data(8)
    model.fit(
        x, y, epochs=2, callbacks=[GradualUnfreezing(backbone, every=1)], verbose=0
    )
    run_model_saving_test(model, x, tmp_path)


def test_config_round_trip():
    revived = run_serialization_test(
        GradualUnfreezing(schedule={1: 1, 3: 3}, freeze_bn=True, verbose=1)
    )
    assert revived.schedule == {1: 1, 3: 3}
    assert revived.freeze_bn
    revived = run_serialization_test(GradualUnfreezing(every=2, train_bn=True))
    assert revived.every == 2 and revived.train_bn


def test_under_mirrored_strategy_matches_single_device(strategy):
    x, y = data()

    def train(scope):
        with scope:
            model, backbone = make_model(seed=5, bn=False)
            backbone.freeze()
            model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
        history = model.fit(
            x,
            y,
            batch_size=8,
            epochs=3,
            shuffle=False,
            callbacks=[GradualUnfreezing(backbone, schedule=[1, 2])],
            verbose=0,
        )
        return model, history

    import contextlib

    single, single_history = train(contextlib.nullcontext())
    mirrored, mirrored_history = train(strategy.scope())
    assert mirrored_history.history["unfrozen_groups"] == [0, 1, 2]
    # Under a strategy, fit builds the optimizer over the head before the
    # callbacks run: it was replaced by a fresh copy built over every group.
    assert len(mirrored.optimizer.variables) == len(single.optimizer.variables)
    for a, b in zip(single.weights, mirrored.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)


# -- bad input -------------------------------------------------------------


@pytest.mark.parametrize(
    "schedule, match",
    [
        ({1: 1, 2: 1}, "unfreezes a group twice"),
        ([2, 2], "unfreezes a group twice"),
        ({3: 2, 1: 3}, "unfreezes a group twice"),
        ({-1: 1}, "epochs must be >= 0"),
        ([-2, 3], "epochs must be >= 0"),
        ({1: 4}, "past the last group"),
        ([1, 2, 3, 4], "past the last group"),
        ({"one": 1}, "keys must be epochs"),
        ({1: 1.5}, "values must be numbers"),
        ("1,2", "must be a dict"),
    ],
)
def test_bad_schedule_names_the_argument(schedule, match):
    _, backbone = make_model()
    with pytest.raises(ValueError, match=f"`schedule`.*{match}|{match}"):
        GradualUnfreezing(backbone, schedule=schedule)


def test_bad_arguments_name_the_argument():
    _, backbone = make_model()
    with pytest.raises(ValueError, match="`every`"):
        GradualUnfreezing(backbone, every=0)
    with pytest.raises(ValueError, match="`schedule` or `every`"):
        GradualUnfreezing(backbone, schedule=[1], every=1)
    with pytest.raises(ValueError, match="`train_bn` and `freeze_bn`"):
        GradualUnfreezing(backbone, train_bn=True, freeze_bn=True)
    with pytest.raises(ValueError, match="`backbone` must be a Keras layer"):
        GradualUnfreezing("base_model", schedule=[1])


def test_model_without_the_backbone_is_an_error_at_train_begin():
    _, backbone = make_model()
    other, _ = make_model(seed=1)
    other.compile(optimizer="sgd", loss="mse")
    x, y = data(8)
    before = weights_snapshot(other.weights)
    with pytest.raises(ValueError, match="`backbone`.*is not part of the model"):
        other.fit(
            x, y, epochs=1, callbacks=[GradualUnfreezing(backbone)], verbose=0
        )
    assert not changed_paths(before, other.weights)


def test_optimizer_that_already_stepped_over_fewer_variables_is_an_error():
    model, backbone = make_model()
    backbone.freeze()
    model.compile(optimizer="adam", loss="mse")
    x, y = data(8)
    model.fit(x, y, epochs=1, verbose=0)  # the optimizer knows the head only
    with pytest.raises(ValueError, match="`model.optimizer` has already taken"):
        model.fit(
            x, y, epochs=2, callbacks=[GradualUnfreezing(backbone)], verbose=0
        )



def test_model_with_layers_not_built_yet_is_a_clear_error():
    # The optimizer is built before the first step; a layer that creates its
    # variables only inside the train step (here the domain discriminator of
    # a DomainAdaptationModel whose feature extractor has no Input) would be
    # left out of it. The callback says so, and building the model first
    # is the way out.
    from keras_transfer.adaptation import DANN, DomainAdaptationModel, pair_datasets
    from keras_transfer.layers import DomainDiscriminator

    def adaptation_model():
        keras.utils.set_random_seed(0)
        backbone = make_backbone()
        features = keras.Sequential([backbone])  # no Input: built lazily
        head = keras.Sequential([keras.layers.Dense(2, activation="softmax")])
        model = DomainAdaptationModel(
            features, head, method=DANN(discriminator=DomainDiscriminator(
                (4,), name="domain_discriminator")),
        )
        model.compile("adam", "sparse_categorical_crossentropy")
        return model, backbone

    rng = np.random.default_rng(0)
    paired = pair_datasets(
        (rng.normal(size=(16, 6)).astype("float32"), rng.integers(0, 2, 16)),
        rng.normal(size=(16, 6)).astype("float32"), batch_size=8,
    )
    model, backbone = adaptation_model()
    if keras.backend.backend() == "jax":
        # The JAX trainer builds every layer symbolically before any
        # callback runs: the discriminator is built, and trained.
        before = weights_snapshot(model.feature_extractor.weights)
        model.fit(paired, epochs=2, verbose=0,
                  callbacks=[GradualUnfreezing(backbone)])
        assert model.discriminator.built
        assert changed_paths(before, model.feature_extractor.weights)
    else:
        with pytest.raises(ValueError, match="domain_discriminator.*model.build"):
            model.fit(paired, epochs=2, verbose=0,
                      callbacks=[GradualUnfreezing(backbone)])

    model, backbone = adaptation_model()
    model.build((None, 6))
    before = weights_snapshot(model.discriminator.weights)
    model.fit(paired, epochs=2, verbose=0, callbacks=[GradualUnfreezing(backbone)])
    assert changed_paths(before, model.discriminator.weights)
