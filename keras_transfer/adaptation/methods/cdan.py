"""CDAN: a domain discriminator on the multilinear map of features x predictions."""

import math

import keras
from keras import ops

from keras_transfer.adaptation.methods.dann import DANN, _flat_size
from keras_transfer.api_export import keras_transfer_export


@keras_transfer_export("keras_transfer.adaptation.CDAN")
class CDAN(DANN):
    """Conditional domain-adversarial training (Long et al., 2018).

    Like `DANN`, but the discriminator reads the multilinear map of the
    features and the (gradient-free) class predictions, so it aligns the
    class-conditional distributions. When the map (`features x classes`) is
    larger than `random_dim`, a fixed random projection to `random_dim`
    dimensions stands in for it, as in the paper. Needs `(batch,
    num_classes)` predictions from the classifier on both domains.

    Args:
        lambda_: Float >= 0. Factor of the reversed gradient. Defaults to
            `0.1` (`1.0` before it was chosen across the shifts of
            `benchmarks/bench_adaptation_shifts.py`).
        discriminator: A Keras layer mapping the map to one logit, or `None`
            for `DomainDiscriminator(hidden_units=(256, 256))`. Defaults to
            `None`.
        random_dim: Int >= 1. Above this size of the multilinear map, use a
            random projection to this many dimensions. Defaults to `4096`.
        name: String. Name of the method in the logs. Defaults to `"cdan"`.
        **kwargs: Base layer arguments.

    Examples:

        >>> import keras_transfer
        >>> method = keras_transfer.adaptation.CDAN(random_dim=512)
        >>> method.random_dim, method.needs_target_predictions
        (512, True)
    """

    needs_target_predictions = True
    default_name = "cdan"
    #: Whether samples are weighted by the certainty of their prediction.
    entropy_weighting = False

    def __init__(self, lambda_=0.1, discriminator=None, random_dim=4096, name=None,
                 **kwargs):
        super().__init__(lambda_=lambda_, discriminator=discriminator, name=name,
                         **kwargs)
        if isinstance(random_dim, bool) or not isinstance(random_dim, int) or (
            random_dim < 1
        ):
            raise ValueError(
                "`random_dim` must be a positive int. Received: "
                f"random_dim={random_dim!r}"
            )
        self.random_dim = int(random_dim)
        self.projection = None

    def discriminator_dim(self, context):
        return min(_flat_size(context.feature_shape) * context.num_classes,
                   self.random_dim)

    def build(self, context):
        flat = _flat_size(context.feature_shape)
        if flat * context.num_classes > self.random_dim:
            seed = keras.random.SeedGenerator(0)
            self.projection = [
                self.add_weight(
                    shape=(size, self.random_dim),
                    initializer=keras.initializers.RandomNormal(seed=seed),
                    trainable=False,
                    name=f"projection_{part}",
                )
                for part, size in (
                    ("features", flat),
                    ("predictions", context.num_classes),
                )
            ]
        super().build(context)

    def discriminator_inputs(self, batch):
        f_s, f_t = batch.flat_features()
        features = ops.concatenate([f_s, f_t], axis=0)
        probabilities = ops.stop_gradient(
            ops.cast(
                ops.concatenate(
                    [batch.source_probabilities, batch.target_probabilities], 0
                ),
                "float32",
            )
        )
        if self.projection is not None:
            r_f, r_p = self.projection
            inputs = (
                ops.matmul(features, r_f)
                * ops.matmul(probabilities, r_p)
                / math.sqrt(float(self.random_dim))
            )
        else:
            outer = ops.expand_dims(probabilities, 2) * ops.expand_dims(features, 1)
            inputs = ops.reshape(outer, (ops.shape(features)[0], -1))
        weights = None
        if self.entropy_weighting:
            entropy = -ops.sum(
                probabilities * ops.log(probabilities + 1e-7), axis=-1
            )
            weights = 1.0 + ops.exp(-entropy)
        return inputs, weights

    def get_config(self):
        base_config = super().get_config()
        return {**base_config, "random_dim": self.random_dim}
