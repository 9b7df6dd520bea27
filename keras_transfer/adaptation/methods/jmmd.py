"""JAN: joint MMD of the features and the class predictions."""

from keras import ops

from keras_transfer.adaptation.methods._base import AdaptationMethod
from keras_transfer.api_export import keras_transfer_export
from keras_transfer.losses.jmmd_loss import JMMDLoss
from keras_transfer.losses.mmd_loss import DEFAULT_MULTIPLIERS


@keras_transfer_export("keras_transfer.adaptation.JMMD")
class JMMD(AdaptationMethod):
    """Joint MMD of features and predictions (JAN, Long et al., 2017).

    `JMMDLoss([f_s, p_s], [f_t, p_t])`: the product of a multi-kernel
    Gaussian on the features and one Gaussian of width `prediction_sigma` on
    the class probabilities. A statistic of the whole batch: under
    `tf.distribute` it is computed on the global batch.

    Args:
        kernel_multipliers: Tuple of positive floats. Bandwidth multipliers of
            the feature kernels. Defaults to `(0.125, 0.25, 0.5, 1.0, 2.0)`.
        prediction_sigma: Float > 0 or `None`. Fixed width of the kernel on
            the predictions (`None`: multi-kernel like the features).
            Defaults to `0.92`.
        linear: Boolean. Whether to use the linear-time estimator. Defaults
            to `False`.
        name: String. Name of the method in the logs. Defaults to `"jmmd"`.
        **kwargs: Base layer arguments.

    Examples:

        >>> import keras_transfer
        >>> method = keras_transfer.adaptation.JMMD(prediction_sigma=0.5)
        >>> method.prediction_sigma, method.needs_target_predictions
        (0.5, True)
    """

    needs_target_predictions = True
    min_batch_size = 2
    batch_statistic = True
    default_name = "jmmd"

    def __init__(self, kernel_multipliers=DEFAULT_MULTIPLIERS, prediction_sigma=0.92,
                 linear=False, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        self.loss = JMMDLoss(kernel_multipliers=kernel_multipliers,
                             prediction_sigma=prediction_sigma, linear=linear)
        self.kernel_multipliers = self.loss.kernel_multipliers
        self.prediction_sigma = self.loss.prediction_sigma
        self.linear = self.loss.linear

    def compute(self, batch):
        f_s, f_t = batch.flat_features()
        p_s = ops.cast(batch.source_probabilities, "float32")
        p_t = ops.cast(batch.target_probabilities, "float32")
        return self.loss.compute([f_s, p_s], [f_t, p_t])

    def get_config(self):
        base_config = super().get_config()
        config = {
            "kernel_multipliers": list(self.kernel_multipliers),
            "prediction_sigma": self.prediction_sigma,
            "linear": self.linear,
        }
        return {**base_config, **config}
