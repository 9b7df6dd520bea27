"""Tests for `keras_transfer.losses.SparseCategoricalCrossentropy`."""

import contextlib

import keras
import numpy as np
import pytest

from keras_transfer.losses import SparseCategoricalCrossentropy
from tests.testing import run_model_saving_test, run_serialization_test


def _batch(seed=0, n=8, classes=4):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, classes)).astype("float32") * 3
    labels = rng.integers(0, classes, size=n)
    return labels, logits


@pytest.mark.parametrize("from_logits", [True, False])
@pytest.mark.parametrize("label_shape", ["flat", "column"])
def test_without_smoothing_it_is_keras_loss(from_logits, label_shape):
    labels, logits = _batch()
    y_pred = logits if from_logits else keras.ops.softmax(logits)
    y_true = labels if label_shape == "flat" else labels[:, None]
    weights = np.linspace(0.0, 1.0, len(labels)).astype("float32")
    ours = SparseCategoricalCrossentropy(from_logits=from_logits)
    theirs = keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits)
    for sample_weight in (None, weights):
        np.testing.assert_allclose(
            float(ours(y_true, y_pred, sample_weight=sample_weight)),
            float(theirs(y_true, y_pred, sample_weight=sample_weight)),
            rtol=1e-5,
        )


@pytest.mark.parametrize("from_logits", [True, False])
def test_smoothing_is_keras_categorical_smoothing_on_one_hot_labels(from_logits):
    labels, logits = _batch(1)
    y_pred = logits if from_logits else keras.ops.softmax(logits)
    ours = SparseCategoricalCrossentropy(from_logits, label_smoothing=0.2)
    theirs = keras.losses.CategoricalCrossentropy(from_logits, label_smoothing=0.2)
    np.testing.assert_allclose(
        float(ours(labels, y_pred)),
        float(theirs(np.eye(4, dtype="float32")[labels], y_pred)),
        rtol=1e-5,
    )
    # By hand: the target is 0.8 * one_hot + 0.2 / 4.
    log_p = logits - np.log(np.sum(np.exp(logits), -1, keepdims=True))
    target = 0.8 * np.eye(4)[labels] + 0.05
    expected = np.mean(-np.sum(target * log_p, -1))
    np.testing.assert_allclose(float(ours(labels, y_pred)), expected, rtol=1e-4)


def test_config_round_trip():
    loss = SparseCategoricalCrossentropy(
        from_logits=True, label_smoothing=0.1, reduction="sum", name="smoothed"
    )
    revived = run_serialization_test(loss)
    assert revived.from_logits is True
    assert revived.label_smoothing == pytest.approx(0.1)
    assert revived.reduction == "sum" and revived.name == "smoothed"
    labels, logits = _batch(2)
    np.testing.assert_allclose(
        float(revived(labels, logits)), float(loss(labels, logits)), rtol=1e-6
    )


def _separable(n=64):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 2)).astype("float32")
    return x, (x[:, 0] > 0).astype("int64") + 2 * (x[:, 1] > 0).astype("int64")


def _fit(label_smoothing, epochs=150):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(4)])
    model.compile(
        keras.optimizers.Adam(0.1),
        SparseCategoricalCrossentropy(True, label_smoothing=label_smoothing),
        metrics=["accuracy"],
    )
    x, y = _separable()
    history = model.fit(x, y, batch_size=16, epochs=epochs, verbose=0)
    return model, history.history


def test_fit_learns_and_smoothing_bounds_the_confidence():
    """On separable data the plain loss drives the confidence to 1; smoothing
    keeps every example under 0.95 (its target is 1 - 0.3 + 0.3 / 4 = 0.775)."""
    x, y = _separable()
    confidence = {}
    for smoothing in (0.0, 0.3):
        model, history = _fit(smoothing)
        assert history["loss"][-1] < 0.7 * history["loss"][0]
        assert history["accuracy"][-1] > 0.95
        probabilities = keras.ops.convert_to_numpy(
            keras.ops.softmax(model.predict(x, verbose=0))
        )
        confidence[smoothing] = np.quantile(probabilities.max(-1), [0.5, 1.0])
    assert confidence[0.0][0] > 0.97, confidence
    assert confidence[0.3][1] < 0.95, confidence


def test_keras_saving_keeps_the_compiled_loss(tmp_path):
    model, _ = _fit(0.1, epochs=1)
    x, _ = _separable()
    loaded = run_model_saving_test(model, x[:4], tmp_path)
    assert type(loaded.loss) is SparseCategoricalCrossentropy
    assert loaded.loss.get_config() == model.loss.get_config()


def test_under_mirrored_strategy_matches_single_device(strategy):
    x, y = _separable()

    def train(scope):
        with scope:
            keras.utils.set_random_seed(1)
            model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(4)])
            model.compile(
                keras.optimizers.SGD(0.5),
                SparseCategoricalCrossentropy(True, label_smoothing=0.1),
            )
        model.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0)
        return model

    single = train(contextlib.nullcontext())
    mirrored = train(strategy.scope())
    for a, b in zip(single.weights, mirrored.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)


def test_mixed_precision_logits_give_a_float32_loss():
    labels, logits = _batch(3)
    loss = SparseCategoricalCrossentropy(True, label_smoothing=0.1)
    value = loss(labels, keras.ops.cast(logits, "float16"))
    assert keras.backend.standardize_dtype(value.dtype) == "float32"
    np.testing.assert_allclose(
        float(value), float(loss(labels, logits)), rtol=1e-2
    )


@pytest.mark.parametrize("value", [-0.1, 1.0, 1.5, "0.1", True, None])
def test_bad_label_smoothing_names_the_argument(value):
    with pytest.raises(
        ValueError, match=r"`label_smoothing` must be a float in \[0, 1\).*"
        r"Received: label_smoothing="
    ):
        SparseCategoricalCrossentropy(label_smoothing=value)
