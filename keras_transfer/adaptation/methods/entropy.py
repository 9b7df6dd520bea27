"""Entropy minimization on the target predictions."""

from keras import ops

from keras_transfer.adaptation.methods._base import AdaptationMethod
from keras_transfer.api_export import keras_transfer_export
from keras_transfer.losses.entropy_loss import EntropyLoss


@keras_transfer_export("keras_transfer.adaptation.EntropyMinimization")
class EntropyMinimization(AdaptationMethod):
    """Entropy minimization (Grandvalet & Bengio, 2005), `"entropy"`.

    `EntropyLoss`: the mean entropy of the target predictions, which pushes
    the decision boundary away from dense target regions. A mean of
    per-sample values, so each replica's part adds up to the global batch.
    Alone and with a large weight it can collapse the target predictions
    onto few classes: `fit()` warns when that happens (see
    `AdaptationMonitor`).

    Args:
        name: String. Name of the method in the logs. Defaults to
            `"entropy"`.
        **kwargs: Base layer arguments.

    Examples:

        >>> import keras_transfer
        >>> keras_transfer.adaptation.EntropyMinimization().name
        'entropy'
    """

    needs_target_predictions = True
    default_name = "entropy"

    def __init__(self, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        self.loss = None

    def build(self, context):
        super().build(context)
        self.loss = EntropyLoss(from_logits=self.from_logits)

    def compute(self, batch):
        return self.loss.compute(None, ops.cast(batch.target_predictions, "float32"))
