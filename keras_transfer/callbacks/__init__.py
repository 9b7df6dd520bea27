"""Callbacks: gradual unfreezing and adaptation schedules inside one fit."""

from keras_transfer.callbacks.gradual_unfreezing import GradualUnfreezing
from keras_transfer.callbacks.lambda_scheduler import DANNLambdaScheduler

__all__ = ["DANNLambdaScheduler", "GradualUnfreezing"]
