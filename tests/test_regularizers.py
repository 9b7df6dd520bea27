"""Tests for `keras_transfer.regularizers`: `L2SP` and `BSS`."""

import keras
import numpy as np
import pytest

from keras_transfer.regularizers import BSS, L2SP
from tests.testing import run_model_saving_test, run_serialization_test


def data(n=32):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 6)).astype("float32")
    y = np.tanh(x @ rng.normal(size=(6, 2))).astype("float32") * 3.0
    return x, y


# --------------------------------------------------------------------- L2SP
def pretrained_body(batch_norm=True):
    """Test helper: a small 'pretrained' body with known starting weights."""
    layers = [keras.layers.Dense(8, activation="tanh", name="b0")]
    if batch_norm:
        layers.append(keras.layers.BatchNormalization(name="bn"))
    body = keras.Sequential(layers, name="body")
    body.build((None, 6))
    return body


def l2sp_model(alpha, beta=0.0, batch_norm=True):
    inputs = keras.Input((6,))
    body = pretrained_body(batch_norm)
    wrapper = L2SP(body, alpha=alpha, name="l2sp")
    head = keras.layers.Dense(
        2, name="head", kernel_regularizer=L2SP.head_regularizer(beta)
    )
    model = keras.Model(inputs, head(wrapper(inputs)))
    return model, body, wrapper


def distance_from(body, start):
    return sum(
        float(np.sum((v.numpy() - start[v.path]) ** 2)) for v in body.trainable_weights
    )


def test_l2sp_fit_pulls_weights_toward_their_start():
    x, y = data()
    distances = []
    for alpha in (0.0, 5.0):
        keras.utils.set_random_seed(1)
        model, body, wrapper = l2sp_model(alpha)
        start = {v.path: v.numpy().copy() for v in body.trainable_weights}
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        model.fit(x, y, batch_size=8, epochs=5, verbose=0)
        distances.append(distance_from(body, start))
        # The starting values stay as recorded.
        for anchor, v in zip(wrapper.starting_values, body.trainable_weights):
            np.testing.assert_array_equal(anchor.numpy(), start[v.path])
        # The penalty is alpha / 2 * ||w - w0||^2 (BN moving stats excluded).
        expected = 0.5 * alpha * distances[-1]
        assert float(wrapper.penalty()) == pytest.approx(expected, rel=1e-4)
    assert distances[0] > 0
    assert distances[1] < 0.5 * distances[0], distances


def test_l2sp_adds_its_loss_only_in_training_and_skips_frozen_weights():
    x, _ = data()
    model, body, wrapper = l2sp_model(1.0)
    for v in body.trainable_weights:
        v.assign(v + 1.0)
    model(x, training=False)
    assert not wrapper.losses
    model(x, training=True)
    assert len(wrapper.losses) == 1
    # 8*6 + 8 dense weights and 8 + 8 BN gamma/beta, all moved by 1.
    expected = 0.5 * (48 + 8 + 16)
    assert float(wrapper.losses[0]) == pytest.approx(expected, rel=1e-5)
    assert float(sum(model.losses)) == pytest.approx(expected, rel=1e-5)
    body.trainable = False
    assert float(wrapper.penalty()) == 0.0


def test_l2sp_head_regularizer():
    reg = L2SP.head_regularizer(0.2)
    assert isinstance(reg, keras.regularizers.L2)
    assert float(reg(keras.ops.ones((2, 2)))) == pytest.approx(0.1 * 4)
    with pytest.raises(ValueError, match="`beta`.*-1"):
        L2SP.head_regularizer(-1)


def test_l2sp_config_round_trip():
    body = keras.layers.Dense(3, name="d")
    revived = run_serialization_test(L2SP(body, alpha=0.3, name="reg"))
    assert revived.alpha == 0.3
    assert revived.layer.get_config()["units"] == 3


def test_l2sp_saves_starting_values(tmp_path):
    x, y = data()
    model, body, wrapper = l2sp_model(1.0, beta=0.01)
    start = [a.numpy().copy() for a in wrapper.starting_values]
    model.compile(optimizer="adam", loss="mse")
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    loaded = run_model_saving_test(model, x, tmp_path)
    loaded_wrapper = loaded.get_layer("l2sp")
    assert isinstance(loaded_wrapper, L2SP)
    for a, b in zip(loaded_wrapper.starting_values, start):
        np.testing.assert_array_equal(a.numpy(), b)
    assert float(loaded_wrapper.penalty()) == pytest.approx(
        float(wrapper.penalty()), rel=1e-6
    )
    assert float(wrapper.penalty()) > 0


