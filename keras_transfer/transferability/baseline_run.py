"""BaselineRun: train a from-scratch baseline alongside the transfer model."""

import keras

from keras_transfer.api_export import keras_transfer_export
from keras_transfer.transferability.transfer_report import TransferReport
from keras_transfer.utils.progress import progress_verbose


@keras_transfer_export("keras_transfer.transferability.BaselineRun")
class BaselineRun(keras.callbacks.Callback):
    """Train a baseline model epoch by epoch next to the model being fitted.

    A transfer gain only means something against a baseline trained on the
    same data for the same epochs. Add this callback to the `fit` of the
    transfer model: at the start of training it builds the baseline with
    `build_baseline()` (a function returning a compiled model, e.g. the same
    architecture with random weights), and at the end of every epoch it fits
    the baseline for one epoch on `x`/`y` (and evaluates it on
    `validation_data`). Both runs' metrics are recorded; `report()` turns them
    into a `TransferReport`. The baseline is built under the fitted model's
    distribution strategy.

    Args:
        build_baseline: Callable with no arguments returning a compiled
            `keras.Model`: the baseline. Called once per `fit`.
        x: Training inputs for the baseline (array, dict, or a
            `tf.data.Dataset` of `(x, y)` batches, then leave `y` as None).
            Use the same data as the transfer model.
        y: Training targets, or None with a dataset.
        validation_data: Optional `(x_val, y_val)` tuple or dataset, evaluated
            after each baseline epoch (gives the `val_*` metrics).
        batch_size: Integer. Batch size for array inputs. Default 32.
        check_inference: Boolean. After each epoch also evaluate the baseline
            in inference mode on its training data (one more pass over it) and
            record the metrics as `"inference_<name>"`. `report()` uses them
            to detect a broken baseline (e.g. BatchNorm statistics that never
            settle). Default True.
        verbose: Integer. Verbosity of the baseline's `fit`. Default 0.

    Attributes:
        baseline_model: The baseline model of the last `fit`.
        baseline_history: Dict of per-epoch metric lists of the baseline.
        transfer_history: Dict of per-epoch metric lists of the fitted model.

    Examples:

        >>> x = np.random.rand(32, 4).astype("float32")
        >>> y = (x.sum(axis=1) > 2).astype("int32")
        >>> def build():
        ...     model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
        ...     model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(
        ...         from_logits=True), metrics=["accuracy"])
        ...     return model
        >>> run = BaselineRun(build, x, y, validation_data=(x, y), batch_size=8)
        >>> model = build()
        >>> _ = model.fit(x, y, epochs=2, batch_size=8, validation_data=(x, y),
        ...               callbacks=[run], verbose=0)
        >>> len(run.baseline_history["val_accuracy"])
        2
        >>> run.report(metric="val_loss").verdict in ("positive", "neutral", "negative")
        True
    """

    def __init__(
        self,
        build_baseline,
        x=None,
        y=None,
        validation_data=None,
        batch_size=32,
        check_inference=True,
        verbose=0,
    ):
        super().__init__()
        if not callable(build_baseline):
            raise ValueError(
                "`build_baseline` must be a function that returns a compiled "
                f"keras.Model. Received: {build_baseline!r}"
            )
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(
                f"`batch_size` must be a positive integer. Received: "
                f"batch_size={batch_size}"
            )
        self.build_baseline = build_baseline
        self.x = x
        self.y = y
        self.validation_data = validation_data
        self.batch_size = batch_size
        self.check_inference = bool(check_inference)
        self.verbose = verbose
        self.baseline_model = None
        self.baseline_history = {}
        self.transfer_history = {}

    def on_train_begin(self, logs=None):
        if self.x is None:
            raise ValueError(
                "`x` must be the baseline's training data (the same as the "
                "transfer model's). Received: x=None. Pass `x=` (and `y=`) "
                "when creating BaselineRun."
            )
        self.baseline_history = {}
        self.transfer_history = {}
        strategy = getattr(self.model, "distribute_strategy", None)
        if strategy is not None:
            with strategy.scope():
                baseline = self.build_baseline()
        else:
            baseline = self.build_baseline()
        if not isinstance(baseline, keras.Model):
            raise ValueError(
                "`build_baseline` must return a keras.Model. Received: "
                f"{type(baseline).__name__}"
            )
        if not getattr(baseline, "compiled", False):
            raise ValueError(
                "`build_baseline` must return a compiled model (call "
                "`model.compile(...)` inside it)."
            )
        self.baseline_model = baseline

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            self.transfer_history.setdefault(key, []).append(float(value))
        is_array = not hasattr(self.x, "element_spec")
        history = self.baseline_model.fit(
            self.x,
            self.y,
            batch_size=self.batch_size if is_array else None,
            epochs=1,
            validation_data=self.validation_data,
            shuffle=is_array,
            verbose=progress_verbose(self.verbose),
        )
        for key, values in history.history.items():
            self.baseline_history.setdefault(key, []).append(float(values[-1]))
        if self.check_inference:
            results = self.baseline_model.evaluate(
                self.x,
                self.y,
                batch_size=self.batch_size if is_array else None,
                verbose=0,
                return_dict=True,
            )
            for key, value in results.items():
                self.baseline_history.setdefault(f"inference_{key}", []).append(
                    float(value)
                )

    def report(self, metric="val_accuracy", **kwargs):
        """A `TransferReport` of the fitted model against the baseline.

        Args:
            metric: String. The metric to compare.
            **kwargs: Passed to `TransferReport` (`tolerance`,
                `num_classes`, ...).

        Returns:
            A `TransferReport`.
        """
        if not self.baseline_history:
            raise ValueError(
                "No epochs recorded yet: pass this callback to `model.fit` "
                "before calling `report()`."
            )
        train_name = metric[4:] if metric.startswith("val_") else metric
        inference = self.baseline_history.get(f"inference_{train_name}")
        if inference is not None:
            kwargs.setdefault("baseline_train_inference", inference)
        return TransferReport(
            self.transfer_history, self.baseline_history, metric=metric, **kwargs
        )

    def get_config(self):
        return {
            "build_baseline": keras.saving.serialize_keras_object(
                self.build_baseline
            ),
            "batch_size": self.batch_size,
            "check_inference": self.check_inference,
            "verbose": self.verbose,
        }

    @classmethod
    def from_config(cls, config, x=None, y=None, validation_data=None):
        """Rebuild from `get_config()`; the data is not part of the config."""
        config = dict(config)
        build = keras.saving.deserialize_keras_object(config.pop("build_baseline"))
        return cls(build, x=x, y=y, validation_data=validation_data, **config)
