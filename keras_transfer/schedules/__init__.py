"""Learning-rate schedules for fine-tuning: slanted triangular, one-cycle, warmup."""

from keras_transfer.schedules.one_cycle import OneCycle
from keras_transfer.schedules.slanted_triangular import SlantedTriangular
from keras_transfer.schedules.warmup_decay import WarmupDecay

__all__ = ["OneCycle", "SlantedTriangular", "WarmupDecay"]
