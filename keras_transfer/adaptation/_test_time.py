"""Shared pieces of the test-time and source-free adaptation functions.

Private: `adabn`, `tent` and `shot` are the public front doors.
"""

import contextlib

import keras
import numpy as np
from keras import ops

from keras_transfer import _compat

NORMALIZATION_TYPES = (
    keras.layers.BatchNormalization,
    keras.layers.LayerNormalization,
    keras.layers.GroupNormalization,
)


def check_model(model, name="model"):
    if not isinstance(model, keras.layers.Layer):
        raise TypeError(
            f"`{name}` must be a Keras model or layer. "
            f"Received: {name}={type(model).__name__}"
        )


def as_target_array(target_x, name="target_x", min_samples=1):
    """`target_x` as a NumPy array with at least `min_samples` rows."""
    if target_x is None:
        raise ValueError(f"`{name}` is required: unlabelled target inputs.")
    try:
        array = np.asarray(target_x)
    except Exception as error:  # pragma: no cover - exotic inputs
        raise TypeError(
            f"`{name}` must be an array of target inputs, shape (samples, ...). "
            f"Received: {name} of type {type(target_x).__name__}"
        ) from error
    if array.ndim < 1 or array.dtype == object:
        raise ValueError(
            f"`{name}` must be an array of target inputs, shape (samples, ...). "
            f"Received: {name} with shape {array.shape} and dtype {array.dtype}"
        )
    if len(array) < min_samples:
        raise ValueError(
            f"`{name}` must hold at least {min_samples} samples. "
            f"Received: {len(array)} samples"
        )
    return array


def check_batch_size(batch_size, n, name="target_x", what="batch statistics"):
    if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool):
        raise ValueError(
            "`batch_size` must be a positive integer. "
            f"Received: batch_size={batch_size!r}"
        )
    if batch_size < 2:
        raise ValueError(
            "`batch_size` must be at least 2: a batch of one sample has no "
            f"{what}. Received: batch_size={batch_size}"
        )
    if n < batch_size:
        raise ValueError(
            f"`{name}` has {n} samples, fewer than one batch "
            f"(`batch_size`={batch_size}): every training step uses {what} of a "
            f"full batch. Pass more target samples or a smaller `batch_size` "
            f"(at most {n})."
        )
    return int(batch_size)


def strategy_scope(model):
    """The `tf.distribute` scope `model` was built under (else a null scope)."""
    if keras.backend.backend() != "tensorflow":
        return contextlib.nullcontext()
    import tensorflow as tf

    if tf.distribute.has_strategy():
        return contextlib.nullcontext()
    strategy = getattr(model, "distribute_strategy", None)
    if strategy is None:
        return contextlib.nullcontext()
    return strategy.scope()


def copy_model(model, name="model"):
    """A copy of `model` with the same architecture and weights.

    Built under the strategy `model` was built under, so a model made under
    `MirroredStrategy` gets mirrored copies.
    """
    with strategy_scope(model):
        try:
            clone = keras.models.clone_model(model)
        except Exception as error:
            raise ValueError(
                f"`{name}` could not be copied with `keras.models.clone_model` "
                f"({type(error).__name__}: {error}). Pass `copy=False` to adapt "
                f"it in place (keep `weights = {name}.get_weights()` to go back)."
            ) from error
        if not clone.built:
            shape = getattr(model, "input_shape", None)
            if shape is None:
                raise ValueError(
                    f"`{name}` could not be copied: its copy is not built. "
                    f"Pass `copy=False` to adapt it in place."
                )
            clone.build(shape)
        clone.set_weights(model.get_weights())
    return clone


def batch_norm_layers(model):
    return [
        layer
        for layer in _compat.flatten_layers(model)
        if isinstance(layer, keras.layers.BatchNormalization)
    ]


def normalization_layers(model):
    return [
        layer
        for layer in _compat.flatten_layers(model)
        if isinstance(layer, NORMALIZATION_TYPES)
    ]


@contextlib.contextmanager
def trainable_only(model, layers):
    """Within: only `layers` of `model` are trainable; restored on exit.

    Keras propagates `trainable` from a container to its sublayers, so the
    flags are set top-down (every layer trainable, then the others frozen)
    and restored top-down from the saved flags.
    """
    everything = _compat.flatten_layers(model)
    saved = [(layer, layer.trainable) for layer in everything]
    keep = {id(layer) for layer in layers}
    try:
        model.trainable = True
        for layer in everything:
            if id(layer) in keep:
                continue
            if not _compat.flatten_layers(layer, include_self=False):
                layer.trainable = False
        yield
    finally:
        for layer, flag in saved:
            layer.trainable = flag


def probabilities(outputs, from_logits):
    outputs = ops.cast(outputs, "float32")
    if from_logits:
        return ops.softmax(outputs, axis=-1)
    return outputs


def entropy(p):
    """Per-sample Shannon entropy of probability rows."""
    return -ops.sum(p * ops.log(ops.clip(p, 1e-8, 1.0)), axis=-1)


def epoch_batches(n, batch_size, rng):
    """Indices of one shuffled epoch of full batches (the remainder dropped)."""
    order = rng.permutation(n)
    return order[: (n // batch_size) * batch_size]


class TargetLossModel(keras.Model):
    """Trains `model` with `loss_fn(y_true, y_pred)` on target batches.

    A thin wrapper so that the user's model keeps its own compile state; its
    trainable variables are the wrapped model's.
    """

    def __init__(self, model, **kwargs):
        super().__init__(**kwargs)
        self.wrapped = model

    def call(self, inputs, training=None):
        return self.wrapped(inputs, training=training)
