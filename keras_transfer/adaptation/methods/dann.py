"""DANN: a domain discriminator behind a gradient reversal layer."""

import keras
from keras import ops

from keras_transfer.adaptation.methods._base import AdaptationMethod
from keras_transfer.api_export import keras_transfer_export
from keras_transfer.layers.domain_discriminator import DomainDiscriminator
from keras_transfer.layers.gradient_reversal import GradientReversal
from keras_transfer.utils.checks import check_lambda

#: Domain logits are clipped to this bound in the discriminator's loss.
LOGIT_BOUND = 16.0


def domain_loss(logits, n_source, weights=None):
    """Binary cross-entropy of domain logits (source = 1), each domain half.

    Returns the loss and the per-sample correctness of the discriminator.
    """
    logits = ops.reshape(ops.cast(logits, "float32"), (-1,))
    logits = ops.clip(logits, -LOGIT_BOUND, LOGIT_BOUND)
    labels = ops.cast(ops.arange(ops.shape(logits)[0]) < n_source, "float32")
    per_sample = (
        ops.maximum(logits, 0.0)
        - logits * labels
        + ops.log1p(ops.exp(-ops.abs(logits)))
    )
    if weights is None:
        weights = ops.ones_like(per_sample)
    w_s, w_t = weights[:n_source], weights[n_source:]
    loss = 0.5 * (
        ops.sum(w_s * per_sample[:n_source]) / ops.sum(w_s)
        + ops.sum(w_t * per_sample[n_source:]) / ops.sum(w_t)
    )
    correct = ops.cast(ops.cast(logits > 0, "float32") == labels, "float32")
    return loss, correct


@keras_transfer_export("keras_transfer.adaptation.DANN")
class DANN(AdaptationMethod):
    """Domain-adversarial training (Ganin et al., 2016).

    A domain discriminator learns to tell source features from target
    features; a `GradientReversal` layer between the features and the
    discriminator sends the feature extractor the reversed gradient, scaled
    by `lambda_`, so the features become indistinguishable. Each domain
    counts half in the discriminator's loss, and its logits are clipped to
    [-16, 16] so that a far-fooled discriminator gives a bounded loss.
    Logs `domain_accuracy` (near 0.5: the domains no longer separate).

    Args:
        lambda_: Float >= 0. Factor of the reversed gradient (the value
            `fit()` warms up to). Defaults to `0.1` (`1.0` before it was
            chosen across the shifts of `benchmarks/bench_adaptation_shifts.py`).
        discriminator: A Keras layer mapping flattened features to one logit,
            or `None` for `DomainDiscriminator(hidden_units=(256, 256))`.
            Defaults to `None`.
        name: String. Name of the method in the logs. Defaults to `"dann"`.
        **kwargs: Base layer arguments.

    Examples:

        >>> import keras_transfer
        >>> method = keras_transfer.adaptation.DANN(
        ...     lambda_=0.5,
        ...     discriminator=keras_transfer.layers.DomainDiscriminator((16,)))
        >>> method.lambda_, method.uses_discriminator, method.min_batch_size
        (0.5, True, 2)
    """

    uses_discriminator = True
    uses_reversal = True
    min_batch_size = 2
    metric_names = ("domain_accuracy",)
    default_name = "dann"

    def __init__(self, lambda_=0.1, discriminator=None, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        self.lambda_ = check_lambda(lambda_)
        if discriminator is not None and not isinstance(
            discriminator, keras.layers.Layer
        ):
            raise ValueError(
                "`discriminator` must be a Keras layer/model or None. Received: "
                f"discriminator={type(discriminator).__name__}"
            )
        self.discriminator = discriminator or DomainDiscriminator(
            name="domain_discriminator"
        )
        self.gradient_reversal = GradientReversal(
            self.lambda_, name="gradient_reversal"
        )

    def discriminator_dim(self, context):
        """Width of the discriminator's input."""
        return _flat_size(context.feature_shape)

    def build(self, context):
        super().build(context)
        if not self.gradient_reversal.built:
            self.gradient_reversal.build((None, self.discriminator_dim(context)))
        if not self.discriminator.built:
            self.discriminator.build((None, self.discriminator_dim(context)))

    def discriminator_inputs(self, batch):
        """The discriminator's inputs `(source then target)` and sample weights."""
        f_s, f_t = batch.flat_features()
        return ops.concatenate([f_s, f_t], axis=0), None

    def compute(self, batch):
        inputs, weights = self.discriminator_inputs(batch)
        logits = self.discriminator(
            self.gradient_reversal(inputs), training=batch.training
        )
        loss, correct = domain_loss(logits, batch.n_source, weights)
        return loss, {"domain_accuracy": correct}

    def get_config(self):
        base_config = super().get_config()
        config = {
            "lambda_": self.lambda_,
            "discriminator": keras.saving.serialize_keras_object(self.discriminator),
        }
        return {**base_config, **config}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if config.get("discriminator") is not None:
            config["discriminator"] = keras.saving.deserialize_keras_object(
                config["discriminator"]
            )
        return cls(**config)


def _flat_size(shape):
    size = 1
    for d in shape[1:]:
        size *= int(d)
    return size
