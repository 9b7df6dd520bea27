"""Shared checks and arithmetic on weight lists (as `get_weights()` gives)."""

import numbers

import keras
import numpy as np


def check_alpha(alpha, name="alpha"):
    if (
        isinstance(alpha, bool)
        or not isinstance(alpha, numbers.Real)
        or not 0.0 <= float(alpha) <= 1.0
    ):
        raise ValueError(
            f"`{name}` must be a float in [0, 1] (0 gives the start weights, 1 "
            f"the end weights). Received: {name}={alpha!r}"
        )
    return float(alpha)


def check_weights(model, weights, name):
    """`weights` as a list of numpy arrays matching `model.weights`."""
    if not isinstance(weights, (list, tuple)):
        raise ValueError(
            f"`{name}` must be a list of arrays as `model.get_weights()` gives. "
            f"Received: {name} of type {type(weights).__name__}"
        )
    variables = model.weights
    if len(weights) != len(variables):
        raise ValueError(
            f"`{name}` must hold one array per weight of the model "
            f"({len(variables)}). Received {len(weights)} arrays."
        )
    arrays = []
    for i, (array, variable) in enumerate(zip(weights, variables)):
        array = np.asarray(array)
        if tuple(array.shape) != tuple(variable.shape):
            raise ValueError(
                f"`{name}[{i}]` has shape {tuple(array.shape)}, but the model's "
                f"weight '{variable.path}' has shape {tuple(variable.shape)}."
            )
        arrays.append(array)
    return arrays


def blend(start, end, alpha):
    """`(1 - alpha) * start + alpha * end`, exact at 0 and 1, per array."""
    out = []
    for a, b in zip(start, end):
        if alpha == 0.0 or not np.issubdtype(b.dtype, np.floating):
            out.append(np.array(a if alpha == 0.0 else b))
        elif alpha == 1.0:
            out.append(np.array(b))
        else:
            mixed = (1.0 - alpha) * a.astype("float64") + alpha * b.astype("float64")
            out.append(mixed.astype(b.dtype))
    return out


def mean(weight_lists):
    """Elementwise mean of several weight lists (integer arrays: the first's)."""
    out = []
    for arrays in zip(*weight_lists):
        if np.issubdtype(arrays[0].dtype, np.floating):
            total = np.sum([a.astype("float64") for a in arrays], axis=0)
            out.append((total / len(arrays)).astype(arrays[0].dtype))
        else:
            out.append(np.array(arrays[0]))
    return out


def check_same_variables(reference, other, where):
    """Raise when `other` (a model) does not have `reference`'s variables."""
    ref, var = reference.weights, other.weights
    if len(ref) != len(var):
        raise ValueError(
            f"`{where}` has {len(var)} weights but the first model has "
            f"{len(ref)}: a soup needs models of one architecture, fine-tuned "
            "from the same start."
        )
    for i, (a, b) in enumerate(zip(ref, var)):
        if tuple(a.shape) != tuple(b.shape) or a.dtype != b.dtype:
            raise ValueError(
                f"`{where}` differs from the first model at weight {i}: "
                f"'{b.path}' {tuple(b.shape)} {b.dtype} there, '{a.path}' "
                f"{tuple(a.shape)} {a.dtype} in the first model. A soup needs "
                "models of one architecture."
            )


def accuracy(model, data):
    """Classification accuracy of `model` on `(x, y)` arrays or a dataset."""
    if isinstance(data, (tuple, list)):
        x, y = data[0], np.asarray(data[1])
        predictions = model.predict(x, batch_size=256, verbose=0)
        return _accuracy(predictions, y)
    hits, count = 0.0, 0
    for batch in data:
        x, y = batch[0], keras.ops.convert_to_numpy(batch[1])
        predictions = keras.ops.convert_to_numpy(model(x, training=False))
        hits += _accuracy(predictions, y) * len(y)
        count += len(y)
    return hits / max(count, 1)


def _accuracy(predictions, y):
    predictions = np.asarray(predictions)
    if predictions.ndim < 2 or predictions.shape[-1] < 2:
        raise ValueError(
            "The default score is the accuracy of a classifier with one output "
            "per class; this model has one output unit. Pass `score=` (a "
            "function `(model, validation_data) -> float`, higher is better)."
        )
    if y.ndim == predictions.ndim and y.shape[-1] == predictions.shape[-1]:
        y = np.argmax(y, axis=-1)
    return float(np.mean(np.argmax(predictions, axis=-1) == y.reshape(-1)))


def check_score(score):
    if score is None:
        return accuracy
    if not callable(score):
        raise ValueError(
            "`score` must be a function `(model, validation_data) -> float` "
            f"(higher is better) or None. Received: score={score!r}"
        )
    return score
