"""Tests for `fine_tune(probe_epochs=...)`: the head probed on cached features."""

import keras
import numpy as np
import pytest

from keras_transfer.backbones._probe import split_at
from keras_transfer.fine_tune import fine_tune
from tests.test_fine_tune import data, make_model


def _head_only_accuracy(model, x, y):
    return float(np.mean(np.argmax(model.predict(x, verbose=0), -1) == y))


def test_probe_trains_the_head_alone_on_the_backbones_outputs():
    model, backbone = make_model()
    x, y = data(n=64)
    pretrained = [w.copy() for w in backbone.get_weights()]
    head_before = model.get_layer("head").get_weights()[0].copy()
    history = fine_tune(
        model, backbone, (x, y), epochs=2, head_epochs=0, probe_epochs=30,
        batch_size=16, verbose=0, keep_head_weights=True,
    )
    probe = history.probe.history
    assert len(probe["loss"]) == 30 and probe["loss"][-1] < probe["loss"][0]
    # `head_weights` with head_epochs=0: the weights as the fit began, i.e.
    # right after the probe. The backbone was not touched, the head was.
    start = history.head_weights
    n = len(pretrained)
    for before, after in zip(pretrained, start[:n]):
        np.testing.assert_array_equal(before, after)
    assert not np.array_equal(head_before, start[n])
    # The model's own head is the one trained: its accuracy is the probe's.
    model.set_weights(start)
    assert _head_only_accuracy(model, x, y) == pytest.approx(
        probe["accuracy"][-1], abs=0.1
    )


def test_probe_gives_the_fit_a_trained_head_from_its_first_epoch():
    x, y = data(n=64)
    first = {}
    for epochs in (0, 40):
        model, backbone = make_model(seed=3)
        history = fine_tune(
            model, backbone, (x, y), epochs=3, probe_epochs=epochs,
            batch_size=16, verbose=0,
        )
        first[epochs] = history.history["loss"][0]
        assert hasattr(history, "probe") == bool(epochs)
    assert first[40] < first[0]


def test_probe_on_a_sequential_model_and_a_dataset():
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    base = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(8, activation="relu")], name="base"
    )
    model = keras.Sequential(
        [keras.Input((6,)), base, keras.layers.Dense(3, activation="softmax")]
    )
    x, y = data(n=48)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    kernel = model.layers[-1].get_weights()[0].copy()
    history = fine_tune(
        model, base, dataset, epochs=2, probe_epochs=5, verbose=0
    )
    assert len(history.probe.history["loss"]) == 5
    assert not np.array_equal(kernel, model.layers[-1].get_weights()[0])


def test_split_at_cuts_a_functional_model_after_its_backbone():
    model, backbone = make_model()
    x, _ = data(n=8)
    body, head = split_at(model, backbone)
    np.testing.assert_allclose(
        head.predict(body.predict(x, verbose=0), verbose=0),
        model.predict(x, verbose=0),
        atol=1e-6,
    )
    assert head.get_layer("head") is model.get_layer("head")


@pytest.mark.parametrize("kind", ["functional", "sequential"])
def test_probe_caches_features_with_augmentation_in_front_of_the_backbone_off(
    kind,
):
    # The Keras transfer-learning guide's model: augmentation layers, then
    # the backbone, then the head. GaussianNoise stands in for the image
    # augmentations: like them it acts in training only.
    _, backbone = make_model()
    noise = keras.layers.GaussianNoise(1.0, name="augment")
    head = keras.layers.Dense(3, name="head")
    if kind == "functional":
        inputs = keras.Input((6,))
        model = keras.Model(inputs, head(backbone(noise(inputs))))
    else:
        model = keras.Sequential([keras.Input((6,)), noise, backbone, head])
    x, y = data(n=64)
    body, _ = split_at(model, backbone)
    assert any(layer is noise for layer in body.layers)
    np.testing.assert_allclose(
        body.predict(x, verbose=0), backbone.predict(x, verbose=0), atol=1e-6
    )
    history = fine_tune(
        model, backbone, (x, y), epochs=1, head_epochs=0, probe_epochs=40,
        batch_size=16, verbose=0, keep_head_weights=True,
    )
    # The probe fitted the model's head on clean features: in inference mode
    # (noise off) the model at the probe's end scores the probe's accuracy.
    model.set_weights(history.head_weights)
    assert _head_only_accuracy(model, x, y) == pytest.approx(
        history.probe.history["accuracy"][-1], abs=0.1
    )


