"""Tests for `keras_transfer.optimizers.DiscriminativeLR`."""

import keras
import numpy as np
import pytest

from keras_transfer.optimizers import DiscriminativeLR
from tests.testing import run_model_saving_test, run_serialization_test


# ----------------------------------------------------------------- helpers
class StandInGroup:
    """Test helper: a `LayerGroup` of the Backbone contract."""

    def __init__(self, name, layers):
        self.name = name
        self.layers = layers
        self.variables = [v for layer in layers for v in layer.weights]


class StandInBackbone:
    """Test helper: duck-typed `Backbone` (only `.groups` and `.group_names`)."""

    def __init__(self, model, names):
        self.model = model
        self.groups = [StandInGroup(n, [model.get_layer(n)]) for n in names]
        self.group_names = list(names)


def make_model(name="net"):
    """Dense stack with three body groups and a head."""
    return keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(8, activation="tanh", name="g0"),
            keras.layers.Dense(8, activation="tanh", name="g1"),
            keras.layers.Dense(8, activation="tanh", name="g2"),
            keras.layers.Dense(2, name="head"),
        ],
        name=name,
    )


def data(n=16):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 6)).astype("float32")
    y = rng.normal(size=(n, 2)).astype("float32")
    return x, y


def snapshot(model):
    return {v.path: v.numpy().copy() for v in model.trainable_variables}


def deltas(model, before):
    return {v.path: v.numpy() - before[v.path] for v in model.trainable_variables}


def gradients(model, x, y):
    """The MSE gradient of each trainable variable, on the running backend."""
    variables = model.trainable_variables
    if keras.backend.backend() == "jax":
        import jax

        fixed = [v.value for v in model.non_trainable_variables]

        def loss(values):
            pred, _ = model.stateless_call(values, fixed, x, training=True)
            return keras.ops.mean(keras.losses.mean_squared_error(y, pred))

        grads = jax.grad(loss)([v.value for v in variables])
    else:
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = keras.losses.mean_squared_error(y, model(x, training=True))
            loss = keras.ops.mean(loss)
        grads = tape.gradient(loss, variables)
    return {
        v.path: keras.ops.convert_to_numpy(g) for v, g in zip(variables, grads)
    }


OPTIMIZERS = {
    "sgd_momentum": lambda: keras.optimizers.SGD(0.05, momentum=0.9),
    "adam": lambda: keras.optimizers.Adam(0.01),
    "adamw": lambda: keras.optimizers.AdamW(0.01, weight_decay=0.1),
    "lion": lambda: keras.optimizers.Lion(0.001, weight_decay=0.1),
    "rmsprop": lambda: keras.optimizers.RMSprop(0.01),
    "ftrl": lambda: keras.optimizers.Ftrl(0.05),  # not linear in lr
    "adafactor": lambda: keras.optimizers.Adafactor(0.05),  # not linear in lr
}


# ------------------------------------------------------- scaling the update
@pytest.mark.parametrize("kind", sorted(OPTIMIZERS))
def test_factor_scales_the_update_of_every_optimizer(kind):
    """One step: each variable moves `factor` times the bare optimizer's step."""
    x, y = data()
    factors = {"g0/": 0.1, "g1/": 0.5, "g2/kernel": 0.0}
    results = []
    for wrapped in (False, True):
        keras.utils.set_random_seed(3)
        model = make_model()
        before = snapshot(model)
        opt = OPTIMIZERS[kind]()
        if wrapped:
            opt = DiscriminativeLR(opt, multipliers=factors)
        model.compile(optimizer=opt, loss="mse")
        model.train_on_batch(x, y)
        results.append(deltas(model, before))
    bare, scaled = results
    expected = {"g0/": 0.1, "g1/": 0.5, "g2/kernel": 0.0}
    for path in bare:
        factor = next((f for k, f in expected.items() if k in path), 1.0)
        np.testing.assert_allclose(
            scaled[path], factor * bare[path], rtol=2e-4, atol=1e-7, err_msg=path
        )
        if factor > 0:
            assert np.abs(bare[path]).max() > 0, path


