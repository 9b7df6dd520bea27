"""`WeightAveraging`: stochastic weight averaging or an EMA of the weights."""

import numbers
import warnings

import keras
import numpy as np

from keras_transfer import _compat
from keras_transfer.api_export import keras_transfer_export
from keras_transfer.averaging.recompute_batch_norm import recompute_batch_norm

METHODS = ("swa", "ema")


@keras_transfer_export("keras_transfer.callbacks.WeightAveraging")
class WeightAveraging(keras.callbacks.Callback):
    """Average the weights along the end of training, and keep the average.

    - `method="swa"` (stochastic weight averaging, Izmailov et al., 2018):
      the plain mean of the weights at the end of each epoch from
      `start_epoch` on.
    - `method="ema"`: an exponential moving average of the weights, updated
      after every batch from `start_epoch` on (bias-corrected, so the first
      steps do not pull it towards zero).

    At the end of training the model gets the averaged weights. BatchNorm
    layers that train no longer match averaged weights, so their moving
    statistics are then recomputed on `batch_norm_data` (see
    `keras_transfer.averaging.recompute_batch_norm`); frozen BatchNorm
    layers keep theirs. Without `batch_norm_data`, trainable BatchNorm
    layers keep the average of their moving statistics, with a warning.

    Every weight of the model is averaged (trainable or not, so a schedule
    that unfreezes layers during the fit is fine); frozen weights stay as
    they are. The last weights before averaging are kept in
    `final_weights`, the average in `averaged_weights`, so the two can be
    compared or interpolated (`keras_transfer.averaging.interpolate`).

    Args:
        method: `"swa"` or `"ema"`.
        start_epoch: Integer or `None`. First epoch (0-based) that counts;
            a negative value counts from the end (`-3`: the last three
            epochs). Default: the last quarter of the epochs (at least two)
            for `"swa"`, every epoch for `"ema"`.
        decay: Float in (0, 1). Decay of the `"ema"` average per batch.
        batch_norm_data: Training inputs (array, `(x, y)` arrays or a dataset)
            to recompute BatchNorm statistics on, or `None`. Not part of the
            config.
        batch_norm_steps: Integer or `None`. At most this many batches of
            `batch_norm_data`.
        verbose: 0 or 1.

    Examples:

        >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
        >>> model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        >>> x, y = np.random.rand(32, 3), np.random.rand(32, 1)
        >>> swa = WeightAveraging(method="swa", start_epoch=-3)
        >>> _ = model.fit(x, y, epochs=5, callbacks=[swa], verbose=0)
        >>> swa.num_averaged
        3
        >>> np.allclose(model.get_weights()[0], swa.averaged_weights[0])
        True
    """

    def __init__(
        self,
        method="swa",
        start_epoch=None,
        decay=0.99,
        batch_norm_data=None,
        batch_norm_steps=None,
        verbose=0,
    ):
        super().__init__()
        if method not in METHODS:
            raise ValueError(
                f"`method` must be one of {METHODS}. Received: method={method!r}"
            )
        if start_epoch is not None and (
            isinstance(start_epoch, bool) or not isinstance(start_epoch, int)
        ):
            raise ValueError(
                "`start_epoch` must be an integer (negative: counted from the "
                f"end) or None. Received: start_epoch={start_epoch!r}"
            )
        if isinstance(decay, bool) or not (
            isinstance(decay, numbers.Real) and 0 < decay < 1
        ):
            raise ValueError(
                f"`decay` must be a float in (0, 1). Received: decay={decay!r}"
            )
        if batch_norm_steps is not None and (
            isinstance(batch_norm_steps, bool)
            or not isinstance(batch_norm_steps, int)
            or batch_norm_steps < 1
        ):
            raise ValueError(
                "`batch_norm_steps` must be an integer >= 1 or None. Received: "
                f"batch_norm_steps={batch_norm_steps!r}"
            )
        self.method = method
        self.start_epoch = start_epoch
        self.decay = float(decay)
        self.batch_norm_data = batch_norm_data
        self.batch_norm_steps = batch_norm_steps
        self.verbose = verbose
        self._reset()

    def _reset(self):
        self.averaged_weights = None
        self.final_weights = None
        self.num_averaged = 0
        self._sum = None
        self._first = None

    def _first_epoch(self, epochs):
        if self.start_epoch is None:
            if self.method == "ema":
                return 0
            return max(0, min(epochs - 2, epochs - max(2, epochs // 4)))
        if self.start_epoch < 0:
            return epochs + self.start_epoch
        return self.start_epoch

    def on_train_begin(self, logs=None):
        self._reset()
        epochs = int(self.params.get("epochs") or 0)
        first = self._first_epoch(epochs)
        needed = 2 if self.method == "swa" else 1
        if first < 0 or epochs - first < needed:
            raise ValueError(
                f"`start_epoch` leaves {max(0, epochs - max(first, 0))} epoch(s) "
                f"to average out of the fit's {epochs} (`{self.method}` needs at "
                f"least {needed}). Received: start_epoch={self.start_epoch}, "
                f"epochs={epochs}. Train for more epochs or start averaging "
                "earlier."
            )
        self._first = first
        self._float = [
            np.issubdtype(np.dtype(w.dtype), np.floating) for w in self.model.weights
        ]

    def _accumulate(self):
        weights = self.model.get_weights()
        self.num_averaged += 1
        if self._sum is None:
            if self.method == "swa":
                self._sum = [w.astype("float64") for w in weights]
                return
            self._sum = [np.zeros(w.shape, "float64") for w in weights]
        n = self.num_averaged
        for i, (total, w) in enumerate(zip(self._sum, weights)):
            if not self._float[i]:
                self._sum[i] = w.astype("float64")
            elif self.method == "swa":
                total += (w - total) / n  # running mean
            else:
                total *= self.decay
                total += (1.0 - self.decay) * w

    def on_train_batch_end(self, batch, logs=None):
        if self.method == "ema" and self._epoch >= self._first:
            self._accumulate()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if self.method == "swa" and epoch >= self._first:
            self._accumulate()

    def _average(self):
        if self.method == "swa":
            return self._sum
        # Bias correction: the average starts from zero, so after n updates
        # its weights sum to 1 - decay ** n.
        correction = 1.0 - self.decay**self.num_averaged
        return [
            total / correction if is_float else total
            for total, is_float in zip(self._sum, self._float)
        ]

    def on_train_end(self, logs=None):
        if self._sum is None:
            return
        self.final_weights = self.model.get_weights()
        averaged = [
            total.astype(w.dtype) if is_float else w
            for total, w, is_float in zip(
                self._average(), self.final_weights, self._float
            )
        ]
        self.model.set_weights(averaged)
        trainable_bn = [
            layer
            for layer in _compat.flatten_layers(self.model)
            if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable
        ]
        if trainable_bn and self.batch_norm_data is not None:
            recompute_batch_norm(
                self.model, self.batch_norm_data, steps=self.batch_norm_steps
            )
        elif trainable_bn:
            warnings.warn(
                f"WeightAveraging: {len(trainable_bn)} BatchNorm layer(s) train, "
                "and their moving statistics are the average of the recorded "
                "ones, not those of the averaged weights. Pass "
                "`batch_norm_data=` (training inputs) to recompute them.",
                stacklevel=2,
            )
        self.averaged_weights = self.model.get_weights()
        if self.verbose:
            print(
                f"WeightAveraging ({self.method}): the model now holds the "
                f"average of {self.num_averaged} "
                f"{'epochs' if self.method == 'swa' else 'steps'}."
            )

    def get_config(self):
        return {
            "method": self.method,
            "start_epoch": self.start_epoch,
            "decay": self.decay,
            "batch_norm_steps": self.batch_norm_steps,
            "verbose": self.verbose,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
