"""Input checks shared by the transferability scores.

Every check raises a `ValueError` that names the argument, says what was
expected and what was received, and what to do about it.
"""

import keras
import numpy as np


def to_numpy(x, name):
    """Convert an array-like or a tensor to a numpy array."""
    if isinstance(x, np.ndarray):
        return x
    try:
        return np.asarray(keras.ops.convert_to_numpy(x))
    except Exception as e:  # noqa: BLE001 - re-raised with the argument name
        raise ValueError(
            f"`{name}` must be a numpy array or a tensor. Received: "
            f"{name} of type {type(x).__name__} ({e})"
        ) from e


def check_features(features, name="features"):
    """Return `features` as a finite float64 array of shape (N, D)."""
    f = to_numpy(features, name)
    if f.ndim != 2:
        raise ValueError(
            f"`{name}` must be a 2D array of shape (num_samples, num_features). "
            f"Received: {name}.shape={f.shape}. Flatten or pool feature maps "
            "first (e.g. average over the spatial axes)."
        )
    if f.shape[0] < 2 or f.shape[1] < 1:
        raise ValueError(
            f"`{name}` must have at least 2 samples and 1 feature. "
            f"Received: {name}.shape={f.shape}"
        )
    if not np.issubdtype(f.dtype, np.number) or np.issubdtype(
        f.dtype, np.complexfloating
    ):
        raise ValueError(
            f"`{name}` must hold real numbers. Received: {name}.dtype={f.dtype}"
        )
    f = f.astype(np.float64, copy=False)
    if not np.all(np.isfinite(f)):
        bad = int(np.sum(~np.isfinite(f)))
        raise ValueError(
            f"`{name}` must be finite. Received: {name} with {bad} NaN or "
            "infinite values. Check the feature extractor (e.g. a division by "
            "zero in preprocessing) or drop those samples."
        )
    return f


def check_class_labels(labels, num_samples, name="labels", min_per_class=2):
    """Return integer class labels of shape (N,), re-indexed to 0..C-1.

    Accepts shape (N,) or (N, 1). Returns `(codes, classes)` where `classes`
    holds the original label values in sorted order.
    """
    y = to_numpy(labels, name)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(
            f"`{name}` must be a 1D array of class indices, shape (num_samples,). "
            f"Received: {name}.shape={y.shape}. For one-hot labels pass "
            f"`np.argmax({name}, axis=-1)`."
        )
    if y.shape[0] != num_samples:
        raise ValueError(
            f"`{name}` must have one entry per sample: expected {num_samples} "
            f"entries (the first dimension of the features), received "
            f"{name}.shape={y.shape}."
        )
    if np.issubdtype(y.dtype, np.floating):
        if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
            raise ValueError(
                f"`{name}` must hold integer class indices. Received: float "
                f"values that are not whole numbers (e.g. {y[y != np.round(y)][:3]})."
                " For regression targets use `logme`, which accepts float labels."
            )
        y = y.astype(np.int64)
    elif not (np.issubdtype(y.dtype, np.integer) or y.dtype == bool):
        raise ValueError(
            f"`{name}` must hold integer class indices. Received: "
            f"{name}.dtype={y.dtype}"
        )
    classes, codes, counts = np.unique(y, return_inverse=True, return_counts=True)
    if classes.size < 2:
        raise ValueError(
            f"`{name}` must contain at least 2 classes. Received: only class "
            f"{classes.tolist()}. A transferability score compares how well "
            "features separate classes; with one class there is nothing to score."
        )
    if min_per_class and np.any(counts < min_per_class):
        small = {int(c): int(n) for c, n in zip(classes, counts) if n < min_per_class}
        raise ValueError(
            f"Every class in `{name}` needs at least {min_per_class} samples. "
            f"Received: class -> count {small}. Add samples of those classes or "
            "drop them."
        )
    return codes.reshape(-1).astype(np.int64), classes


def check_same_length(a, b, name_a, name_b):
    if a.shape[0] != b.shape[0]:
        raise ValueError(
            f"`{name_a}` and `{name_b}` must have the same number of samples. "
            f"Received: {name_a}.shape={a.shape} and {name_b}.shape={b.shape}."
        )