@pytest.mark.parametrize("kind", ["sgd_momentum", "adam", "adamw", "lion", "ftrl"])
def test_zero_factor_leaves_variables_bitwise_unchanged(kind):
    x, y = data()
    model = make_model()
    frozen = [v for v in model.trainable_variables if "/g1/" in v.path]
    before = [v.numpy().copy() for v in frozen]
    others = snapshot(model)
    opt = DiscriminativeLR(OPTIMIZERS[kind](), multipliers={"g1/": 0.0})
    model.compile(optimizer=opt, loss="mse")
    model.fit(x, y, batch_size=4, epochs=2, verbose=0)
    for v, b in zip(frozen, before):
        assert np.array_equal(v.numpy(), b), v.path
    moved = deltas(model, others)
    assert all(np.abs(d).max() > 0 for p, d in moved.items() if "/g1/" not in p)


def test_weight_decay_scales_with_the_factor():
    """With a zero gradient, AdamW only decays: by lr * wd * factor."""
    var_a = keras.Variable(np.full((3,), 2.0, "float32"), name="a")
    var_b = keras.Variable(np.full((3,), 2.0, "float32"), name="b")
    opt = DiscriminativeLR(
        keras.optimizers.AdamW(0.1, weight_decay=0.5),
        multipliers={"^a$": 0.2},
    )
    zeros = [np.zeros((3,), "float32")] * 2
    opt.apply(zeros, [var_a, var_b])
    np.testing.assert_allclose(var_a.numpy(), 2.0 - 2.0 * 0.5 * 0.1 * 0.2, rtol=1e-6)
    np.testing.assert_allclose(var_b.numpy(), 2.0 - 2.0 * 0.5 * 0.1, rtol=1e-6)


# --------------------------------------------------------- assigning factors
def test_groups_from_a_backbone_list_spread_and_layer_decay():
    model = make_model()
    backbone = StandInBackbone(model, ["g0", "g1", "g2"])

    def factors(**kwargs):
        opt = DiscriminativeLR(keras.optimizers.SGD(0.1), groups=backbone, **kwargs)
        opt.build(model.trainable_variables)
        got = opt.get_multipliers()
        return [got[f"net/{n}/kernel"] for n in ("g0", "g1", "g2", "head")]

    np.testing.assert_allclose(factors(multipliers={"g1": 0.3}), [1, 0.3, 1, 1])
    np.testing.assert_allclose(
        factors(multipliers=[0.01, 0.1, 0.5]), [0.01, 0.1, 0.5, 1.0], rtol=1e-6
    )
    np.testing.assert_allclose(
        factors(multipliers=slice(1e-2, 1.0)), [1e-2, 1e-1, 1.0, 1.0], rtol=1e-6
    )
    np.testing.assert_allclose(
        factors(layer_decay=0.5), [0.25, 0.5, 1.0, 1.0], rtol=1e-6
    )


def test_groups_as_a_dict_of_regexes():
    model = make_model()
    opt = DiscriminativeLR(
        keras.optimizers.Adam(),
        groups={"low": ["g0/", "g1/"], "mid": "g2/", "top": "head/kernel"},
        layer_decay=0.1,
    )
    opt.build(model.trainable_variables)
    got = opt.get_multipliers()
    assert got["net/g0/bias"] == pytest.approx(0.01)
    assert got["net/g1/kernel"] == pytest.approx(0.01)
    assert got["net/g2/kernel"] == pytest.approx(0.1)
    assert got["net/head/kernel"] == pytest.approx(1.0)
    assert got["net/head/bias"] == 1.0  # matched by no rule


def test_variable_matched_by_two_rules_is_an_error():
    model = make_model()
    opt = DiscriminativeLR(
        keras.optimizers.Adam(), multipliers={"g0/": 0.1, "kernel": 0.5}
    )
    with pytest.raises(ValueError, match="net/g0/kernel.*regex 'g0/'.*'kernel'"):
        opt.build(model.trainable_variables)
    opt = DiscriminativeLR(
        keras.optimizers.Adam(), groups={"a": "g0/", "b": "g0/bias"}, layer_decay=1
    )
    with pytest.raises(ValueError, match="net/g0/bias.*group 'a'.*group 'b'"):
        opt.build(model.trainable_variables)


