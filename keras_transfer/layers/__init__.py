"""Keras layers: HubLayer for TF-Hub modules, gradient reversal, discriminators."""

from keras_transfer.layers.hub_layer import HubLayer

__all__ = ["HubLayer"]
