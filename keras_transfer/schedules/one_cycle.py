"""`OneCycle`: the one-cycle learning-rate policy as fastai's `fit_one_cycle`."""

import math

import keras

from keras_transfer.api_export import keras_transfer_export
from keras_transfer.utils.checks import check_fraction, check_positive, check_steps


def _cosine(start, end, pos):
    """Cosine annealing from `start` (pos=0) to `end` (pos=1)."""
    return end + (start - end) * 0.5 * (1.0 + keras.ops.cos(math.pi * pos))


@keras_transfer_export("keras_transfer.schedules.OneCycle")
class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """One-cycle learning rates (Smith, 2018), cosine-annealed as in fastai.

    The rate follows the shape fastai's `fit_one_cycle` uses: for the first
    `pct_start` of the `total_steps` it rises from `max_lr / div_factor` to
    `max_lr` along a half cosine, then it falls along a half cosine to
    `max_lr / (div_factor * final_div_factor)`. With `warm =
    pct_start * total_steps` and step `t`:

    ```
    cos_anneal(a, b, p) = b + (a - b) * (1 + cos(pi * p)) / 2
    lr = cos_anneal(max_lr / div_factor, max_lr, t / warm)     if t < warm
    lr = cos_anneal(max_lr, max_lr / (div_factor * final_div_factor),
                    (t - warm) / (total_steps - warm))         otherwise
    ```

    Steps past `total_steps` keep the final rate.

    Args:
        max_lr: Float. The peak learning rate.
        total_steps: Int. Number of optimizer steps of the whole cycle.
        pct_start: Float in (0, 1). Fraction of the steps spent rising.
            Defaults to 0.25 (fastai's default).
        div_factor: Float >= 1. The first rate is `max_lr / div_factor`.
            Defaults to 25.
        final_div_factor: Float >= 1. The last rate is `max_lr / (div_factor *
            final_div_factor)`. Defaults to 1e5.
        name: String. Name of the schedule.

    Examples:

        >>> import keras_transfer
        >>> one_cycle = keras_transfer.schedules.OneCycle(max_lr=0.1, total_steps=100)
        >>> tuple(float(f"{float(one_cycle(t)):.3g}") for t in (0, 25, 100))
        (0.004, 0.1, 4e-08)
    """

    def __init__(
        self,
        max_lr,
        total_steps,
        pct_start=0.25,
        div_factor=25.0,
        final_div_factor=1e5,
        name=None,
    ):
        self.max_lr = check_positive("max_lr", max_lr)
        self.total_steps = check_steps("total_steps", total_steps, minimum=2)
        self.pct_start = check_fraction("pct_start", pct_start)
        for arg, value in (
            ("div_factor", div_factor),
            ("final_div_factor", final_div_factor),
        ):
            check_positive(arg, value)
            if value < 1:
                raise ValueError(
                    f"`{arg}` must be >= 1 (it divides `max_lr`). Received: "
                    f"{arg}={value!r}"
                )
        self.div_factor = div_factor
        self.final_div_factor = final_div_factor
        self.name = name

    def __call__(self, step):
        ops = keras.ops
        t = ops.minimum(ops.cast(step, "float32"), float(self.total_steps))
        warm = self.pct_start * self.total_steps
        low = self.max_lr / self.div_factor
        final = low / self.final_div_factor
        rising = _cosine(low, self.max_lr, t / warm)
        falling = _cosine(self.max_lr, final, (t - warm) / (self.total_steps - warm))
        return ops.where(t < warm, rising, falling)

    def get_config(self):
        return {
            "max_lr": self.max_lr,
            "total_steps": self.total_steps,
            "pct_start": self.pct_start,
            "div_factor": self.div_factor,
            "final_div_factor": self.final_div_factor,
            "name": self.name,
        }
