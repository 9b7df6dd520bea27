"""Callbacks: gradual unfreezing and adaptation schedules inside one fit."""

from keras_transfer.callbacks.adaptation_monitor import (
    AdaptationMonitor,
    AdaptationWarning,
)
from keras_transfer.callbacks.gradual_unfreezing import GradualUnfreezing
from keras_transfer.callbacks.lambda_scheduler import DANNLambdaScheduler

__all__ = [
    "AdaptationMonitor",
    "AdaptationWarning",
    "DANNLambdaScheduler",
    "GradualUnfreezing",
]
