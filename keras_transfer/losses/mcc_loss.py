"""Minimum class confusion (MCC)."""

from keras import ops

from keras_transfer.api_export import keras_transfer_export
from keras_transfer.losses._base import DomainLoss, log_probabilities


@keras_transfer_export("keras_transfer.losses.MCCLoss")
class MCCLoss(DomainLoss):
    """Minimum class confusion on the target batch (Jin et al., 2020).

    Predictions are rescaled with a temperature, each sample is weighted by
    how certain it is (`1 + exp(-entropy)`, normalised to sum to the batch
    size), and the weighted class-correlation matrix `Y^T W Y` is normalised
    per class. The loss is the mass off the diagonal divided by the number of
    classes: it is in [0, 1) and zero when every sample is predicted with
    certainty and no two classes are confused.

    Called as `loss(target_predictions)`; `loss(source, target)` is accepted
    too and ignores the source. Returns a scalar.

    Args:
        temperature: Float > 0. Temperature applied to the logits. Defaults
            to `2.5`.
        from_logits: Boolean. Whether the predictions are logits (else
            probabilities; their log is used as logits). Defaults to `False`.
        name: String. Name of the loss. Defaults to `"mcc_loss"`.
        **kwargs: Base `keras.losses.Loss` arguments (`reduction`, `dtype`).

    Returns:
        A scalar tensor.

    Examples:

        >>> import keras_transfer
        >>> loss = keras_transfer.losses.MCCLoss()
        >>> confident = np.eye(3, dtype="float32") * 0.98 + 0.0066
        >>> confused = np.full((3, 3), 1 / 3, "float32")
        >>> bool(loss(confident) < loss(confused))
        True
    """

    target_only = True

    def __init__(self, temperature=2.5, from_logits=False, name="mcc_loss",
                 **kwargs):
        super().__init__(name=name, **kwargs)
        if not float(temperature) > 0:
            raise ValueError(
                "`temperature` must be a float > 0. Received: "
                f"temperature={temperature}"
            )
        self.temperature = float(temperature)
        self.from_logits = bool(from_logits)

    def compute(self, source, target):
        logits = log_probabilities(target, True) if self.from_logits else (
            log_probabilities(target, False)
        )
        y = ops.softmax(logits / self.temperature, axis=-1)
        n = ops.cast(ops.shape(y)[0], y.dtype)
        num_classes = ops.cast(ops.shape(y)[-1], y.dtype)
        entropy = -ops.sum(y * ops.log(y + 1e-5), axis=-1)
        weight = 1.0 + ops.exp(-entropy)
        weight = ops.stop_gradient(n * weight / ops.sum(weight))
        confusion = ops.matmul(ops.transpose(y * ops.expand_dims(weight, -1)), y)
        confusion = confusion / ops.sum(confusion, axis=1, keepdims=True)
        off_diagonal = ops.sum(confusion) - ops.trace(confusion)
        return off_diagonal / num_classes

    def get_config(self):
        base_config = super().get_config()
        config = {"temperature": self.temperature, "from_logits": self.from_logits}
        return {**base_config, **config}
