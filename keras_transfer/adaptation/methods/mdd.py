"""MDD: margin disparity discrepancy with an adversarial copy of the classifier."""

import keras

from keras_transfer.adaptation.methods._base import AdaptationMethod
from keras_transfer.api_export import keras_transfer_export
from keras_transfer.layers.gradient_reversal import GradientReversal
from keras_transfer.losses.mdd_loss import MDDLoss
from keras_transfer.utils.checks import check_lambda, check_positive


@keras_transfer_export("keras_transfer.adaptation.MDD")
class MDD(AdaptationMethod):
    """Margin disparity discrepancy (Zhang et al., 2019).

    An adversarial copy of the classifier (same architecture, starting from
    the classifier's weights plus 1% noise) reads the features through a
    `GradientReversal` layer and is trained with `MDDLoss`: agree with the
    classifier's labels on the source, disagree on the target; the feature
    extractor, through the reversal, works against it. The classifier must
    be a functional or Sequential model (`keras.models.clone_model` copies
    it) returning `(batch, num_classes)` predictions.

    Args:
        lambda_: Float >= 0. Factor of the reversed gradient. Defaults to
            `0.1`.
        margin: Float > 0. The margin factor gamma of `MDDLoss`. Defaults to
            `2.0`. (Both were `1.0` and `4.0` before they were chosen across
            the shifts of `benchmarks/bench_adaptation_shifts.py`: with
            those, MDD collapsed on all three shifts there, and at
            `lambda_=0.1, margin=4.0` on noisy Fashion-MNIST.)
        name: String. Name of the method in the logs. Defaults to `"mdd"`.
        **kwargs: Base layer arguments.

    Examples:

        >>> import keras_transfer
        >>> method = keras_transfer.adaptation.MDD(lambda_=0.1, margin=2.0)
        >>> method.margin, method.uses_reversal
        (2.0, True)
    """

    needs_target_predictions = True
    uses_reversal = True
    default_name = "mdd"

    def __init__(self, lambda_=0.1, margin=2.0, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        self.lambda_ = check_lambda(lambda_)
        self.margin = float(check_positive("margin", margin))
        self.gradient_reversal = GradientReversal(
            self.lambda_, name="gradient_reversal"
        )
        self.adversary = None
        self.mdd_loss = None
        self._started = False

    def build(self, context):
        super().build(context)
        try:
            self.adversary = keras.models.clone_model(context.classifier)
        except Exception as e:  # subclassed classifiers cannot be cloned
            raise ValueError(
                "`method` MDD needs a copy of `classifier`, and "
                "`keras.models.clone_model` failed on it. Use a functional or "
                f"Sequential `classifier`. Error: {e}"
            ) from e
        self.adversary.build(context.feature_shape)
        self.gradient_reversal.build(context.feature_shape)
        # Held outside Keras tracking: the classifier's weights are the model's.
        self._classifier = _Untracked(context.classifier)
        self.mdd_loss = MDDLoss(margin=self.margin, from_logits=self.from_logits)

    def start(self):
        """Start the adversary at the classifier plus 1% noise (once)."""
        if self._started or self.adversary is None:
            return
        _start_at(self.adversary, self._classifier.value.weights)
        self._started = True

    def compute(self, batch):
        n = batch.n_source
        features = keras.ops.concatenate(
            [batch.source_features, batch.target_features], axis=0
        )
        adversary = keras.ops.cast(
            self.adversary(self.gradient_reversal(features), training=batch.training),
            "float32",
        )
        return self.mdd_loss.compute(
            [batch.source_predictions, adversary[:n]],
            [batch.target_predictions, adversary[n:]],
        )

    def get_config(self):
        base_config = super().get_config()
        return {**base_config, "lambda_": self.lambda_, "margin": self.margin}


def _start_at(adversary, classifier_weights):
    """Set `adversary`'s weights to the classifier's times (1 + 1% noise)."""
    seed = keras.random.SeedGenerator(1)
    values = []
    for adv, main in zip(adversary.weights, classifier_weights):
        if adv.shape != main.shape:
            return
        noise = keras.ops.convert_to_numpy(
            keras.random.normal(adv.shape, seed=seed, dtype="float32")
        )
        values.append(keras.ops.convert_to_numpy(main) * (1.0 + 0.01 * noise))
    for adv, value in zip(adversary.weights, values):
        adv.assign(value)


class _Untracked:
    def __init__(self, value):
        self.value = value
