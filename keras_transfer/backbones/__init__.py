"""Pretrained backbones with named layer groups, freezing and task heads."""

from keras_transfer.backbones.backbone import Backbone
from keras_transfer.backbones.features import (
    extract_features,
    feature_extractor,
    fit_head_on_features,
)
from keras_transfer.backbones.grouped_layer import GroupedLayer
from keras_transfer.backbones.groups_of import find_backbone, groups_of
from keras_transfer.backbones.heads import add_head
from keras_transfer.backbones.image_preprocessing import ImagePreprocessing
from keras_transfer.backbones.layer_group import LayerGroup
from keras_transfer.backbones.preprocessed_model import PreprocessedModel

__all__ = [
    "Backbone",
    "GroupedLayer",
    "ImagePreprocessing",
    "LayerGroup",
    "PreprocessedModel",
    "add_head",
    "extract_features",
    "feature_extractor",
    "find_backbone",
    "fit_head_on_features",
    "groups_of",
]
