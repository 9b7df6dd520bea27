"""`WarmupDecay`: linear warm-up, then cosine or linear decay."""

import math

import keras

from keras_transfer.api_export import keras_transfer_export
from keras_transfer.utils.checks import check_positive, check_steps

_SHAPES = ("cosine", "linear")


@keras_transfer_export("keras_transfer.schedules.WarmupDecay")
class WarmupDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to a peak rate, then cosine or linear decay.

    The usual schedule for fine-tuning transformers and vision backbones: the
    rate rises linearly from `initial_lr` to `peak_lr` over `warmup_steps`
    (so the new head's large early gradients do not wreck pretrained weights),
    then decays to `final_lr` over `decay_steps`, along a half cosine
    (`shape="cosine"`) or a straight line (`shape="linear"`). With step `t` and
    `p = min((t - warmup_steps) / decay_steps, 1)`:

    ```
    lr = initial_lr + (peak_lr - initial_lr) * t / warmup_steps  if t < warmup
    lr = final_lr + (peak_lr - final_lr) * (1 + cos(pi * p)) / 2  cosine
    lr = peak_lr + (final_lr - peak_lr) * p                       linear
    ```

    Args:
        peak_lr: Float. The rate at the end of the warm-up.
        warmup_steps: Int >= 0. Number of warm-up steps (0: no warm-up).
        decay_steps: Int >= 1. Number of decay steps after the warm-up.
        shape: String, `"cosine"` or `"linear"`. Shape of the decay.
            Defaults to `"cosine"`.
        initial_lr: Float >= 0. Rate at step 0. Defaults to 0.
        final_lr: Float >= 0. Rate at the end of the decay and after it.
            Defaults to 0.
        name: String. Name of the schedule.

    Examples:

        >>> import keras_transfer
        >>> schedule = keras_transfer.schedules.WarmupDecay(
        ...     peak_lr=1e-3, warmup_steps=10, decay_steps=90, shape="linear"
        ... )
        >>> tuple(round(float(schedule(t)), 6) for t in (0, 5, 10, 55, 100, 200))
        (0.0, 0.0005, 0.001, 0.0005, 0.0, 0.0)
    """

    def __init__(
        self,
        peak_lr,
        warmup_steps,
        decay_steps,
        shape="cosine",
        initial_lr=0.0,
        final_lr=0.0,
        name=None,
    ):
        self.peak_lr = check_positive("peak_lr", peak_lr)
        self.warmup_steps = check_steps("warmup_steps", warmup_steps, minimum=0)
        self.decay_steps = check_steps("decay_steps", decay_steps, minimum=1)
        if shape not in _SHAPES:
            raise ValueError(
                f"`shape` must be one of {list(_SHAPES)}. Received: shape={shape!r}"
            )
        self.shape = shape
        self.initial_lr = check_positive("initial_lr", initial_lr, allow_zero=True)
        self.final_lr = check_positive("final_lr", final_lr, allow_zero=True)
        self.name = name

    def __call__(self, step):
        ops = keras.ops
        t = ops.cast(step, "float32")
        warm = float(self.warmup_steps)
        rising = self.initial_lr + (self.peak_lr - self.initial_lr) * t / max(warm, 1.0)
        p = ops.clip((t - warm) / self.decay_steps, 0.0, 1.0)
        if self.shape == "cosine":
            falling = self.final_lr + (self.peak_lr - self.final_lr) * 0.5 * (
                1.0 + ops.cos(math.pi * p)
            )
        else:
            falling = self.peak_lr + (self.final_lr - self.peak_lr) * p
        return ops.where(t < warm, rising, falling)

    def get_config(self):
        return {
            "peak_lr": self.peak_lr,
            "warmup_steps": self.warmup_steps,
            "decay_steps": self.decay_steps,
            "shape": self.shape,
            "initial_lr": self.initial_lr,
            "final_lr": self.final_lr,
            "name": self.name,
        }