def test_l2sp_under_strategy_matches_single_device(strategy):
    x, y = data()

    def train():
        keras.utils.set_random_seed(2)
        # No BatchNorm: its batch statistics are per replica.
        model, body, _ = l2sp_model(2.0, batch_norm=False)
        model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
        return model

    single = train()
    single.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    with strategy.scope():
        mirrored = train()
    mirrored.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    for a, b in zip(single.trainable_variables, mirrored.trainable_variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5, err_msg=a.path)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"alpha": -0.1}, "`alpha`.*-0.1"),
        ({"alpha": "big"}, "`alpha`.*'big'"),
        ({"alpha": float("inf")}, "`alpha`.*inf"),
        ({"layer": "dense"}, "`layer`.*'dense'"),
    ],
)
def test_l2sp_bad_arguments(kwargs, match):
    kwargs = {"layer": keras.layers.Dense(2), **kwargs}
    with pytest.raises(ValueError, match=match):
        L2SP(**kwargs)


# ---------------------------------------------------------------------- BSS
def bss_model(eta, k=1):
    inputs = keras.Input((6,))
    features = keras.layers.Dense(4, activation="tanh", name="features")(inputs)
    features = BSS(k=k, eta=eta, name="bss")(features)
    outputs = keras.layers.Dense(2, name="head")(features)
    return keras.Model(inputs, outputs)


def smallest_singular_values(model, x, k):
    extractor = keras.Model(model.inputs[0], model.get_layer("bss").output)
    features = extractor(x)
    return np.linalg.svd(keras.ops.convert_to_numpy(features), compute_uv=False)[-k:]


def test_bss_penalty_and_identity_forward():
    x = np.random.default_rng(3).normal(size=(10, 2, 3)).astype("float32")
    layer = BSS(k=2, eta=0.5)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(x)), x)
    sigma = np.linalg.svd(x.reshape(10, 6), compute_uv=False)
    expected = 0.5 * np.sum(np.sort(sigma)[:2] ** 2)
    assert float(layer.penalty(x)) == pytest.approx(expected, rel=1e-4)
    layer(x, training=False)
    assert not layer.losses
    layer(x, training=True)
    assert float(layer.losses[0]) == pytest.approx(expected, rel=1e-4)


def test_bss_fit_shrinks_the_smallest_singular_values():
    x, y = data(64)
    k = 1
    results = []
    for eta in (0.0, 0.5):
        keras.utils.set_random_seed(4)
        model = bss_model(eta, k)
        model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
        model.fit(x, y, batch_size=16, epochs=10, verbose=0)
        results.append(smallest_singular_values(model, x, k))
    without, with_bss = results
    assert np.all(with_bss < 0.5 * without), (without, with_bss)


def test_bss_config_round_trip():
    revived = run_serialization_test(BSS(k=3, eta=0.02, name="bss"))
    assert (revived.k, revived.eta) == (3, 0.02)


def test_bss_save_load(tmp_path):
    x, y = data()
    model = bss_model(0.1)
    model.compile(optimizer="adam", loss="mse")
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    loaded = run_model_saving_test(model, x, tmp_path)
    assert loaded.get_layer("bss").get_config()["eta"] == 0.1


def test_bss_under_strategy_matches_one_device(strategy):
    # The singular values are a statistic of the whole batch: each replica
    # computes them on the global batch (gathered), so two replicas take the
    # same steps as one device. (Per replica, the weights differ by ~0.05.)
    x, y = data(32)
    x = np.concatenate([x, 0.5 * x])
    y = np.concatenate([y, y])
    keras.utils.set_random_seed(5)
    initial = bss_model(0.5).get_weights()

    def make(eta=0.5):
        model = bss_model(eta)
        model.set_weights(initial)
        model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
        return model

    single = make()
    single.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    with strategy.scope():
        mirrored = make()
    history = mirrored.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    for a, b in zip(single.weights, mirrored.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-6)
    reference = make(eta=0.0)
    reference.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    assert np.all(
        smallest_singular_values(mirrored, x, 1)
        < smallest_singular_values(reference, x, 1)
    )


def test_bss_per_replica_penalty_would_differ():
    # The reason for gathering: the spectrum of each half batch is not the
    # spectrum of the batch.
    x = np.random.default_rng(6).normal(size=(16, 4)).astype("float32")
    layer = BSS(k=1, eta=1.0)
    whole = float(layer.penalty(x))
    halves = np.mean([float(layer.penalty(x[i * 8 : (i + 1) * 8])) for i in (0, 1)])
    assert abs(whole - halves) > 0.2 * whole, (whole, halves)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"k": 0}, "`k`.*0"),
        ({"k": 1.5}, "`k`.*1.5"),
        ({"eta": -1.0}, "`eta`.*-1.0"),
        ({"eta": None}, "`eta`.*None"),
    ],
)
def test_bss_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BSS(**kwargs)
