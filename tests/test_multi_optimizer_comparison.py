"""Keras 3.15 `MultiOptimizer` vs `DiscriminativeLR` when the trainable set changes.

Fine-tuning changes which variables are trainable between `fit()` calls (head
first, then unfreeze the body). `keras.optimizers.MultiOptimizer` records the
variables at `build()` and checks `len(grads)` against that count on every
step, so any change of the trainable set -- unfreezing OR freezing -- fails
once the train function is rebuilt (`model.make_train_function(force=True)`):

    ValueError: Gradients must match trainable variables one-to-one.
    Received 4 gradients and 2 variables.

(4 gradients after unfreezing a 2-variable body next to a 2-variable head that
was trainable alone at build; "Received 2 gradients and 4 variables" the other
way round). A bare `Adam` survives freezing but not unfreezing ("Unknown
variable"). `DiscriminativeLR` handles both: freezing passes the subset
through, and with `groups=backbone` it builds on every backbone variable up
front, so unfreezing needs no new optimizer.
"""

import keras
import numpy as np
import pytest

from keras_transfer.optimizers import DiscriminativeLR


class StandInGroup:
    """Test helper: a `LayerGroup` of the Backbone contract."""

    def __init__(self, name, layers):
        self.name = name
        self.layers = layers
        self.variables = [v for layer in layers for v in layer.weights]


class StandInBackbone:
    """Test helper: duck-typed `Backbone` with one group per Dense layer."""

    def __init__(self, model):
        self.model = model
        self.groups = [StandInGroup(layer.name, [layer]) for layer in model.layers]
        self.group_names = [g.name for g in self.groups]


def make_model():
    body = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(8, activation="tanh", name="b0")],
        name="body",
    )
    inputs = keras.Input((4,))
    outputs = keras.layers.Dense(1, name="head")(body(inputs))
    return keras.Model(inputs, outputs, name="net"), body


def data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(8, 4)).astype("float32"), rng.normal(size=(8, 1))


def multi_optimizer():
    return keras.optimizers.MultiOptimizer(
        keras.optimizers.OptimizerMap(
            keras.optimizers.Adam(1e-2), {".*b0/.*": keras.optimizers.Adam(1e-3)}
        )
    )


def change_trainable(model, body, trainable):
    body.trainable = trainable
    model.make_train_function(force=True)


@pytest.mark.parametrize(
    "body_trainable_at_build, match",
    [
        (False, "Received 4 gradients and 2 variables"),
        (True, "Received 2 gradients and 4 variables"),
    ],
    ids=["unfreeze", "freeze"],
)
def test_multi_optimizer_fails_when_the_trainable_set_changes(
    body_trainable_at_build, match
):
    x, y = data()
    model, body = make_model()
    body.trainable = body_trainable_at_build
    model.compile(optimizer=multi_optimizer(), loss="mse")
    model.fit(x, y, verbose=0)
    change_trainable(model, body, not body_trainable_at_build)
    with pytest.raises(ValueError, match=f"Gradients must match .*{match}"):
        model.fit(x, y, verbose=0)


def unfreeze_run(body_factor):
    """Head alone with the body frozen, then unfreeze; returns body deltas."""
    keras.utils.set_random_seed(11)
    x, y = data()
    model, body = make_model()
    body.trainable = False
    opt = DiscriminativeLR(
        keras.optimizers.Adam(1e-2),
        groups=StandInBackbone(body),
        multipliers={"b0": body_factor},
    )
    model.compile(optimizer=opt, loss="mse")
    model.fit(x, y, epochs=2, verbose=0)
    before = [v.numpy().copy() for v in body.weights]
    change_trainable(model, body, True)
    model.fit(x, y, epochs=1, verbose=0)
    return [v.numpy() - b for v, b in zip(body.weights, before)]


def test_discriminative_lr_handles_unfreezing_with_a_backbone():
    full = unfreeze_run(1.0)
    quarter = unfreeze_run(0.25)
    for a, b in zip(full, quarter):
        assert np.abs(a).max() > 0
        np.testing.assert_allclose(b, 0.25 * a, rtol=1e-4, atol=1e-7)


def test_discriminative_lr_handles_freezing():
    x, y = data()
    model, body = make_model()
    opt = DiscriminativeLR(keras.optimizers.Adam(1e-2), multipliers={"b0/": 0.5})
    model.compile(optimizer=opt, loss="mse")
    model.fit(x, y, verbose=0)
    change_trainable(model, body, False)
    body_before = [v.numpy().copy() for v in body.weights]
    head_before = [v.numpy().copy() for v in model.get_layer("head").weights]
    model.fit(x, y, verbose=0)
    for v, b in zip(body.weights, body_before):
        np.testing.assert_array_equal(v.numpy(), b)
    for v, b in zip(model.get_layer("head").weights, head_before):
        assert np.abs(v.numpy() - b).max() > 0


def test_discriminative_lr_without_backbone_explains_unfreezing():
    x, y = data()
    model, body = make_model()
    body.trainable = False
    model.compile(optimizer=DiscriminativeLR(keras.optimizers.Adam()), loss="mse")
    model.fit(x, y, verbose=0)
    change_trainable(model, body, True)
    with pytest.raises(ValueError, match="b0/kernel' was not trainable when"):
        model.fit(x, y, verbose=0)
