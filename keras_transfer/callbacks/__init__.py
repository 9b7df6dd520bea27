"""Callbacks: gradual unfreezing and adaptation schedules inside one fit."""

from keras_transfer.callbacks.gradual_unfreezing import GradualUnfreezing

__all__ = ["GradualUnfreezing"]
