"""Optimizer wrappers: discriminative learning rates and layer-wise LR decay."""

from keras_transfer.optimizers.discriminative_lr import DiscriminativeLR

__all__ = ["DiscriminativeLR"]