# -------------------------------------------------------- during training
def test_set_multipliers_mid_fit_takes_effect_without_retracing():
    x, y = data()
    model = make_model()
    opt = DiscriminativeLR(keras.optimizers.Adam(0.01))
    model.compile(optimizer=opt, loss="mse")
    body = [v for v in model.trainable_variables if "/g0/" in v.path]
    start = [v.numpy().copy() for v in body]
    seen = {}
    traces = []
    train_step = model.train_step

    def counting_train_step(*args):  # (batch) on TensorFlow, (state, batch) on JAX
        traces.append(1)  # Python side effect: runs once per trace
        return train_step(*args)

    model.train_step = counting_train_step

    class FreezeG0(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                self.model.optimizer.set_multipliers({"g0/": 0.0})
                seen["traces"] = len(traces)
                seen["after_epoch_0"] = [v.numpy().copy() for v in body]
                seen["function"] = self.model.train_function

    model.fit(x, y, batch_size=4, epochs=3, verbose=0, callbacks=[FreezeG0()])
    assert model.train_function is seen["function"]
    assert len(traces) == seen["traces"]
    for v, b, s in zip(body, seen["after_epoch_0"], start):
        assert np.array_equal(v.numpy(), b), v.path
        assert not np.array_equal(b, s), v.path  # the first epoch moved g0
    assert opt.get_multipliers()["net/g0/kernel"] == 0.0


def _check_sgd_step(model, opt, x, y, factors):
    """One plain-SGD step moves each variable by -lr * factor * gradient."""
    grads = gradients(model, x, y)
    before = snapshot(model)
    lr = float(keras.ops.convert_to_numpy(opt.learning_rate))
    model.train_on_batch(x, y)
    moved = deltas(model, before)
    for path, g in grads.items():
        factor = next((f for k, f in factors.items() if k in path), 1.0)
        np.testing.assert_allclose(
            moved[path], -lr * factor * g, rtol=1e-4, atol=1e-7, err_msg=path
        )
    return lr


def test_learning_rate_scheduler_moves_base_rate_and_ratios_stay():
    x, y = data()
    model = make_model()
    factors = {"g0/": 0.1, "g2/": 0.5}
    opt = DiscriminativeLR(keras.optimizers.SGD(0.1), multipliers=factors)
    model.compile(optimizer=opt, loss="mse")
    schedule = keras.callbacks.LearningRateScheduler(lambda epoch: 0.1 / (epoch + 1))
    model.fit(x, y, batch_size=16, epochs=4, verbose=0, callbacks=[schedule])
    assert _check_sgd_step(model, opt, x, y, factors) == pytest.approx(0.025)


def test_reduce_lr_on_plateau_moves_base_rate_and_ratios_stay():
    x, y = data()
    model = make_model()
    factors = {"g1/": 0.2}
    opt = DiscriminativeLR(keras.optimizers.SGD(0.1), multipliers=factors)
    model.compile(optimizer=opt, loss="mse")
    plateau = keras.callbacks.ReduceLROnPlateau(
        monitor="loss", factor=0.5, patience=0, min_delta=1e9, verbose=0
    )
    model.fit(x, y, batch_size=16, epochs=3, verbose=0, callbacks=[plateau])
    assert _check_sgd_step(model, opt, x, y, factors) == pytest.approx(0.025)
    assert opt.inner_optimizer.learning_rate.numpy() == pytest.approx(0.025)


def test_learning_rate_schedule_as_base_rate():
    x, y = data()
    model = make_model()
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, 1, 0.5)
    factors = {"g0/": 0.3}
    opt = DiscriminativeLR(keras.optimizers.SGD(schedule), multipliers=factors)
    model.compile(optimizer=opt, loss="mse")
    model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    assert _check_sgd_step(model, opt, x, y, factors) == pytest.approx(0.025)


