"""Keras layers: HubLayer for TF-Hub modules, gradient reversal, discriminators."""

from keras_transfer.layers.domain_discriminator import DomainDiscriminator
from keras_transfer.layers.gradient_reversal import GradientReversal
from keras_transfer.layers.hub_layer import HubLayer

__all__ = ["DomainDiscriminator", "GradientReversal", "HubLayer"]
