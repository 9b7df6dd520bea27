"""Warn during `fit` when domain adaptation is failing, without target labels."""

import warnings

import keras

from keras_transfer.api_export import keras_transfer_export
from keras_transfer.utils.checks import check_fraction


class AdaptationWarning(UserWarning):
    """Domain adaptation looks like it is failing (collapse or source drop)."""


@keras_transfer_export("keras_transfer.callbacks.AdaptationMonitor")
class AdaptationMonitor(keras.callbacks.Callback):
    """Warn when target predictions collapse or source accuracy falls.

    Reads, at the end of each epoch, the logs that `DomainAdaptationModel`
    writes without any target label: `target_entropy` (entropy of the mean
    target prediction over the epoch, divided by `log(num_classes)`),
    `target_top_class_share` (share of target samples predicted as the most
    frequent class) and `source_accuracy`. It warns (an `AdaptationWarning`,
    once per `fit` and per kind) when

    - the target predictions collapse: `target_entropy < min_target_entropy`
      (for 10 classes, 0.5 means about 3 classes' worth of predictions);
    - source accuracy falls far below its best epoch so far:
      `best - source_accuracy > max_source_accuracy_drop`.

    A method that drives the target predictions onto one class, or trades
    the source task away, is then visible although no target label exists.
    `DomainAdaptationModel.fit()` adds one with these defaults unless the
    callbacks already hold one (or `monitor=False`). The state is reset in
    `on_train_begin`; `warnings_seen` lists what fired.

    Args:
        min_target_entropy: Float in (0, 1). Collapse threshold of
            `target_entropy`. Defaults to `0.5`.
        max_source_accuracy_drop: Float in (0, 1). Largest tolerated fall of
            `source_accuracy` below its best epoch. Defaults to `0.2`.

    Examples:

        >>> import keras_transfer
        >>> monitor = keras_transfer.callbacks.AdaptationMonitor()
        >>> monitor.on_train_begin()
        >>> monitor.on_epoch_end(0, {"target_entropy": 0.9, "source_accuracy": 0.8})
        >>> import warnings
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     monitor.on_epoch_end(1, {"target_entropy": 0.1,
        ...                              "target_top_class_share": 0.97,
        ...                              "source_accuracy": 0.4})
        >>> monitor.warnings_seen
        ['collapse', 'source_accuracy']
    """

    def __init__(self, min_target_entropy=0.5, max_source_accuracy_drop=0.2):
        super().__init__()
        self.min_target_entropy = check_fraction(
            "min_target_entropy", min_target_entropy
        )
        self.max_source_accuracy_drop = check_fraction(
            "max_source_accuracy_drop", max_source_accuracy_drop
        )
        self.on_train_begin()

    def on_train_begin(self, logs=None):
        self.best_source_accuracy = None
        self.warnings_seen = []

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        entropy = logs.get("target_entropy")
        if (
            entropy is not None
            and float(entropy) < self.min_target_entropy
            and "collapse" not in self.warnings_seen
        ):
            self.warnings_seen.append("collapse")
            share = logs.get("target_top_class_share")
            share_text = "" if share is None else (
                f"; {float(share):.0%} of target samples get the most frequent class"
            )
            warnings.warn(
                f"Epoch {epoch + 1}: the target predictions collapse onto few "
                f"classes (target_entropy={float(entropy):.3f} < "
                f"min_target_entropy={self.min_target_entropy}{share_text}). "
                "The adaptation method may be destroying the model: lower its "
                "weight or `lambda_`, or try another method.",
                AdaptationWarning,
                stacklevel=2,
            )
        accuracy = logs.get("source_accuracy")
        if accuracy is None:
            return
        accuracy = float(accuracy)
        best = self.best_source_accuracy
        if (
            best is not None
            and best - accuracy > self.max_source_accuracy_drop
            and "source_accuracy" not in self.warnings_seen
        ):
            self.warnings_seen.append("source_accuracy")
            warnings.warn(
                f"Epoch {epoch + 1}: source accuracy fell to {accuracy:.3f}, "
                f"{best - accuracy:.3f} below its best epoch ({best:.3f}; "
                f"max_source_accuracy_drop={self.max_source_accuracy_drop}). "
                "The adaptation term is overriding the task: lower its weight "
                "or `lambda_`.",
                AdaptationWarning,
                stacklevel=2,
            )
        self.best_source_accuracy = accuracy if best is None else max(best, accuracy)

    def get_config(self):
        return {
            "min_target_entropy": self.min_target_entropy,
            "max_source_accuracy_drop": self.max_source_accuracy_drop,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
