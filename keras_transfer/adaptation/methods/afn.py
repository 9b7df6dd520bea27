"""AFN: stepwise adaptive feature norm."""

from keras import ops

from keras_transfer.adaptation.methods._base import AdaptationMethod
from keras_transfer.api_export import keras_transfer_export
from keras_transfer.utils.checks import check_positive


@keras_transfer_export("keras_transfer.adaptation.AFN")
class AFN(AdaptationMethod):
    """Stepwise adaptive feature norm (Xu et al., 2019), `"afn"`.

    Target features with small norms carry little information for the
    classifier; AFN enlarges the feature norms of both domains step by step.
    Each step pulls every sample's feature norm towards its current value
    (no gradient) plus `delta`:

    `mean_i (||h_i|| - (stop_gradient(||h_i||) + delta))^2`

    over the source and target batches. A mean of per-sample values. The
    paper weighs it 0.05 against the classification loss:
    `method={"afn": 0.05}`.

    Args:
        delta: Float > 0. Norm increment per step (the paper's Delta r).
            Defaults to `1.0`.
        name: String. Name of the method in the logs. Defaults to `"afn"`.
        **kwargs: Base layer arguments.

    Examples:

        >>> import keras_transfer
        >>> from keras_transfer.adaptation.methods import AdaptationBatch
        >>> features = np.array([[3.0, 4.0], [0.0, 1.0]], "float32")  # norms 5, 1
        >>> batch = AdaptationBatch(features, features, None, None,
        ...                         from_logits=False)
        >>> float(keras_transfer.adaptation.AFN(delta=0.5).compute(batch))
        0.25
    """

    default_name = "afn"

    def __init__(self, delta=1.0, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        self.delta = float(check_positive("delta", delta))

    def compute(self, batch):
        features = ops.concatenate(batch.flat_features(), axis=0)
        norms = ops.sqrt(ops.sum(ops.square(features), axis=-1) + 1e-12)
        goal = ops.stop_gradient(norms) + self.delta
        return ops.mean(ops.square(norms - goal))

    def get_config(self):
        base_config = super().get_config()
        return {**base_config, "delta": self.delta}
