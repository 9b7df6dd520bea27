"""Deep CORAL: correlation alignment of second-order statistics."""

from keras import ops

from keras_transfer.api_export import keras_transfer_export
from keras_transfer.losses._base import DomainLoss, flatten_features


def _covariance(x):
    n = ops.cast(ops.shape(x)[0], x.dtype)
    centered = x - ops.mean(x, axis=0, keepdims=True)
    return ops.matmul(ops.transpose(centered), centered) / ops.maximum(n - 1.0, 1.0)


@keras_transfer_export("keras_transfer.losses.CORALLoss")
class CORALLoss(DomainLoss):
    """Squared Frobenius distance between source and target feature covariances.

    The loss of Deep CORAL (Sun & Saenko, 2016):
    `||C_s - C_t||_F^2 / (4 d^2)`, where `C` is the unbiased covariance of a
    batch of `d`-dimensional features. Called as
    `loss(source_features, target_features)`; returns a scalar that is
    non-negative, symmetric, zero for identical batches and finite for
    constant features. It needs at least two samples per domain.

    Args:
        name: String. Name of the loss. Defaults to `"coral_loss"`.
        **kwargs: Base `keras.losses.Loss` arguments (`reduction`, `dtype`).

    Returns:
        A scalar tensor.

    Examples:

        >>> import keras_transfer
        >>> rng = np.random.default_rng(0)
        >>> xs = rng.normal(size=(32, 3)).astype("float32")
        >>> loss = keras_transfer.losses.CORALLoss()
        >>> float(loss(xs, xs))
        0.0
        >>> bool(loss(xs, 3.0 * xs) > 0.0)
        True
    """

    min_samples = 2

    def __init__(self, name="coral_loss", **kwargs):
        super().__init__(name=name, **kwargs)

    def compute(self, source, target):
        source = flatten_features(source)
        target = flatten_features(target)
        d = ops.cast(ops.shape(source)[-1], source.dtype)
        diff = _covariance(source) - _covariance(target)
        return ops.sum(ops.square(diff)) / (4.0 * d * d)
