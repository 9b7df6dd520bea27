"""The layer-group table: every family on a `weights=None` build."""

import keras
import pytest

from keras_transfer.backbones import Backbone
from keras_transfer.utils import require

STAGES5 = ["stem", "stage_1", "stage_2", "stage_3", "stage_4"]

# application name, kwargs, expected family, expected groups
APPLICATIONS = [
    ("ResNet50", {}, "ResNet", STAGES5),
    ("ResNet50V2", {}, "ResNet", STAGES5),
    ("MobileNetV2", {"alpha": 0.35}, "MobileNetV2", STAGES5),
    ("MobileNetV3Small", {}, "MobileNetV3", STAGES5[:4]),
    ("MobileNetV3Large", {"minimalistic": True}, "MobileNetV3", STAGES5),
    ("MobileNet", {"alpha": 0.25}, "MobileNet", STAGES5),
    ("EfficientNetB0", {}, "EfficientNet", STAGES5),
    ("EfficientNetV2B0", {}, "EfficientNet", STAGES5),
    ("ConvNeXtTiny", {}, "ConvNeXt", STAGES5),
    ("DenseNet121", {}, "DenseNet", STAGES5),
    ("Xception", {}, "Xception", ["stem", "stage_1", "stage_2", "stage_3"]),
    ("VGG16", {}, "VGG", [f"block_{i}" for i in range(1, 6)]),
    ("InceptionV3", {}, "InceptionV3", ["stem", "stage_1", "stage_2", "stage_3"]),
    (
        "InceptionResNetV2",
        {},
        "InceptionResNetV2",
        ["stem", "stage_1", "stage_2", "stage_3"],
    ),
]

SIZES = {"InceptionV3": 75, "InceptionResNetV2": 75, "Xception": 71}


def check_groups(backbone, expected_groups):
    assert backbone.group_names == expected_groups
    assert all(g.layers for g in backbone.groups)
    # Every weight in exactly one group.
    ids = [id(v) for g in backbone.groups for v in g.variables]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(v) for v in backbone.weights}
    # Ordered input -> output: walking the layers in graph order, the group
    # index never goes back.
    index = {}
    for i, g in enumerate(backbone.groups):
        for layer in g.layers:
            index[id(layer)] = i
    order = [index[id(layer)] for layer in _graph_order(backbone) if id(layer) in index]
    assert order == sorted(order)
    assert len(order) == sum(len(g.layers) for g in backbone.groups)


def _graph_order(backbone):
    from keras_transfer.backbones._grouping import unit_layers

    return unit_layers(backbone)


@pytest.mark.slow
@pytest.mark.parametrize(
    "name,kwargs,family,groups", APPLICATIONS, ids=[a[0] for a in APPLICATIONS]
)
def test_application_family(name, kwargs, family, groups):
    size = SIZES.get(name, 32)
    app = getattr(keras.applications, name)(
        weights=None, include_top=False, input_shape=(size, size, 3), **kwargs
    )
    backbone = Backbone.from_model(app)
    assert backbone.family == family
    check_groups(backbone, groups)


def test_family_survives_cut_and_head():
    app = keras.applications.ResNet50(
        weights=None, include_top=False, input_shape=(32, 32, 3)
    )
    cut = Backbone.from_model(app, cut="conv3_block4_out")
    assert cut.family == "ResNet"
    assert cut.group_names == ["stem", "stage_1", "stage_2"]
    x = keras.layers.GlobalAveragePooling2D()(app.output)
    x = keras.layers.Dense(2)(x)
    full = Backbone.from_model(keras.Model(app.input, x))
    check_groups(full, STAGES5 + ["head"])


def test_vit_family():
    keras_hub = require("keras_hub")
    vit = keras_hub.models.ViTBackbone(
        image_shape=(16, 16, 3),
        patch_size=8,
        num_layers=3,
        num_heads=2,
        hidden_dim=8,
        mlp_dim=16,
    )
    backbone = Backbone.from_model(vit)
    assert backbone.family == "ViT"
    check_groups(backbone, ["embeddings", "layer_0", "layer_1", "layer_2", "pooler"])
    backbone.freeze_to(2)
    assert backbone.trainable_group_names == ["layer_2", "pooler"]
    trainable = {backbone.group_of(v) for v in backbone.trainable_weights}
    assert trainable == {"layer_2", "pooler"}


def test_bert_family():
    keras_hub = require("keras_hub")
    bert = keras_hub.models.BertBackbone(
        vocabulary_size=30,
        num_layers=2,
        num_heads=2,
        hidden_dim=8,
        intermediate_dim=16,
        max_sequence_length=8,
    )
    backbone = Backbone.from_model(bert)
    assert backbone.family == "BERT"
    check_groups(backbone, ["embeddings", "layer_0", "layer_1", "pooler"])
    assert sorted(backbone.input) == ["padding_mask", "segment_ids", "token_ids"]
