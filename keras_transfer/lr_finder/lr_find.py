"""`lr_find`: the learning-rate range test, on one standard `model.fit`."""

import math
import numbers
import sys
import time

import keras
import numpy as np

from keras_transfer import _compat
from keras_transfer.api_export import keras_transfer_export
from keras_transfer.lr_finder.lr_finder_result import LRFinderResult
from keras_transfer.utils.backend import strategy_scope


@keras_transfer_export("keras_transfer.lr_find")
def lr_find(
    model,
    data,
    start=1e-7,
    end=10.0,
    steps=100,
    *,
    batch_size=None,
    smoothing=0.98,
    stop_factor=4.0,
    verbose="auto",
):
    """Learning-rate range test: train with a rate rising from `start` to
    `end` and record the loss (Smith, 2017; fastai's `lr_find`).

    Runs ONE standard `model.fit` of the compiled model, one batch per step,
    with the learning rate growing exponentially from `start` to `end` over
    `steps` steps, and stops early once the smoothed loss exceeds
    `stop_factor` times its lowest value (or is not finite). Read a rate off
    the result with `result.suggestion()` and look at `result.plot()`.

    Afterwards the model is exactly as before, bit for bit: its weights and
    every other variable (BatchNorm moving statistics, random-seed states),
    the optimizer's variables (moments, `iterations`), its learning rate
    (a constant or a `LearningRateSchedule` object, the same object), the
    trainable flags and `model.history`. An optimizer not built yet is built
    first, on `model.trainable_variables`, as the first `fit` would do.

    With `keras_transfer.optimizers.DiscriminativeLR` the base rate is
    scanned and every group keeps its factor; under a `tf.distribute`
    strategy the test runs on all replicas, like any `fit`.

    Args:
        model: A compiled `keras.Model`.
        data: What `model.fit` takes as `x`: a tuple `(x, y)` or
            `(x, y, sample_weight)` of arrays, a `tf.data.Dataset` of batches
            (repeated as needed) or a `keras.utils.PyDataset`.
        start: Float > 0. First learning rate.
        end: Float > `start`. Last learning rate.
        steps: Integer >= 10. Number of training steps (batches).
        batch_size: Integer. Batch size for array `data` (default 32).
        smoothing: Float in [0, 1). Factor of the moving average of the loss.
        stop_factor: Float > 1, or `None` never to stop early.
        verbose: `"auto"`, 0 or 1. A progress bar (one plain line every tenth
            of the test when the output is not a terminal).

    Returns:
        A `keras_transfer.lr_finder.LRFinderResult`.

    Examples:

        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
        >>> model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
        >>> x = np.random.rand(64, 4)
        >>> y = x @ np.array([[1.0], [-2.0], [0.5], [3.0]])
        >>> before = model.get_weights()
        >>> result = lr_find(model, (x, y), steps=30, batch_size=8, verbose=0)
        >>> rate = result.suggestion()
        >>> 1e-7 <= rate <= 10.0
        True
        >>> all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
        True
        >>> round(float(model.optimizer.learning_rate), 6)
        0.01
    """
    if not isinstance(model, keras.Model):
        raise ValueError(f"`model` must be a keras.Model. Received: model={model!r}")
    if getattr(model, "optimizer", None) is None or not getattr(
        model, "compiled", True
    ):
        raise ValueError(
            "`model` must be compiled (with the optimizer and loss to test): "
            "call model.compile(...) first. Received: a model that is not "
            "compiled."
        )
    start = _check_rate("start", start)
    end = _check_rate("end", end)
    if start >= end:
        raise ValueError(
            "`start` must be smaller than `end` (the rate rises from start "
            f"to end). Received: start={start}, end={end}"
        )
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral):
        raise ValueError(f"`steps` must be an integer >= 10. Received: steps={steps!r}")
    if steps < 10:
        raise ValueError(
            "`steps` must be >= 10 for a loss curve to read a rate from. "
            f"Received: steps={steps}"
        )
    if isinstance(smoothing, bool) or not (
        isinstance(smoothing, numbers.Real) and 0 <= smoothing < 1
    ):
        raise ValueError(
            f"`smoothing` must be a float in [0, 1). Received: smoothing={smoothing!r}"
        )
    if stop_factor is not None and (
        isinstance(stop_factor, bool)
        or not isinstance(stop_factor, numbers.Real)
        or not stop_factor > 1
    ):
        raise ValueError(
            "`stop_factor` must be a float > 1 or None. Received: "
            f"stop_factor={stop_factor!r}"
        )
    if verbose not in ("auto", 0, 1, True, False):
        raise ValueError(f"`verbose` must be 'auto', 0 or 1. Received: {verbose!r}")
    fit_args = _fit_arguments(data, batch_size)

    optimizer = model.optimizer
    with strategy_scope(model):
        if not model.built:
            model(_first_inputs(data, batch_size))
        if not optimizer.built:
            optimizer.build(model.trainable_variables)
    state = _ModelState(model)

    rates = [float(start * (end / start) ** (i / (steps - 1))) for i in range(steps)]
    original_rate = _compat.learning_rate_object(optimizer)
    constant = isinstance(original_rate, keras.Variable)
    if constant:
        rate_variable = original_rate
    else:
        with strategy_scope(model):
            rate_variable = keras.Variable(
                start, dtype="float32", trainable=False, name="lr_find_rate"
            )
        optimizer.learning_rate = _ScanRate(rate_variable)
        model.make_train_function(force=True)
    scan = _RangeTest(
        rates, rate_variable, smoothing, stop_factor, _show_progress(verbose)
    )
    began = time.perf_counter()
    try:
        x, fit_kwargs = fit_args
        model.fit(
            x,
            epochs=steps,
            steps_per_epoch=1,
            callbacks=[scan],
            verbose=0,
            **fit_kwargs,
        )
    finally:
        if not constant:
            optimizer.learning_rate = original_rate
        state.restore()
        if not constant:
            model.make_train_function(force=True)
    return LRFinderResult(
        rates[: len(scan.losses)],
        scan.losses,
        smoothing=smoothing,
        diverged=scan.diverged,
        seconds=time.perf_counter() - began,
    )


