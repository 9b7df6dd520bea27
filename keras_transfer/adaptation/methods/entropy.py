"""Entropy minimization on the target predictions, with a diversity term."""

from keras import ops

from keras_transfer.adaptation.methods._base import AdaptationMethod
from keras_transfer.api_export import keras_transfer_export
from keras_transfer.losses.entropy_loss import EntropyLoss
from keras_transfer.utils.checks import check_positive


@keras_transfer_export("keras_transfer.adaptation.EntropyMinimization")
class EntropyMinimization(AdaptationMethod):
    """Entropy minimization (Grandvalet & Bengio, 2005), `"entropy"`.

    `EntropyLoss`, the mean entropy of the target predictions, pushes the
    decision boundary away from dense target regions. Alone it can put
    every target sample into the few classes that the source model already
    favours on the target (on noisy Fashion-MNIST, weight 0.01 was enough
    to fall from 0.53 to 0.37; `benchmarks/bench_adaptation_shifts.py`).
    With `diversity_weight > 0` the loss is information maximization
    (Krause et al., 2010; the objective of SHOT): the mean entropy minus
    `diversity_weight` times the entropy of the batch's mean prediction,
    so the predictions are confident per sample and spread over the classes
    across the batch. The mean prediction is a statistic of the whole
    batch, computed on the global batch under `tf.distribute`. `fit()`
    warns when target predictions collapse (see `AdaptationMonitor`).

    Args:
        diversity_weight: Float >= 0. Weight of the entropy of the mean
            target prediction, subtracted from the loss. `0.0` is plain
            entropy minimization (the behaviour before this argument
            existed). Defaults to `1.0`.
        name: String. Name of the method in the logs. Defaults to
            `"entropy"`.
        **kwargs: Base layer arguments.

    Examples:

        >>> import keras_transfer
        >>> method = keras_transfer.adaptation.EntropyMinimization()
        >>> method.name, method.diversity_weight, method.default_weight
        ('entropy', 1.0, 0.1)
        >>> keras_transfer.adaptation.EntropyMinimization(
        ...     diversity_weight=0.0).batch_statistic
        False
    """

    needs_target_predictions = True
    default_name = "entropy"
    #: The weight of the term when none is given (chosen across the shifts
    #: of `benchmarks/bench_adaptation_shifts.py`).
    default_weight = 0.1

    def __init__(self, diversity_weight=1.0, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        self.diversity_weight = float(
            check_positive("diversity_weight", diversity_weight, allow_zero=True)
        )
        self.batch_statistic = self.diversity_weight > 0
        self.min_batch_size = 2 if self.batch_statistic else 1
        self.loss = None

    def build(self, context):
        super().build(context)
        self.loss = EntropyLoss(from_logits=self.from_logits)

    def compute(self, batch):
        predictions = ops.cast(batch.target_predictions, "float32")
        loss = self.loss.compute(None, predictions)
        if self.diversity_weight > 0:
            mean = ops.mean(batch.probabilities(predictions), axis=0)
            diversity = -ops.sum(mean * ops.log(ops.clip(mean, 1e-8, 1.0)))
            loss = loss - self.diversity_weight * diversity
        return loss

    def get_config(self):
        base_config = super().get_config()
        return {**base_config, "diversity_weight": self.diversity_weight}