def test_probe_errors_leave_the_model_as_it_was():
    model, backbone = make_model()
    x, y = data()
    before = model.get_weights()
    with pytest.raises(ValueError, match="`probe_epochs` must be >= 0"):
        fine_tune(model, backbone, (x, y), probe_epochs=-1)
    with pytest.raises(ValueError, match="`probe_epochs` must be an integer"):
        fine_tune(model, backbone, (x, y), probe_epochs=2.5)

    class Subclassed(keras.Model):
        def __init__(self, base):
            super().__init__()
            self.base = base
            self.head = keras.layers.Dense(3)

        def call(self, inputs):
            return self.head(self.base(inputs))

    sub = Subclassed(backbone)
    sub(x[:2])
    with pytest.raises(ValueError, match="subclassed model.*probe_epochs=0"):
        fine_tune(sub, backbone, (x, y), epochs=2, probe_epochs=3, verbose=0)
    # A head that reads the inputs beside the backbone cannot be probed.
    inputs = keras.Input((6,))
    joined = keras.layers.Concatenate()([backbone(inputs), inputs])
    skip = keras.Model(inputs, keras.layers.Dense(3)(joined))
    with pytest.raises(ValueError, match="sees the inputs only through the backbone"):
        fine_tune(skip, backbone, (x, y), epochs=2, probe_epochs=3, verbose=0)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_probe_under_strategy(strategy):
    x, y = data(n=32)
    with strategy.scope():
        model, backbone = make_model()
        head_before = model.get_layer("head").get_weights()[0].copy()
        history = fine_tune(
            model, backbone, (x, y), epochs=2, probe_epochs=3, batch_size=8,
            verbose=0,
        )
    assert len(history.probe.history["loss"]) == 3
    assert not np.array_equal(head_before, model.get_layer("head").get_weights()[0])


def test_probe_l2_shrinks_the_heads_kernel_and_reaches_logistic_regression():
    from sklearn.linear_model import LogisticRegression

    x, y = data(n=64)
    kernels, histories = {}, {}
    for l2 in (0.0, "auto"):
        model, backbone = make_model(seed=5)
        pretrained = [w.copy() for w in backbone.get_weights()]
        histories[l2] = fine_tune(
            model, backbone, (x, y), epochs=2, head_epochs=0, probe_epochs=300,
            probe_l2=l2, learning_rate=1e-2, batch_size=64, verbose=0,
            keep_head_weights=True,
        )
        start = histories[l2].head_weights
        for before, after in zip(pretrained, start):
            np.testing.assert_array_equal(before, after)
        kernels[l2] = start[len(pretrained)]
    # The penalty keeps the kernel smaller than the unpenalized fit's.
    assert np.sum(kernels["auto"] ** 2) < 0.8 * np.sum(kernels[0.0] ** 2)
    # With "auto" the probe minimizes scikit-learn's objective at C=1: its
    # kernel is that of LogisticRegression on the same features (up to the
    # softmax's shift, which the penalty takes out at the optimum).
    model, backbone = make_model(seed=5)
    features = backbone.predict(x, verbose=0)
    reference = LogisticRegression(max_iter=5000).fit(features, y)
    ours = kernels["auto"].T
    ours = ours - ours.mean(axis=0, keepdims=True)
    cosine = np.sum(ours * reference.coef_) / (
        np.linalg.norm(ours) * np.linalg.norm(reference.coef_)
    )
    assert cosine > 0.99
    # The probe ran its 300 epochs, its History in `history.probe`.
    assert len(histories["auto"].probe.history["loss"]) == 300


def test_probe_l2_errors_name_the_argument():
    model, backbone = make_model()
    x, y = data()
    before = model.get_weights()
    expected = '`probe_l2` must be a float >= 0 or "auto"'
    for bad in (-0.1, "big", float("nan"), True, [0.1]):
        with pytest.raises(ValueError, match=expected):
            fine_tune(model, backbone, (x, y), probe_epochs=3, probe_l2=bad)
    with pytest.raises(ValueError, match="pass probe_epochs > 0"):
        fine_tune(model, backbone, (x, y), probe_l2="auto")
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
