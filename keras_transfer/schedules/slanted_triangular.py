"""`SlantedTriangular`: the ULMFiT learning-rate schedule."""

import keras

from keras_transfer.api_export import keras_transfer_export
from keras_transfer.utils.checks import check_fraction, check_positive, check_steps


@keras_transfer_export("keras_transfer.schedules.SlantedTriangular")
class SlantedTriangular(keras.optimizers.schedules.LearningRateSchedule):
    """Slanted triangular learning rates (Howard & Ruder, 2018, ULMFiT).

    The rate rises linearly for the first `cut_frac` of the `total_steps`, from
    `max_lr / ratio` to `max_lr`, then falls linearly back to `max_lr / ratio`
    over the remaining steps: a short climb and a long descent, so the model
    quickly finds a good region and then refines in it. With
    `cut = floor(total_steps * cut_frac)` and step `t`:

    ```
    p = t / cut                                         if t < cut
    p = 1 - (t - cut) / (cut * (1 / cut_frac - 1))      otherwise
    lr = max_lr * (1 + p * (ratio - 1)) / ratio
    ```

    Steps past `total_steps` keep the final rate.

    Args:
        max_lr: Float. The peak learning rate, reached at step `cut`.
        total_steps: Int. Number of optimizer steps of the whole schedule.
        cut_frac: Float in (0, 1). Fraction of the steps spent increasing.
            Defaults to 0.1, the paper's value.
        ratio: Float >= 1. How much smaller the lowest rate is than `max_lr`.
            Defaults to 32, the paper's value.
        name: String. Name of the schedule.

    Examples:

        >>> import keras_transfer
        >>> stlr = keras_transfer.schedules.SlantedTriangular(
        ...     max_lr=0.01, total_steps=100, cut_frac=0.1, ratio=32
        ... )
        >>> tuple(round(float(stlr(t)), 5) for t in (0, 5, 10, 55, 100))
        (0.00031, 0.00516, 0.01, 0.00516, 0.00031)
        >>> optimizer = keras.optimizers.Adam(learning_rate=stlr)
    """

    def __init__(self, max_lr, total_steps, cut_frac=0.1, ratio=32.0, name=None):
        self.max_lr = check_positive("max_lr", max_lr)
        self.total_steps = check_steps("total_steps", total_steps, minimum=2)
        self.cut_frac = check_fraction("cut_frac", cut_frac)
        check_positive("ratio", ratio)
        if ratio < 1:
            raise ValueError(
                "`ratio` must be >= 1 (lowest rate = max_lr / ratio). Received: "
                f"ratio={ratio!r}"
            )
        self.ratio = ratio
        if int(total_steps * cut_frac) < 1:
            raise ValueError(
                "`total_steps * cut_frac` must be at least 1 step of warm-up. "
                f"Received: total_steps={total_steps}, cut_frac={cut_frac}"
            )
        self.name = name

    def __call__(self, step):
        ops = keras.ops
        t = ops.minimum(ops.cast(step, "float32"), float(self.total_steps))
        cut = float(int(self.total_steps * self.cut_frac))
        p = ops.where(
            t < cut,
            t / cut,
            1.0 - (t - cut) / (cut * (1.0 / self.cut_frac - 1.0)),
        )
        return self.max_lr * (1.0 + p * (self.ratio - 1.0)) / self.ratio

    def get_config(self):
        return {
            "max_lr": self.max_lr,
            "total_steps": self.total_steps,
            "cut_frac": self.cut_frac,
            "ratio": self.ratio,
            "name": self.name,
        }
