"""`LRFinderResult`: what a learning-rate range test measured."""

import numpy as np

from keras_transfer.api_export import keras_transfer_export
from keras_transfer.lr_finder._suggestions import SUGGESTIONS
from keras_transfer.utils.optional import require


def smooth(losses, smoothing):
    """Exponential moving average of `losses`, bias-corrected (as fastai)."""
    out = np.empty(len(losses), dtype="float64")
    average = 0.0
    for i, loss in enumerate(losses):
        average = smoothing * average + (1.0 - smoothing) * float(loss)
        out[i] = average / (1.0 - smoothing ** (i + 1))
    return out


@keras_transfer_export("keras_transfer.lr_finder.LRFinderResult")
class LRFinderResult:
    """The rates and losses of a learning-rate range test, and what to pick.

    Returned by `keras_transfer.lr_find`. Holds one entry per training step
    of the test: the learning rate used at that step, the loss of that batch
    (`losses`) and its exponential moving average (`smoothed_losses`, the
    curve the suggestions and the plot use).

    Args:
        learning_rates: Sequence of floats, the rate at each step.
        losses: Sequence of floats, the loss of each step's batch.
        smoothing: Float in [0, 1). Factor of the moving average.
        diverged: Boolean. Whether the test stopped because the loss blew up.
        seconds: Float. Wall time of the test.

    Examples:

        >>> result = LRFinderResult(
        ...     learning_rates=np.geomspace(1e-4, 1.0, 20),
        ...     losses=np.r_[np.linspace(2.0, 0.5, 15), [0.6, 1.0, 2.0, 4, 8]],
        ...     smoothing=0.0,
        ... )
        >>> print(f"{result.suggestion('minimum'):.1e}")
        8.9e-03
        >>> print(f"{result.suggestion('minimum', divisor=3):.1e}")
        3.0e-02
        >>> print(f"{result.suggestion('valley'):.1e}")
        4.8e-03
    """

    def __init__(
        self, learning_rates, losses, smoothing=0.98, diverged=False, seconds=0.0
    ):
        self.learning_rates = np.asarray(learning_rates, dtype="float64")
        self.losses = np.asarray(losses, dtype="float64")
        if self.learning_rates.shape != self.losses.shape:
            raise ValueError(
                "`learning_rates` and `losses` must have one entry per step. "
                f"Received {self.learning_rates.shape[0]} rates and "
                f"{self.losses.shape[0]} losses."
            )
        self.smoothing = float(smoothing)
        self.diverged = bool(diverged)
        self.seconds = float(seconds)
        self.smoothed_losses = smooth(self.losses, self.smoothing)

    @property
    def steps(self):
        """Number of training steps the test ran."""
        return int(self.losses.shape[0])

    def _finite(self):
        keep = np.isfinite(self.smoothed_losses)
        return self.learning_rates[keep], self.smoothed_losses[keep]

    def suggestion(self, method="valley", skip_start=0.1, skip_end=5, divisor=None):
        """A learning rate read off the smoothed loss curve.

        As fastai does, the first tenth of the curve (where the moving
        average is still settling and the rate too small to matter) and the
        last five points (where the loss blows up) are left out first.

        Args:
            method: String. `"valley"`: halfway along the longest descent of
                the loss (fastai's default); `"steepest"`: where the loss falls
                fastest; `"minimum"`: the rate at the lowest loss divided by
                `divisor` (one tenth by default, as fastai does).
            skip_start: Float in [0, 1). Fraction of the points left out at
                the start.
            skip_end: Integer >= 0. Points left out at the end.
            divisor: Number > 1 or `None`. With `method="minimum"` only: what
                the rate at the lowest loss is divided by. `None` means 10.

        Returns:
            Float, the suggested learning rate.
        """
        if method not in SUGGESTIONS:
            raise ValueError(
                f"`method` must be one of {sorted(SUGGESTIONS)}. Received: "
                f"method={method!r}"
            )
        if isinstance(skip_start, bool) or not 0 <= skip_start < 1:
            raise ValueError(
                "`skip_start` must be a fraction in [0, 1). Received: "
                f"skip_start={skip_start!r}"
            )
        if isinstance(skip_end, bool) or not isinstance(skip_end, int) or skip_end < 0:
            raise ValueError(
                f"`skip_end` must be an integer >= 0. Received: skip_end={skip_end!r}"
            )
        options = {}
        if divisor is not None:
            if method != "minimum":
                raise ValueError(
                    '`divisor` applies to method="minimum" only. Received: '
                    f"divisor={divisor!r} with method={method!r}"
                )
            if (
                isinstance(divisor, bool)
                or not isinstance(divisor, (int, float, np.integer, np.floating))
                or not np.isfinite(divisor)
                or divisor <= 1
            ):
                raise ValueError(
                    "`divisor` must be a finite number > 1 (the rate at the "
                    f"lowest loss is divided by it). Received: divisor={divisor!r}"
                )
            options["divisor"] = float(divisor)
        rates, losses = self._finite()
        first = int(len(rates) * skip_start)
        last = len(rates) - skip_end
        if last - first >= 2:  # too short a curve to trim: use all of it
            rates, losses = rates[first:last], losses[first:last]
        if rates.size == 0:
            raise ValueError(
                "The range test recorded no finite loss, so no rate can be "
                "suggested: lower `start` and run it again."
            )
        return float(SUGGESTIONS[method](rates, losses, **options))

    def plot(self, path=None, ax=None, method="valley", divisor=None):
        """Plot the loss against the learning rate (log scale), with a mark
        at the suggested rate.

        Needs matplotlib (the `report` extra).

        Args:
            path: String or `None`. When given, the figure is saved there
                (a PNG for a `.png` name).
            ax: A matplotlib `Axes` to draw on, or `None` for a new figure.
            method: String or `None`. The suggestion to mark (see
                `suggestion`); `None` marks none.
            divisor: Number > 1 or `None`. With `method="minimum"`, as in
                `suggestion`.

        Returns:
            The matplotlib `Axes`.
        """
        require("matplotlib", "plotting a range test")
        if ax is None:
            pyplot = require("matplotlib.pyplot")
            _, ax = pyplot.subplots(figsize=(6, 4))
        ax.plot(self.learning_rates, self.losses, color="0.75", lw=1, label="loss")
        ax.plot(self.learning_rates, self.smoothed_losses, color="C0", label="smoothed")
        if method is not None:
            rate = self.suggestion(method, divisor=divisor)
            index = int(np.argmin(np.abs(np.log(self.learning_rates / rate))))
            ax.scatter(
                [rate],
                [self.smoothed_losses[index]],
                color="C3",
                zorder=3,
                label=(
                    f"{method}: {rate:.2e}" if divisor is None
                    else f"{method} / {divisor:g}: {rate:.2e}"
                ),
            )
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("loss")
        rates, losses = self._finite()
        if losses.size:
            low, high = float(np.min(losses)), float(losses[0])
            span = max(high - low, 1e-12)
            ax.set_ylim(low - 0.1 * span, high + 0.5 * span)
        ax.legend()
        if path is not None:
            ax.figure.savefig(path, dpi=100, bbox_inches="tight")
        return ax

    def get_config(self):
        """The measured curve as plain lists, for JSON or `from_config`."""
        return {
            "learning_rates": self.learning_rates.tolist(),
            "losses": self.losses.tolist(),
            "smoothing": self.smoothing,
            "diverged": self.diverged,
            "seconds": self.seconds,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        rates = self.learning_rates
        span = f"{rates[0]:.1e} to {rates[-1]:.1e}" if rates.size else "no rates"
        return f"<LRFinderResult {self.steps} steps, {span}, diverged={self.diverged}>"