class _ScanRate(keras.optimizers.schedules.LearningRateSchedule):
    """Stands in for a schedule during the test: the rate the test sets."""

    def __init__(self, variable):
        self.variable = variable

    def __call__(self, step):
        return keras.ops.convert_to_tensor(self.variable)

    def get_config(self):
        return {}


class _RangeTest(keras.callbacks.Callback):
    """Sets each step's rate, records its loss, stops when it diverges."""

    def __init__(self, rates, rate_variable, smoothing, stop_factor, progress):
        super().__init__()
        self.rates = rates
        self.rate_variable = rate_variable
        self.smoothing = smoothing
        self.stop_factor = stop_factor
        self.losses = []
        self.diverged = False
        self._average = 0.0
        self._best = math.inf
        self._bar = None
        self._every = None
        if progress and _interactive():
            self._bar = keras.utils.Progbar(
                len(rates), stateful_metrics=["learning_rate", "loss"]
            )
        elif progress:
            # Not a terminal (a log file, CI): a plain line every tenth.
            self._every = max(1, len(rates) // 10)

    def on_epoch_begin(self, epoch, logs=None):
        self.rate_variable.assign(self.rates[epoch])

    def on_epoch_end(self, epoch, logs=None):
        # One step per epoch: the epoch's mean loss is this batch's loss.
        loss = float(logs["loss"])
        self.losses.append(loss)
        i = len(self.losses)
        self._average = self.smoothing * self._average + (1 - self.smoothing) * loss
        smoothed = self._average / (1 - self.smoothing**i)
        self._best = min(self._best, smoothed)
        if not math.isfinite(smoothed) or (
            self.stop_factor is not None and smoothed > self.stop_factor * self._best
        ):
            self.diverged = True
            self.model.stop_training = True
        done = self.diverged or i == len(self.rates)
        if self._bar is not None:
            values = [("learning_rate", self.rates[epoch]), ("loss", smoothed)]
            self._bar.update(i, values=values, finalize=done)
        elif self._every is not None and (done or i % self._every == 0):
            print(
                f"lr_find step {i}/{len(self.rates)}: learning_rate "
                f"{self.rates[epoch]:.3e}, smoothed loss {smoothed:.4f}"
                + (" (diverged, stopping)" if self.diverged else ""),
                flush=True,
            )


class _ModelState:
    """Numpy copies of every variable of a model and its optimizer."""

    def __init__(self, model):
        self.model = model
        metrics = {id(v) for v in model.metrics_variables}
        seen = set()
        self.variables = []
        for v in list(model.variables) + list(model.optimizer.variables):
            if id(v) not in seen and id(v) not in metrics:
                seen.add(id(v))
                self.variables.append(v)
        self.values = [np.array(keras.ops.convert_to_numpy(v)) for v in self.variables]
        self.flags = [
            (layer, layer.trainable) for layer in _compat.flatten_layers(model)
        ]
        self.attributes = {
            name: getattr(model, name)
            for name in ("history", "stop_training")
            if hasattr(model, name)
        }

    def restore(self):
        for variable, value in zip(self.variables, self.values):
            variable.assign(value)
        for layer, flag in self.flags:
            if layer.trainable != flag:
                layer.trainable = flag
        for name, value in self.attributes.items():
            setattr(self.model, name, value)
        self.model.reset_metrics()


def _check_rate(name, value):
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(
            f"`{name}` must be a positive float. Received: {name}={value!r}"
        )
    return float(value)


def _interactive():
    isatty = getattr(sys.stdout, "isatty", None)
    return bool(isatty and isatty()) or "ipykernel" in sys.modules


def _show_progress(verbose):
    return verbose in ("auto", 1, True)


def _fit_arguments(data, batch_size):
    """`(x, fit kwargs)` for `model.fit`, the data repeating as long as needed."""
    if isinstance(data, (tuple, list)):
        if not 2 <= len(data) <= 3:
            raise ValueError(
                "`data` as a tuple must be `(x, y)` or `(x, y, sample_weight)`. "
                f"Received a tuple of {len(data)} items."
            )
        x, y, *rest = data
        kwargs = {"y": y, "batch_size": batch_size or 32, "shuffle": True}
        if rest:
            kwargs["sample_weight"] = rest[0]
        return x, kwargs
    if batch_size is not None:
        raise ValueError(
            "`batch_size` is for array `data`; a dataset brings its own batches. "
            f"Received: batch_size={batch_size}"
        )
    if hasattr(data, "repeat") and hasattr(data, "element_spec"):  # tf.data
        return data.repeat(), {"shuffle": False}  # a dataset shuffles itself
    if isinstance(data, keras.utils.PyDataset):
        return data, {"shuffle": False}
    raise ValueError(
        "`data` must be a tuple `(x, y)` of arrays, a tf.data.Dataset or a "
        f"keras.utils.PyDataset. Received: data={type(data).__name__}"
    )


def _first_inputs(data, batch_size):
    if isinstance(data, (tuple, list)):
        x = data[0]
        return keras.tree.map_structure(lambda a: np.asarray(a)[:2], x)
    if isinstance(data, keras.utils.PyDataset):
        batch = data[0]
    else:
        batch = next(iter(data))
    return batch[0] if isinstance(batch, (tuple, list)) else batch
