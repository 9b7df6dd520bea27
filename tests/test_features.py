"""`extract_features` and `fit_head_on_features`: the frozen-backbone fast path."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_transfer.backbones import (
    Backbone,
    PreprocessedModel,
    extract_features,
    feature_extractor,
    fit_head_on_features,
)
from tests.testing import run_model_saving_test, run_serialization_test, tiny_bert


class CallCounter(keras.layers.Layer):
    """Test helper: counts the samples that flow through it (graph-safe)."""

    def build(self, input_shape):
        self.count = self.add_weight(
            shape=(), initializer="zeros", trainable=False, name="count"
        )

    def call(self, x):
        self.count.assign_add(keras.ops.cast(keras.ops.shape(x)[0], "float32"))
        return x


def counting_backbone(count=True):
    inputs = keras.Input((8, 8, 3))
    x = CallCounter(name="counter")(inputs) if count else inputs
    x = keras.layers.Conv2D(6, 3, activation="relu", name="c1")(x)
    x = keras.layers.Conv2D(8, 3, activation="relu", name="c2")(x)
    backbone = Backbone(inputs, x, groups={"all": ".*"}, preprocessing="tf")
    backbone.freeze()
    return backbone


def images(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, 8, 8, 3)).astype("float32")


def test_extract_features_matches_feature_model():
    backbone = counting_backbone()
    x = images(10)
    features = extract_features(backbone, x, batch_size=4, verbose=0)
    assert features.shape == (10, 8)
    expected = feature_extractor(backbone)(x)
    np.testing.assert_allclose(features, expected, atol=1e-5)
    # Same from a tf.data pipeline of (x, y) batches.
    data = tf.data.Dataset.from_tensor_slices((x, np.zeros(10))).batch(3)
    np.testing.assert_allclose(
        extract_features(backbone, data, verbose=0), features, atol=1e-5
    )


def test_fit_head_on_features_is_the_fast_path_and_matches():
    backbone = counting_backbone()
    counter = backbone.get_layer("counter")
    x = images(24)
    y = (x[..., 0].mean(axis=(1, 2)) > 127).astype("int32")
    frozen = [w.numpy().copy() for w in backbone.trainable_weights + backbone.weights]
    model = fit_head_on_features(
        backbone, x, y, num_classes=2, epochs=6, batch_size=8, verbose=0
    )
    # The backbone saw each training sample once, not once per epoch.
    assert float(counter.count.numpy()) == 24.0
    assert len(model.history.history["loss"]) == 6
    assert model.history.history["loss"][-1] < model.history.history["loss"][0]
    # The backbone was not changed (count aside).
    after = [w.numpy() for w in backbone.trainable_weights + backbone.weights]
    for a, b in zip(frozen, after):
        if a.shape:
            np.testing.assert_array_equal(a, b)
    # The full model's predictions are the head's predictions on features.
    head = model.get_layer("head")
    features = extract_features(backbone, x, verbose=0)
    np.testing.assert_allclose(model.predict(x, verbose=0), head(features), atol=1e-5)


def test_fit_head_on_features_model_saves_and_regression(tmp_path):
    backbone = counting_backbone(count=False)
    x = images(12)
    y = x.mean(axis=(1, 2, 3)) / 255.0
    model = fit_head_on_features(
        backbone, x, y, task="regression", epochs=2, batch_size=4, verbose=0
    )
    assert model.output.shape == (None, 1)
    run_model_saving_test(model, x[:3], tmp_path, atol=1e-5)


def test_extract_features_under_mirrored_strategy(strategy):
    x = images(8)
    with strategy.scope():
        backbone = counting_backbone(count=False)
        mirrored = extract_features(backbone, x, batch_size=4, verbose=0)
    reference = counting_backbone(count=False)
    reference.set_weights(backbone.get_weights())
    single = extract_features(reference, x, batch_size=4, verbose=0)
    np.testing.assert_allclose(mirrored, single, atol=1e-5)


def test_preprocessed_model_serialization():
    network = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model = PreprocessedModel(keras.layers.Rescaling(0.5), network)
    revived = run_serialization_test(model)
    assert isinstance(revived.preprocessor, keras.layers.Rescaling)
    with pytest.raises(ValueError, match="`network`"):
        PreprocessedModel(keras.layers.Rescaling(0.5), "net")


def test_feature_bad_input():
    backbone = counting_backbone()
    with pytest.raises(ValueError, match="`batch_size`"):
        extract_features(backbone, images(2), batch_size=0)
    with pytest.raises(ValueError, match="`backbone`"):
        extract_features("resnet", images(2))
    with pytest.raises(ValueError, match="`x` and `y`"):
        fit_head_on_features(backbone, images(4), [0, 1], num_classes=2, verbose=0)
    with pytest.raises(ValueError, match="`epochs`"):
        fit_head_on_features(backbone, images(4), [0, 1, 0, 1], num_classes=2, epochs=0)
    with pytest.raises(ValueError, match="`data` is empty"):
        extract_features(backbone, images(0), verbose=0)


@pytest.mark.slow
def test_fit_head_on_text_features():
    backbone, preprocessor = tiny_bert()
    backbone.freeze()
    texts = ["good movie", "bad movie", "good good", "bad", "movie good", "bad bad"]
    labels = [1, 0, 1, 0, 1, 0]
    model = fit_head_on_features(
        backbone,
        texts,
        labels,
        num_classes=2,
        epochs=3,
        batch_size=4,
        preprocessing=preprocessor,
        verbose=0,
    )
    assert isinstance(model, PreprocessedModel)
    features = extract_features(
        backbone, texts, batch_size=4, preprocessing=preprocessor, verbose=0
    )
    head = model.network.get_layer("head")
    np.testing.assert_allclose(
        model.predict(tf.constant(texts), verbose=0), head(features), atol=1e-5
    )
