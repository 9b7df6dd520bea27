"""MCC: minimum class confusion on the target predictions."""

from keras import ops

from keras_transfer.adaptation.methods._base import AdaptationMethod
from keras_transfer.api_export import keras_transfer_export
from keras_transfer.losses.mcc_loss import MCCLoss
from keras_transfer.utils.checks import check_positive


@keras_transfer_export("keras_transfer.adaptation.MCC")
class MCC(AdaptationMethod):
    """Minimum class confusion (Jin et al., 2020): `MCCLoss` on the target.

    The off-diagonal mass of the certainty-weighted class-correlation matrix
    of the target predictions. A statistic of the whole batch: under
    `tf.distribute` it is computed on the global batch. Given without a
    weight, the term weighs `default_weight = 0.3` (1 before it was chosen
    across the shifts of `benchmarks/bench_adaptation_shifts.py`; pass
    `("mcc", 1.0)` for the earlier weight).

    Args:
        temperature: Float > 0. Temperature applied to the logits. Defaults
            to `2.5`.
        name: String. Name of the method in the logs. Defaults to `"mcc"`.
        **kwargs: Base layer arguments.

    Examples:

        >>> import keras_transfer
        >>> keras_transfer.adaptation.MCC(temperature=3.0).temperature
        3.0
    """

    needs_target_predictions = True
    min_batch_size = 2
    batch_statistic = True
    default_name = "mcc"
    default_weight = 0.3

    def __init__(self, temperature=2.5, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        self.temperature = float(check_positive("temperature", temperature))
        self.loss = None

    def build(self, context):
        super().build(context)
        self.loss = MCCLoss(temperature=self.temperature, from_logits=self.from_logits)

    def compute(self, batch):
        return self.loss.compute(None, ops.cast(batch.target_predictions, "float32"))

    def get_config(self):
        base_config = super().get_config()
        return {**base_config, "temperature": self.temperature}
