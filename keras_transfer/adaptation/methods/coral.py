"""Deep CORAL: align the covariances of the features."""

from keras_transfer.adaptation.methods._base import AdaptationMethod
from keras_transfer.api_export import keras_transfer_export
from keras_transfer.losses.coral_loss import CORALLoss


@keras_transfer_export("keras_transfer.adaptation.CORAL")
class CORAL(AdaptationMethod):
    """Deep CORAL (Sun & Saenko, 2016): `CORALLoss` on the features.

    The squared Frobenius distance between the feature covariances of the
    two batches. A statistic of the whole batch: under `tf.distribute` it is
    computed on the global batch. No hyperparameters.

    Args:
        name: String. Name of the method in the logs. Defaults to `"coral"`.
        **kwargs: Base layer arguments.

    Examples:

        >>> import keras_transfer
        >>> method = keras_transfer.adaptation.CORAL()
        >>> method.name, method.min_batch_size, method.batch_statistic
        ('coral', 2, True)
    """

    min_batch_size = 2
    batch_statistic = True
    default_name = "coral"

    def __init__(self, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        self.loss = CORALLoss()

    def compute(self, batch):
        return self.loss.compute(*batch.flat_features())
