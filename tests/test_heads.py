"""`add_head` / `Backbone.with_head` and `ImagePreprocessing`."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_transfer.backbones import Backbone, ImagePreprocessing, add_head
from tests.testing import (
    changed_paths,
    run_model_saving_test,
    run_serialization_test,
    tiny_bert,
    weights_snapshot,
)


def tiny_backbone(preprocessing="tf"):
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="c1")(inputs)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.Conv2D(6, 3, padding="same", name="c2")(x)
    return Backbone(
        inputs, x, groups={"low": "c1|bn1", "high": "c2"}, preprocessing=preprocessing
    )


def raw_images(n=8, size=16, channels=1, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, size, size, channels)).astype("float32")


@pytest.mark.parametrize(
    "mode,module",
    [
        ("tf", keras.applications.mobilenet_v2),
        ("torch", keras.applications.densenet),
        ("caffe", keras.applications.resnet50),
    ],
)
def test_image_preprocessing_matches_keras_preprocess_input(mode, module):
    images = raw_images(2, 8, 3)
    expected = module.preprocess_input(images.copy())
    actual = ImagePreprocessing(mode)(images)
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-4)


def test_image_preprocessing_serialization_and_bad_input():
    layer = ImagePreprocessing("caffe", image_size=(4, 6))
    revived = run_serialization_test(layer)
    assert revived.image_size == (4, 6) and revived.mode == "caffe"
    with pytest.raises(ValueError, match="`mode`"):
        ImagePreprocessing("imagenet")
    with pytest.raises(ValueError, match="`image_size`"):
        ImagePreprocessing("tf", image_size=(0, 4))


def test_classifier_takes_raw_images_and_fits():
    backbone = tiny_backbone()
    backbone.freeze_to(1)
    model = backbone.with_head(3, input_shape=(16, 16, 1), dropout=0.1)
    assert model.input.shape == (None, 16, 16, 1)
    probs = model(raw_images())
    np.testing.assert_allclose(np.sum(probs, axis=-1), 1.0, atol=1e-5)
    model.compile(
        optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy"
    )
    x = raw_images(16)
    y = (x.mean(axis=(1, 2, 3)) > 127).astype("int32")
    before = weights_snapshot(model.weights)
    history = model.fit(x, y, batch_size=8, epochs=5, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    changed = changed_paths(before, model.weights)
    assert any(p.startswith("c2/") for p in changed)
    assert not any(p.startswith("c1/") for p in changed)
    assert any(p.startswith("predictions/") for p in changed)


def test_regression_head():
    model = add_head(tiny_backbone(), task="regression", num_outputs=2)
    assert model.output.shape == (None, 2)
    assert model.get_layer("head").get_layer("predictions").activation.__name__ == (
        "linear"
    )


def test_head_model_saves_and_loads(tmp_path):
    backbone = tiny_backbone("torch")
    backbone.freeze()
    model = add_head(backbone, 4, input_shape=(12, 12, 1), pooling="max")
    loaded = run_model_saving_test(model, raw_images(2, 12), tmp_path)
    nested = [layer for layer in loaded.layers if isinstance(layer, Backbone)]
    assert nested and nested[0].group_names == ["low", "high"]
    assert nested[0].trainable_group_names == []


def test_head_under_mirrored_strategy(strategy):
    x = raw_images(16)
    y = np.arange(16) % 3

    def train():
        keras.utils.set_random_seed(3)
        backbone = tiny_backbone()
        backbone.freeze_to(1)
        model = add_head(backbone, 3, input_shape=(16, 16, 1))
        model.compile(
            optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy"
        )
        model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
        return [w.numpy() for w in model.weights]

    single = train()
    with strategy.scope():
        mirrored = train()
    for a, b in zip(single, mirrored):
        np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.slow
def test_text_head_takes_strings(tmp_path):
    backbone, preprocessor = tiny_bert()
    model = add_head(backbone, 2, preprocessing=preprocessor)
    texts = np.array(["good movie", "bad movie", "Good good", "bad"])
    labels = np.array([1, 0, 1, 0])
    model.compile(
        optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy"
    )
    data = tf.data.Dataset.from_tensor_slices((texts, labels)).batch(4)
    history = model.fit(data, epochs=8, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    run_model_saving_test(model, tf.constant(texts), tmp_path, atol=1e-5)
    # Raw strings as NumPy arrays and lists go straight into fit/evaluate/predict.
    expected = model.predict(tf.constant(texts), verbose=0)
    np.testing.assert_allclose(model.predict(texts, verbose=0), expected)
    np.testing.assert_allclose(model.predict(list(texts), verbose=0), expected)
    loss = model.evaluate(list(texts), labels, verbose=0)
    assert loss == pytest.approx(
        model.evaluate(tf.constant(texts), labels, verbose=0)
    )
    history = model.fit(texts, labels, epochs=2, batch_size=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))


def test_add_head_bad_input():
    backbone = tiny_backbone()
    with pytest.raises(ValueError, match="`num_classes`"):
        add_head(backbone, 1)
    with pytest.raises(ValueError, match="`num_classes`"):
        add_head(backbone, 3, task="regression")
    with pytest.raises(ValueError, match="`task`"):
        add_head(backbone, 3, task="segmentation")
    with pytest.raises(ValueError, match="`pooling`"):
        add_head(backbone, 3, pooling="mean")
    with pytest.raises(ValueError, match='`pooling="pooled"`'):
        add_head(backbone, 3, pooling="pooled")
    with pytest.raises(ValueError, match="`dropout`"):
        add_head(backbone, 3, dropout=1.0)
    with pytest.raises(ValueError, match="`preprocessing`"):
        add_head(backbone, 3, preprocessing="imagenet")
    with pytest.raises(ValueError, match="`preprocessing`"):
        Backbone(backbone.input, backbone.output, preprocessing="imagenet")
