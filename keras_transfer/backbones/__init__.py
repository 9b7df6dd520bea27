"""Pretrained backbones with named layer groups, freezing and task heads."""

from keras_transfer.backbones.backbone import Backbone
from keras_transfer.backbones.layer_group import LayerGroup

__all__ = ["Backbone", "LayerGroup"]
