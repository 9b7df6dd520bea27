"""LoRA with the rest of the package: DiscriminativeLR, GradualUnfreezing, fine_tune."""

import keras
import numpy as np
import pytest

from keras_transfer.backbones import Backbone
from keras_transfer.callbacks import GradualUnfreezing
from keras_transfer.fine_tune import fine_tune
from keras_transfer.optimizers import DiscriminativeLR
from keras_transfer.peft import enable_lora
from keras_transfer.schedules import OneCycle
from tests.testing import changed_paths, weights_snapshot  # noqa: F401


def make_model():
    inputs = keras.Input((6,))
    h = keras.layers.Dense(8, activation="relu", name="low")(inputs)
    h = keras.layers.Dense(8, activation="relu", name="high")(h)
    backbone = Backbone(inputs, h, groups={"low": "low", "high": "high"},
                        name="backbone")
    inputs = keras.Input((6,))
    outputs = keras.layers.Dense(3, name="head")(backbone(inputs))
    return keras.Model(inputs, outputs), backbone


X = np.random.default_rng(0).normal(size=(16, 6)).astype("float32")
Y = np.arange(16) % 3
LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def test_discriminative_lr_factors_apply_to_adapters_by_group():
    model, backbone = make_model()
    enable_lora(backbone, rank=2)
    optimizer = DiscriminativeLR(keras.optimizers.Adam(1e-2),
                                 multipliers={"low": 0.0, "high": 0.5},
                                 groups=backbone)
    model.compile(optimizer=optimizer, loss=LOSS)
    before = weights_snapshot(model.weights)
    model.fit(X, Y, epochs=1, verbose=0)
    factors = optimizer.get_multipliers()
    assert factors["low/lora_kernel_b"] == 0.0
    assert factors["high/lora_kernel_b"] == 0.5
    assert factors["head/kernel"] == 1.0
    # The frozen base gets no optimizer state.
    assert "low/kernel" not in factors and "high/bias" not in factors
    changed = changed_paths(before, model.weights)
    assert not any(p.startswith("low/") for p in changed)
    assert "high/lora_kernel_b" in changed and "high/kernel" not in changed


def test_gradual_unfreezing_unfreezes_adapters_group_by_group():
    model, backbone = make_model()
    enable_lora(backbone, rank=2)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=LOSS)
    snapshots = []

    class Snap(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            snapshots.append(weights_snapshot(model.weights))

    start = weights_snapshot(model.weights)
    unfreezing = GradualUnfreezing(backbone, schedule={1: 1, 2: 2})
    model.fit(X, Y, epochs=3, verbose=0, callbacks=[unfreezing, Snap()])
    epoch0 = {p for p in start if np.any(start[p] != snapshots[0][p])}
    epoch1 = {p for p in start if np.any(snapshots[0][p] != snapshots[1][p])}
    epoch2 = {p for p in start if np.any(snapshots[1][p] != snapshots[2][p])}
    assert epoch0 == {"head/kernel", "head/bias"}
    # One step per epoch: A gets no gradient while B is still zero.
    assert epoch1 == {"head/kernel", "head/bias", "high/lora_kernel_b"}
    assert {"low/lora_kernel_b", "high/lora_kernel_b"} <= epoch2
    assert not any(p.endswith(("/kernel", "/bias")) and not p.startswith("head")
                   for p in epoch1 | epoch2)


@pytest.mark.parametrize("peft", ["lora", "dora"])
def test_fine_tune_with_peft(peft):
    model, backbone = make_model()
    before = weights_snapshot(model.weights)
    history = fine_tune(model, backbone, (X, Y), epochs=3, loss=LOSS, peft=peft,
                        rank=2, verbose=0)
    # Every group's adapters at once after the head phase (the PEFT recipe).
    assert history.history["unfrozen_groups"] == [0, 2, 2]
    changed = changed_paths(before, [v for v in model.weights if v.path in before])
    assert changed == {"head/kernel", "head/bias"}  # the base is bit-identical
    for name in ("low", "high"):
        assert np.any(backbone.get_layer(name).lora_kernel_b.numpy() != 0), name
    if peft == "dora":
        assert type(backbone.get_layer("low")).__name__ == "DoRADense"


def test_fine_tune_with_peft_trains_every_group_at_the_heads_constant_rate():
    model, backbone = make_model()
    history = fine_tune(model, backbone, (X, Y), epochs=3, loss=LOSS,
                        peft="lora", rank=2, verbose=0)
    assert history.history["unfrozen_groups"] == [0, 2, 2]
    factors = model.optimizer.get_multipliers()
    assert factors["low/lora_kernel_a"] == pytest.approx(1.0)
    assert factors["high/lora_kernel_b"] == pytest.approx(1.0)
    rate = model.optimizer.inner_optimizer.learning_rate
    assert float(keras.ops.convert_to_numpy(rate)) == pytest.approx(1e-3)

    # Explicit arguments still apply to the adapters, group by group.
    model, backbone = make_model()
    history = fine_tune(model, backbone, (X, Y), epochs=3, loss=LOSS,
                        peft="lora", rank=2, layer_decay=0.5, unfreeze_every=1,
                        schedule="one_cycle", verbose=0)
    assert history.history["unfrozen_groups"] == [0, 1, 2]
    factors = model.optimizer.get_multipliers()
    assert factors["high/lora_kernel_b"] == pytest.approx(0.5)
    assert factors["low/lora_kernel_a"] == pytest.approx(0.25)
    assert isinstance(model.optimizer.inner_optimizer._learning_rate, OneCycle)

    # Without `peft`: decay 0.5, one group an epoch, one-cycle.
    model, backbone = make_model()
    history = fine_tune(model, backbone, (X, Y), epochs=3, loss=LOSS, verbose=0)
    assert history.history["unfrozen_groups"] == [0, 1, 2]
    factors = model.optimizer.get_multipliers()
    assert factors["high/kernel"] == pytest.approx(0.5)
    assert isinstance(model.optimizer.inner_optimizer._learning_rate, OneCycle)


def test_fine_tune_rejects_an_unknown_peft():
    model, backbone = make_model()
    with pytest.raises(ValueError, match="`peft` must be None, 'lora' or 'dora'"):
        fine_tune(model, backbone, (X, Y), epochs=2, loss=LOSS, peft="ia3")
    assert not getattr(backbone.get_layer("low"), "lora_enabled", False)