@pytest.mark.parametrize("order", ["outer", "inner"])
def test_loss_scale_optimizer_in_both_orders(order):
    x, y = data()
    model = make_model()
    frozen = [v.numpy().copy() for v in model.trainable_variables]
    if order == "outer":
        opt = keras.optimizers.LossScaleOptimizer(
            DiscriminativeLR(keras.optimizers.Adam(0.01), multipliers={"g0/": 0.0})
        )
    elif keras.backend.backend() == "jax":
        with pytest.raises(ValueError, match="JAX.*LossScaleOptimizer.*around"):
            DiscriminativeLR(
                keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(0.01))
            )
        return
    else:
        opt = DiscriminativeLR(
            keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(0.01)),
            multipliers={"g0/": 0.0},
        )
    model.compile(optimizer=opt, loss="mse")
    history = model.fit(x, y, batch_size=4, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    for v, b in zip(model.trainable_variables, frozen):
        assert np.array_equal(v.numpy(), b) == ("/g0/" in v.path), v.path


def test_mixed_float16_policy():
    x, y = data()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = make_model()
        opt = DiscriminativeLR(keras.optimizers.Adam(0.01), multipliers={"g0/": 0.0})
        model.compile(optimizer=opt, loss="mse")
        g0 = [v.numpy().copy() for v in model.trainable_variables[:2]]
        history = model.fit(x, y, batch_size=4, epochs=2, verbose=0)
    finally:
        keras.config.set_dtype_policy("float32")
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert np.isfinite(history.history["loss"]).all()
    assert history.history["loss"][-1] < history.history["loss"][0]
    for v, b in zip(model.trainable_variables[:2], g0):
        assert np.array_equal(v.numpy(), b), v.path


def test_strategy_matches_single_device(strategy):
    x, y = data()
    factors = {"g0/": 0.1, "g1/": 0.0}

    def train():
        keras.utils.set_random_seed(5)
        model = make_model()
        opt = DiscriminativeLR(
            keras.optimizers.AdamW(0.01, weight_decay=0.1), multipliers=factors
        )
        model.compile(optimizer=opt, loss="mse")
        return model, opt

    model, _ = train()
    model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    with strategy.scope():
        dist_model, dist_opt = train()
    dist_model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    assert dist_opt.iterations.numpy() == 4
    for a, b in zip(model.trainable_variables, dist_model.trainable_variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5, err_msg=a.path)


# ----------------------------------------------------------------- saving
def test_config_round_trip():
    model = make_model()
    backbone = StandInBackbone(model, ["g0", "g1", "g2"])
    for kwargs in (
        {"multipliers": {"g0/": 0.1, "head/bias": 0.0}},
        {"groups": {"low": ["g0/", "g1/"], "top": "g2/"}, "multipliers": [0.1, 1]},
        {"groups": backbone, "multipliers": slice(1e-3, 1.0)},
        {"groups": backbone, "layer_decay": 0.7},
        {},
    ):
        opt = DiscriminativeLR(keras.optimizers.AdamW(0.01), **kwargs)
        revived = run_serialization_test(opt)
        opt.build(model.trainable_variables)
        revived.build(model.trainable_variables)
        assert revived.get_multipliers() == opt.get_multipliers(), kwargs
        assert isinstance(revived.inner_optimizer, keras.optimizers.AdamW)


def test_keras_file_saves_factors_and_slots_and_training_continues(tmp_path):
    x, y = data()
    model = make_model()
    backbone = StandInBackbone(model, ["g0", "g1", "g2"])
    opt = DiscriminativeLR(
        keras.optimizers.Adam(0.01), groups=backbone, layer_decay=0.5
    )
    model.compile(optimizer=opt, loss="mse")
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    opt.set_multipliers({"g1": 0.0, "g2": 0.25})
    loaded = run_model_saving_test(model, x, tmp_path)
    assert isinstance(loaded.optimizer, DiscriminativeLR)
    # Paths lose the model-name prefix on load: compare the factors in order.
    assert list(loaded.optimizer.get_multipliers().values()) == [1, 1, 0, 0] + [
        0.25
    ] * 2 + [1, 1]
    assert loaded.optimizer.get_config() == opt.get_config()
    assert loaded.optimizer.iterations.numpy() == 2
    for a, b in zip(opt.variables, loaded.optimizer.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    loaded.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(model.trainable_variables, loaded.trainable_variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6, err_msg=a.path)


@pytest.mark.tensorflow
def test_tf_train_checkpoint_restores_state(tmp_path):
    import tensorflow as tf

    x, y = data()
    factors = {"g0/": 0.1}
    model = make_model()
    opt = DiscriminativeLR(keras.optimizers.Adam(0.01), multipliers=factors)
    model.compile(optimizer=opt, loss="mse")
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    opt.set_multipliers({"g0/": 0.2, "g2/": 0.0})
    path = tf.train.Checkpoint(model=model, optimizer=opt).save(str(tmp_path / "ckpt"))

    other = make_model("net")
    other_opt = DiscriminativeLR(keras.optimizers.Adam(0.01), multipliers=factors)
    other.compile(optimizer=other_opt, loss="mse")
    other_opt.build(other.trainable_variables)
    tf.train.Checkpoint(model=other, optimizer=other_opt).restore(
        path
    ).assert_existing_objects_matched()
    assert other_opt.get_multipliers() == opt.get_multipliers()
    assert other_opt.iterations.numpy() == 2
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    other.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(model.trainable_variables, other.trainable_variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)


# --------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"multipliers": {"g0/": -0.1}}, "`multipliers`.*-0.1"),
        ({"multipliers": {"g0/": "big"}}, "`multipliers`.*'big'"),
        ({"multipliers": {"g0/": True}}, "`multipliers`.*True"),
        ({"multipliers": {"g0/": float("nan")}}, "`multipliers`"),
        ({"multipliers": {"(": 0.1}}, "`multipliers`.*invalid regex"),
        ({"multipliers": 0.5}, "`multipliers` must be"),
        ({"multipliers": [0.1, 0.2]}, "`multipliers`.*groups=None"),
        ({"multipliers": slice(0.1, 1)}, "`multipliers=slice.*groups=None"),
        ({"layer_decay": 0.5}, "`layer_decay`.*groups=None"),
        ({"groups": {"a": "g0/"}, "layer_decay": 0.0}, "`layer_decay`.*0.0"),
        ({"groups": {"a": "g0/"}, "layer_decay": 1.5}, "`layer_decay`.*1.5"),
        ({"groups": {"a": "g0/"}, "layer_decay": "x"}, "`layer_decay`"),
        (
            {"groups": {"a": "g0/"}, "layer_decay": 0.5, "multipliers": {"a": 1}},
            "either `multipliers` or `layer_decay`",
        ),
        (
            {"groups": {"a": "g0/", "b": "g1/"}, "multipliers": {"c": 0.1}},
            r"group 'c'.*Existing groups: \['a', 'b'\]",
        ),
        ({"groups": {"a": "g0/"}, "multipliers": [0.1, 0.2]}, "one factor per"),
        ({"groups": {"a": "g0/"}, "multipliers": slice(0, 1)}, "lo > 0"),
        ({"groups": 3}, "`groups`"),
        ({"learning_rate": 0.1}, "takes no base optimizer arguments"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DiscriminativeLR(keras.optimizers.Adam(), **kwargs)


def test_bad_optimizer():
    with pytest.raises(ValueError, match="`optimizer`.*Received"):
        DiscriminativeLR("adam")
    with pytest.raises(ValueError, match="`optimizer` is already"):
        DiscriminativeLR(DiscriminativeLR(keras.optimizers.Adam()))


def test_regex_matching_nothing_is_named_at_build():
    model = make_model()
    opt = DiscriminativeLR(keras.optimizers.Adam(), multipliers={"encoder/": 0.1})
    with pytest.raises(ValueError, match="`multipliers` regex 'encoder/'"):
        opt.build(model.trainable_variables)
    opt = DiscriminativeLR(
        keras.optimizers.Adam(), groups={"enc": ["g0/", "decoder"]}, layer_decay=1
    )
    with pytest.raises(ValueError, match="`groups` regex 'decoder' \\(group 'enc'"):
        opt.build(model.trainable_variables)


def test_set_multipliers_bad_input_keeps_current_factors():
    model = make_model()
    opt = DiscriminativeLR(keras.optimizers.Adam(), multipliers={"g0/": 0.1})
    opt.build(model.trainable_variables)
    before = opt.get_multipliers()
    with pytest.raises(ValueError, match="`multipliers`"):
        opt.set_multipliers({"g0/": -1.0})
    with pytest.raises(ValueError, match="`multipliers` regex 'nothing'"):
        opt.set_multipliers({"nothing": 0.5})
    assert opt.get_multipliers() == before
    assert opt.get_config()["multipliers"] == {"g0/": 0.1}
