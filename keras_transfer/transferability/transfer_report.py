"""TransferReport: did transfer help, compared with a baseline trained alike?"""

import math
import re

import keras
import numpy as np

from keras_transfer import _compat
from keras_transfer.api_export import keras_transfer_export

VERDICTS = ("positive", "neutral", "negative", "baseline_broken")
MODES = ("auto", "min", "max")
# Names Keras's `compile` accepts for a metric besides its registered name.
_KERAS_ALIASES = {"acc": "accuracy"}


def curve_of(run, metric, name):
    """The list of per-epoch values of `metric` in a History or a dict."""
    history = getattr(run, "history", run)
    if not isinstance(history, dict):
        raise ValueError(
            f"`{name}` must be a Keras History (what `model.fit` returns) or a "
            f"dict of per-epoch metric lists. Received: {type(run).__name__}"
        )
    if metric not in history:
        raise ValueError(
            f"`{name}` has no metric {metric!r}. Available metrics: "
            f"{sorted(history)}. Pass `metric=` with one of these (validation "
            "metrics appear when `fit` gets `validation_data`)."
        )
    values = [float(v) for v in np.asarray(history[metric], dtype=np.float64)]
    if not values:
        raise ValueError(f"`{name}[{metric!r}]` is empty: it needs >= 1 epoch.")
    if not all(math.isfinite(v) for v in values):
        raise ValueError(
            f"`{name}[{metric!r}]` must be finite. Received: {values}. "
            "The run diverged; lower its learning rate."
        )
    return values


def infer_higher_is_better(metric):
    """Whether `metric` (a History key) is better high, from what Keras knows.

    As Keras's monitor callbacks do in `mode="auto"`: a loss (`"loss"`,
    `"val_loss"`, `"<output>_loss"`) is better low; a Keras metric says its
    own direction (`keras.metrics.get`); a name Keras knows only as a loss
    (`keras.losses.get`) is better low. Anything else returns `None`: the
    caller must be told with `mode=`.
    """
    name = metric.removeprefix("val_")
    if name == "loss" or name.endswith("_loss"):
        return False
    for candidate in (name, re.sub(r"_\d+$", "", name)):  # "auc_1": Keras's
        candidate = _KERAS_ALIASES.get(candidate, candidate)
        direction = _compat.metric_direction(candidate)
        if direction is not None:
            return direction == "up"
        try:
            keras.losses.get(candidate)
        except (ValueError, TypeError):
            continue
        return False
    return None


def _higher_is_better(metric, mode):
    if mode not in MODES:
        raise ValueError(
            f"`mode` must be one of {MODES}. Received: mode={mode!r}"
        )
    if mode != "auto":
        return mode == "max"
    higher = infer_higher_is_better(metric)
    if higher is None:
        raise ValueError(
            f"Cannot tell whether {metric!r} is better high or low: Keras knows "
            "no loss or metric of that name. Pass mode='max' (higher is "
            "better) or mode='min' (lower is better). Received: "
            f"metric={metric!r}, mode='auto'"
        )
    return higher


def train_metric_of(metric):
    """The training-set name of a validation metric: 'val_accuracy' -> 'accuracy'."""
    return metric[4:] if metric.startswith("val_") else None


