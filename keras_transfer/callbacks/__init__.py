"""Callbacks: gradual unfreezing, adaptation schedules, weight averaging."""

from keras_transfer.callbacks.adaptation_monitor import (
    AdaptationMonitor,
    AdaptationWarning,
)
from keras_transfer.callbacks.gradual_unfreezing import GradualUnfreezing
from keras_transfer.callbacks.lambda_scheduler import DANNLambdaScheduler
from keras_transfer.callbacks.weight_averaging import WeightAveraging

__all__ = [
    "AdaptationMonitor",
    "AdaptationWarning",
    "DANNLambdaScheduler",
    "GradualUnfreezing",
    "WeightAveraging",
]
