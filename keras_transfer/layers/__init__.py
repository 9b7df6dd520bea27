"""Keras layers: HubLayer for TF-Hub modules, gradient reversal, discriminators."""

from keras_transfer.layers.domain_discriminator import DomainDiscriminator
from keras_transfer.layers.gradient_reversal import GradientReversal
from keras_transfer.layers.hub_layer import HubLayer
from keras_transfer.layers.trust_hub_handles import trust_hub_handles

__all__ = ["DomainDiscriminator", "GradientReversal", "HubLayer", "trust_hub_handles"]
