"""DAN: multi-kernel maximum mean discrepancy between the features."""

from keras_transfer.adaptation.methods._base import AdaptationMethod
from keras_transfer.api_export import keras_transfer_export
from keras_transfer.losses.mmd_loss import DEFAULT_MULTIPLIERS, MMDLoss


@keras_transfer_export("keras_transfer.adaptation.MMD")
class MMD(AdaptationMethod):
    """Multi-kernel MMD of the features (DAN, Long et al., 2015).

    `MMDLoss` between the source and target features: Gaussian kernels with
    bandwidths `kernel_multipliers` times the mean squared distance of the
    pooled batch. A statistic of the whole batch: under `tf.distribute` it is
    computed on the global batch.

    Args:
        kernel_multipliers: Tuple of positive floats. Bandwidth multipliers.
            Defaults to `(0.125, 0.25, 0.5, 1.0, 2.0)`.
        linear: Boolean. Whether to use the linear-time estimator. Defaults
            to `False`.
        name: String. Name of the method in the logs. Defaults to `"mmd"`.
        **kwargs: Base layer arguments.

    Examples:

        >>> import keras_transfer
        >>> method = keras_transfer.adaptation.MMD(kernel_multipliers=(0.5, 1, 2))
        >>> method.kernel_multipliers, method.batch_statistic
        ((0.5, 1.0, 2.0), True)
    """

    min_batch_size = 2
    batch_statistic = True
    default_name = "mmd"

    def __init__(self, kernel_multipliers=DEFAULT_MULTIPLIERS, linear=False,
                 name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        self.loss = MMDLoss(kernel_multipliers=kernel_multipliers, linear=linear)
        self.kernel_multipliers = self.loss.kernel_multipliers
        self.linear = self.loss.linear

    def compute(self, batch):
        return self.loss.compute(*batch.flat_features())

    def get_config(self):
        base_config = super().get_config()
        config = {
            "kernel_multipliers": list(self.kernel_multipliers),
            "linear": self.linear,
        }
        return {**base_config, **config}
