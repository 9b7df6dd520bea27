"""Cross-entropy on integer labels, with label smoothing."""

import numbers

import keras
from keras import ops

from keras_transfer.api_export import keras_transfer_export


@keras_transfer_export("keras_transfer.losses.SparseCategoricalCrossentropy")
class SparseCategoricalCrossentropy(keras.losses.Loss):
    """Keras's sparse categorical cross-entropy, with `label_smoothing`.

    The loss of `keras.losses.SparseCategoricalCrossentropy` (integer class
    labels, one score per class) with the `label_smoothing` that Keras gives
    only `CategoricalCrossentropy`: the target of each example is the
    one-hot label mixed with the uniform distribution,
    `(1 - label_smoothing) * one_hot + label_smoothing / num_classes`. With
    `label_smoothing=0` it is Keras's loss. `fine_tune` compiles it when it
    infers the loss for integer labels (its `label_smoothing` argument).

    Smoothing keeps the logits from growing without bound on a small
    labelled set, where the plain cross-entropy keeps pushing the
    already-correct examples (Szegedy et al., 2016; Müller et al., 2019).

    Args:
        from_logits: Boolean. Whether `y_pred` holds logits (else
            probabilities). Defaults to `False`.
        label_smoothing: Float in `[0, 1)`. The weight of the uniform
            distribution in the target. Defaults to `0.0`.
        reduction, name, dtype: As for any `keras.losses.Loss`.

    Examples:

        >>> import keras_transfer
        >>> loss = keras_transfer.losses.SparseCategoricalCrossentropy(
        ...     from_logits=True, label_smoothing=0.1)
        >>> logits = np.array([[4.0, 0.0, 0.0], [0.0, 4.0, 0.0]], "float32")
        >>> round(float(loss(np.array([0, 1]), logits)), 4)
        0.3026
        >>> plain = keras_transfer.losses.SparseCategoricalCrossentropy(
        ...     from_logits=True)
        >>> round(float(plain(np.array([0, 1]), logits)), 4)
        0.036
    """

    def __init__(
        self,
        from_logits=False,
        label_smoothing=0.0,
        reduction="sum_over_batch_size",
        name="sparse_categorical_crossentropy",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.from_logits = bool(from_logits)
        self.label_smoothing = check_label_smoothing(label_smoothing)

    def call(self, y_true, y_pred):
        if len(y_true.shape) == len(y_pred.shape) and y_true.shape[-1] == 1:
            y_true = ops.squeeze(y_true, axis=-1)
        labels = ops.one_hot(
            ops.cast(y_true, "int32"), ops.shape(y_pred)[-1], dtype=y_pred.dtype
        )
        return keras.losses.categorical_crossentropy(
            labels,
            y_pred,
            from_logits=self.from_logits,
            label_smoothing=self.label_smoothing,
        )

    def get_config(self):
        return {
            **super().get_config(),
            "from_logits": self.from_logits,
            "label_smoothing": self.label_smoothing,
        }


def check_label_smoothing(value, name="label_smoothing"):
    """`value` as a float in `[0, 1)`, or a `ValueError` naming `name`."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not 0.0 <= float(value) < 1.0
    ):
        raise ValueError(
            f"`{name}` must be a float in [0, 1): 0 for none, 0.1 to move "
            f"a tenth of each target onto the other classes. Received: "
            f"{name}={value!r}"
        )
    return float(value)
