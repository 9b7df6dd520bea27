"""Entropy minimization on target predictions."""

from keras import ops

from keras_transfer.api_export import keras_transfer_export
from keras_transfer.losses._base import (
    DomainLoss,
    log_probabilities,
    probabilities,
)


@keras_transfer_export("keras_transfer.losses.EntropyLoss")
class EntropyLoss(DomainLoss):
    """Mean Shannon entropy of the class predictions on the target batch.

    Minimizing it pushes the decision boundary away from dense regions of the
    unlabelled target data (Grandvalet & Bengio, 2005; used by CDAN+E and
    MCC). Called as `loss(target_predictions)`; `loss(source, target)` is
    accepted too, like every loss here, and ignores the source. Returns a
    non-negative scalar, at most `log(num_classes)`.

    Args:
        from_logits: Boolean. Whether the predictions are logits (else
            probabilities). Defaults to `False`.
        name: String. Name of the loss. Defaults to `"entropy_loss"`.
        **kwargs: Base `keras.losses.Loss` arguments (`reduction`, `dtype`).

    Returns:
        A scalar tensor.

    Examples:

        >>> import keras_transfer
        >>> loss = keras_transfer.losses.EntropyLoss()
        >>> round(float(loss(np.full((2, 4), 0.25, "float32"))), 4)
        1.3863
        >>> round(float(loss(np.eye(4, dtype="float32"))), 4)
        0.0
    """

    target_only = True

    def __init__(self, from_logits=False, name="entropy_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.from_logits = bool(from_logits)

    def compute(self, source, target):
        p = probabilities(target, self.from_logits)
        log_p = log_probabilities(target, self.from_logits)
        return ops.mean(-ops.sum(p * log_p, axis=-1))

    def get_config(self):
        base_config = super().get_config()
        return {**base_config, "from_logits": self.from_logits}