@keras_transfer_export("keras_transfer.transferability.TransferReport")
class TransferReport:
    """Compare a transfer run with a baseline run and say whether transfer helped.

    Reports the three measures of Torrey & Shavlik (2009) on one metric,
    each signed so that a positive number favours transfer:

    - jumpstart: the gain at the first epoch;
    - learning speed: the area between the two curves divided by the number
      of epochs (the mean gain over training), and the epoch at which each run
      first reaches `threshold` (by default the baseline's final value);
    - asymptotic gain: the gain at the last epoch.

    The verdict is `"positive"` when the asymptotic gain exceeds `tolerance`
    (or it is within tolerance and the mean gain exceeds it), `"negative"` in
    the mirror case, `"neutral"` otherwise. Only the epochs both runs have are
    compared.

    Before any verdict the baseline is checked, because a broken baseline makes
    any transfer look good: when its evaluation metric stays at chance level
    (`num_classes` given, accuracy-like metric) while its training metric is
    well above chance, or, with `same_data=True` (the baseline was evaluated on
    its own training data), when the training metric is far above the
    evaluation metric, the verdict is `"baseline_broken"` with an explanation.
    A typical cause is BatchNorm moving statistics that never settle when a
    BatchNorm network is trained from scratch on a few hundred images.

    Args:
        transfer: Keras `History` (what `model.fit` returns) or dict of
            per-epoch metric lists, for the model that starts from pretrained
            weights.
        baseline: Same, for the model trained without transfer (e.g. from
            random weights) on the same data for the same epochs.
        metric: String. The metric to compare, e.g. `"val_accuracy"`.
        mode: One of `"auto"`, `"min"`, `"max"`, as in Keras's
            `EarlyStopping`: whether `metric` is better low (`"min"`) or high
            (`"max"`). `"auto"` uses what Keras knows: losses are better low,
            and a Keras metric (`"accuracy"`, `"auc"`, `"kl_divergence"`,
            `"hinge"`, ...) says its own direction; for any other name
            `"auto"` is an error that asks for `mode=`.
        tolerance: Float >= 0. Gains within +-tolerance (metric units) count
            as no difference. Default 0.01.
        threshold: Optional float. Performance level for "epochs to
            threshold". Default: the baseline's final value.
        num_classes: Optional integer. Number of classes, for the chance-level
            check of accuracy-like metrics.
        same_data: Boolean. Whether the baseline's `metric` was measured on
            its own training data (then training and evaluation must agree).
        broken_gap: Float. How far (metric units) the training metric may be
            above the evaluation metric (with `same_data=True`), or above
            the same metric measured in inference mode on the training data,
            or above chance while evaluation is at chance, before the baseline
            counts as broken. Default 0.25.
        baseline_train: Optional list. The baseline's per-epoch training
            metric; by default read from `baseline` (`"accuracy"` for
            `"val_accuracy"`).
        baseline_train_inference: Optional list. The baseline's metric
            measured in inference mode on its own training data after each
            epoch (`BaselineRun` records it). Far below the training metric
            means training-mode and inference-mode outputs disagree.

    Examples:

        >>> transfer = {"val_accuracy": [0.60, 0.70, 0.75, 0.78]}
        >>> baseline = {"val_accuracy": [0.20, 0.40, 0.55, 0.65]}
        >>> report = TransferReport(transfer, baseline, metric="val_accuracy")
        >>> report.verdict
        'positive'
        >>> round(report.jumpstart, 2), round(report.asymptotic_gain, 2)
        (0.4, 0.13)
        >>> report.epochs_to_threshold  # reaching the baseline's final 0.65
        {'transfer': 2, 'baseline': 4}
    """

    def __init__(
        self,
        transfer,
        baseline,
        metric="val_accuracy",
        mode="auto",
        tolerance=0.01,
        threshold=None,
        num_classes=None,
        same_data=False,
        broken_gap=0.25,
        baseline_train=None,
        baseline_train_inference=None,
    ):
        if not isinstance(metric, str) or not metric:
            raise ValueError(
                f"`metric` must be a metric name such as 'val_accuracy'. "
                f"Received: metric={metric!r}"
            )
        if not isinstance(tolerance, (int, float)) or tolerance < 0:
            raise ValueError(
                f"`tolerance` must be a float >= 0. Received: tolerance={tolerance}"
            )
        if num_classes is not None and (
            not isinstance(num_classes, (int, np.integer)) or num_classes < 2
        ):
            raise ValueError(
                "`num_classes` must be an integer >= 2 or None. Received: "
                f"num_classes={num_classes}"
            )
        if not isinstance(broken_gap, (int, float)) or broken_gap <= 0:
            raise ValueError(
                f"`broken_gap` must be a float > 0. Received: broken_gap={broken_gap}"
            )
        self.metric = metric
        self.higher_is_better = _higher_is_better(metric, mode)
        self.mode = "max" if self.higher_is_better else "min"
        self.tolerance = float(tolerance)
        self.num_classes = None if num_classes is None else int(num_classes)
        self.same_data = bool(same_data)
        self.broken_gap = float(broken_gap)
        self.transfer_curve = curve_of(transfer, metric, "transfer")
        self.baseline_curve = curve_of(baseline, metric, "baseline")
        # The baseline's training-set curve, for the broken-baseline check.
        train_name = train_metric_of(metric)
        history = getattr(baseline, "history", baseline)
        if baseline_train is not None:
            self.baseline_train_curve = [float(v) for v in baseline_train]
        elif train_name and isinstance(history, dict) and train_name in history:
            self.baseline_train_curve = curve_of(baseline, train_name, "baseline")
        else:
            self.baseline_train_curve = None
        self.baseline_train_inference_curve = (
            None
            if baseline_train_inference is None
            else [float(v) for v in baseline_train_inference]
        )
        self.threshold = (
            float(self.baseline_curve[-1]) if threshold is None else float(threshold)
        )
        self._compute()

    # ------------------------------------------------------------------
    def _sign(self):
        return 1.0 if self.higher_is_better else -1.0

    def _compute(self):
        s = self._sign()
        epochs = min(len(self.transfer_curve), len(self.baseline_curve))
        self.epochs = epochs
        t = np.asarray(self.transfer_curve[:epochs])
        b = np.asarray(self.baseline_curve[:epochs])
        self.jumpstart = float(s * (t[0] - b[0]))
        self.asymptotic_gain = float(s * (t[-1] - b[-1]))
        self.area_gain = float(s * np.mean(t - b))
        self.epochs_to_threshold = {
            "transfer": self._first_epoch_reaching(t),
            "baseline": self._first_epoch_reaching(b),
        }
        self.baseline_problem = self._check_baseline(b)
        if self.baseline_problem:
            self.verdict = "baseline_broken"
            return
        tol = self.tolerance
        if self.asymptotic_gain > tol or (
            abs(self.asymptotic_gain) <= tol and self.area_gain > tol
        ):
            self.verdict = "positive"
        elif self.asymptotic_gain < -tol or (
            abs(self.asymptotic_gain) <= tol and self.area_gain < -tol
        ):
            self.verdict = "negative"
        else:
            self.verdict = "neutral"

    def _first_epoch_reaching(self, curve):
        s = self._sign()
        hits = np.flatnonzero(s * (curve - self.threshold) >= -1e-12)
        return int(hits[0]) + 1 if hits.size else None

    def _check_baseline(self, b):
        train = self.baseline_train_curve
        s = self._sign()
        accuracy_like = self.higher_is_better and "acc" in self.metric.lower()
        if self.num_classes and accuracy_like:
            chance = 1.0 / self.num_classes
            margin = min(0.1, max(0.03, 0.5 * chance))
            at_chance = float(np.max(b)) <= chance + margin
            if at_chance and train is not None:
                fitted = float(train[min(len(train), self.epochs) - 1])
                if fitted - chance >= self.broken_gap:
                    return (
                        f"the baseline's {self.metric} stays at chance level "
                        f"(best {np.max(b):.3f}, chance {chance:.3f} for "
                        f"{self.num_classes} classes) while its training metric "
                        f"reaches {fitted:.3f}. It fits its training data but "
                        "does not generalise at all; a typical cause is a "
                        "BatchNorm network trained from scratch on little data, "
                        "whose moving statistics never settle. Any gain measured "
                        "against it is not a transfer gain: train a sounder "
                        "baseline (fewer BatchNorm layers, freeze BatchNorm, "
                        "more data or epochs)."
                    )
            if at_chance and train is None:
                return (
                    f"the baseline's {self.metric} never rises above chance level "
                    f"(best {np.max(b):.3f}, chance {chance:.3f} for "
                    f"{self.num_classes} classes): it learned nothing, so a "
                    "comparison with it says nothing about transfer. Check its "
                    "training (learning rate, BatchNorm statistics, epochs)."
                )
        inference = self.baseline_train_inference_curve
        if train is not None and inference:
            n = min(len(train), len(inference), self.epochs)
            gap = s * (train[n - 1] - inference[n - 1])
            if gap > self.broken_gap:
                return (
                    f"on its own training data the baseline scores "
                    f"{train[n - 1]:.3f} in training mode but {inference[n - 1]:.3f} "
                    f"in inference mode (gap {gap:.3f} > broken_gap="
                    f"{self.broken_gap}). Its inference-mode outputs are not "
                    "what it learned, typically because BatchNorm moving "
                    "statistics have not settled (few images, few steps); "
                    "comparisons with it are not sound. Train a sounder "
                    "baseline (freeze or remove BatchNorm, more steps)."
                )
        if self.same_data and train is not None:
            n = min(len(train), self.epochs)
            gap = s * (train[n - 1] - b[n - 1])
            if gap > self.broken_gap:
                return (
                    f"on the same data the baseline's training metric "
                    f"({train[n - 1]:.3f}) and its evaluation {self.metric} "
                    f"({b[n - 1]:.3f}) disagree by {gap:.3f} (> broken_gap="
                    f"{self.broken_gap}). Training-mode and inference-mode "
                    "outputs differ, typically because BatchNorm moving "
                    "statistics have not settled; the baseline is not sound."
                )
        return None

    # ------------------------------------------------------------------
    def summary(self):
        """A readable multi-line summary of the indicators and the verdict."""
        better = "higher" if self.higher_is_better else "lower"
        reach = self.epochs_to_threshold
        lines = [
            f"Transfer report on {self.metric} ({better} is better, "
            f"{self.epochs} epochs compared)",
            f"  transfer: first {self.transfer_curve[0]:.4f}, final "
            f"{self.transfer_curve[self.epochs - 1]:.4f}",
            f"  baseline: first {self.baseline_curve[0]:.4f}, final "
            f"{self.baseline_curve[self.epochs - 1]:.4f}",
            f"  jumpstart (gain at epoch 1):        {self.jumpstart:+.4f}",
            f"  learning speed (mean gain / epoch): {self.area_gain:+.4f}",
            f"  epochs to reach {self.threshold:.4f}: transfer "
            f"{_epoch_text(reach['transfer'])}, baseline "
            f"{_epoch_text(reach['baseline'])}",
            f"  asymptotic gain (final epoch):      {self.asymptotic_gain:+.4f}",
        ]
        if self.verdict == "baseline_broken":
            lines.append(
                "  verdict: baseline_broken - no verdict on transfer: "
                + self.baseline_problem
            )
        else:
            lines.append(
                f"  verdict: {self.verdict} transfer (tolerance {self.tolerance})"
            )
        return "\n".join(lines)

    def __str__(self):
        return self.summary()

    def __repr__(self):
        return (
            f"<TransferReport metric={self.metric!r} verdict={self.verdict!r} "
            f"jumpstart={self.jumpstart:+.4g} area_gain={self.area_gain:+.4g} "
            f"asymptotic_gain={self.asymptotic_gain:+.4g}>"
        )

    def to_dict(self):
        """Everything needed to rebuild the report, plus the indicators."""
        return {
            "metric": self.metric,
            "mode": self.mode,
            "higher_is_better": self.higher_is_better,
            "tolerance": self.tolerance,
            "threshold": self.threshold,
            "num_classes": self.num_classes,
            "same_data": self.same_data,
            "broken_gap": self.broken_gap,
            "transfer_curve": list(self.transfer_curve),
            "baseline_curve": list(self.baseline_curve),
            "baseline_train_curve": (
                None
                if self.baseline_train_curve is None
                else list(self.baseline_train_curve)
            ),
            "baseline_train_inference_curve": (
                None
                if self.baseline_train_inference_curve is None
                else list(self.baseline_train_inference_curve)
            ),
            "epochs": self.epochs,
            "jumpstart": self.jumpstart,
            "area_gain": self.area_gain,
            "asymptotic_gain": self.asymptotic_gain,
            "epochs_to_threshold": dict(self.epochs_to_threshold),
            "verdict": self.verdict,
            "baseline_problem": self.baseline_problem,
        }

    @classmethod
    def from_dict(cls, data):
        """Rebuild a report from `to_dict()` output (indicators are recomputed)."""
        metric = data["metric"]
        return cls(
            {metric: data["transfer_curve"]},
            {metric: data["baseline_curve"]},
            metric=metric,
            mode=data.get("mode") or ("max" if data["higher_is_better"] else "min"),
            tolerance=data["tolerance"],
            threshold=data["threshold"],
            num_classes=data["num_classes"],
            same_data=data["same_data"],
            broken_gap=data["broken_gap"],
            baseline_train=data.get("baseline_train_curve"),
            baseline_train_inference=data.get("baseline_train_inference_curve"),
        )

    def get_config(self):
        config = self.to_dict()
        for key in (
            "epochs", "jumpstart", "area_gain", "asymptotic_gain",
            "epochs_to_threshold", "verdict", "baseline_problem",
        ):
            config.pop(key)
        return config

    @classmethod
    def from_config(cls, config):
        return cls.from_dict(config)

    def plot(self, path):
        """Save a PNG of both curves with the three indicators marked.

        Args:
            path: String. Where to write the PNG.

        Returns:
            `path`.
        """
        from keras_transfer.utils import require

        require("matplotlib")
        # A bare Figure renders with Agg and leaves the pyplot backend alone.
        from matplotlib.figure import Figure

        n = self.epochs
        x = np.arange(1, n + 1)
        t = np.asarray(self.transfer_curve[:n])
        b = np.asarray(self.baseline_curve[:n])
        fig = Figure(figsize=(7, 4.5), dpi=110)
        ax = fig.add_subplot(1, 1, 1)
        ax.plot(x, t, "o-", color="tab:blue", label="transfer")
        ax.plot(x, b, "s-", color="tab:orange", label="baseline")
        ax.fill_between(
            x, t, b, color="tab:green", alpha=0.15,
            label=f"learning speed: mean gain {self.area_gain:+.3f}/epoch",
        )
        ax.annotate(
            "", xy=(1, t[0]), xytext=(1, b[0]),
            arrowprops={"arrowstyle": "->", "color": "tab:purple", "lw": 2},
        )
        ax.text(1.05, (t[0] + b[0]) / 2, f"jumpstart {self.jumpstart:+.3f}",
                color="tab:purple", va="center")
        ax.annotate(
            "", xy=(n, t[-1]), xytext=(n, b[-1]),
            arrowprops={"arrowstyle": "->", "color": "tab:red", "lw": 2},
        )
        ax.text(n - 0.05, (t[-1] + b[-1]) / 2,
                f"asymptotic gain {self.asymptotic_gain:+.3f}",
                color="tab:red", va="center", ha="right")
        ax.axhline(self.threshold, color="gray", ls=":", lw=1,
                   label=f"threshold {self.threshold:.3f}")
        for key, color in (("transfer", "tab:blue"), ("baseline", "tab:orange")):
            epoch = self.epochs_to_threshold[key]
            if epoch is not None:
                ax.axvline(epoch, color=color, ls="--", lw=0.8)
        title = f"{self.metric}: verdict {self.verdict}"
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_ylabel(self.metric)
        ax.set_xticks(x if n <= 20 else np.linspace(1, n, 10).round())
        ax.legend(loc="best", fontsize="small")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(path)
        return path


def _epoch_text(epoch):
    return "never" if epoch is None else f"epoch {epoch}"
