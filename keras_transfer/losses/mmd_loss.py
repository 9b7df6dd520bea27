"""Multi-kernel maximum mean discrepancy (DAN)."""

from keras import ops

from keras_transfer.api_export import keras_transfer_export
from keras_transfer.losses._base import (
    DomainLoss,
    check_multipliers,
    flatten_features,
    gaussian_kernels,
    squared_distances,
)

DEFAULT_MULTIPLIERS = (0.125, 0.25, 0.5, 1.0, 2.0)


def mmd_from_kernels(k_ss, k_tt, k_st):
    """Biased (V-statistic) MMD^2 from the three kernel blocks."""
    return ops.mean(k_ss) + ops.mean(k_tt) - 2.0 * ops.mean(k_st)


def pooled_kernel(source, target, multipliers, sigma=None):
    """Kernel matrix over the pooled batch `[source; target]`."""
    pooled = ops.concatenate([source, target], axis=0)
    return gaussian_kernels(
        squared_distances(pooled, pooled), multipliers, sigma=sigma
    )


def split_blocks(kernel, n_source):
    k_ss = kernel[:n_source, :n_source]
    k_tt = kernel[n_source:, n_source:]
    k_st = kernel[:n_source, n_source:]
    return k_ss, k_tt, k_st


def linear_pairs(source, target):
    """Split each batch into two halves of equal size k = min(n_s, n_t) // 2."""
    k = ops.minimum(ops.shape(source)[0], ops.shape(target)[0]) // 2
    return source[:k], source[k : 2 * k], target[:k], target[k : 2 * k]


def rowwise_sq(a, b):
    return ops.sum(ops.square(a - b), axis=-1)


def linear_mmd_terms(s1, s2, t1, t2):
    """The four row-wise squared distances of the linear-time estimator."""
    return [rowwise_sq(s1, s2), rowwise_sq(t1, t2), rowwise_sq(s1, t2),
            rowwise_sq(s2, t1)]


def linear_mmd_from_kernels(k):
    return ops.mean(k[0] + k[1] - k[2] - k[3])


@keras_transfer_export("keras_transfer.losses.MMDLoss")
class MMDLoss(DomainLoss):
    """Multi-kernel maximum mean discrepancy between source and target features.

    The alignment loss of DAN (Long et al., 2015): the squared distance
    between the mean embeddings of the two batches in the RKHS of a sum of
    Gaussian kernels. The bandwidths are `kernel_multipliers` times the mean
    squared distance of the pooled batch (no gradient through it).

    Called as `loss(source_features, target_features)` with tensors of shape
    `(batch, ...)` (flattened to `(batch, dim)`); returns a scalar. The two
    batch sizes may differ. The default quadratic-time estimator is the
    biased V-statistic: non-negative, symmetric, zero for identical batches.
    `linear=True` uses the linear-time estimator of Gretton et al. (2012),
    as DAN does: unbiased, cheaper, and it can be negative; it needs at least
    two samples per domain.

    Args:
        kernel_multipliers: Tuple of positive floats. Bandwidth multipliers of
            the Gaussian kernels. Defaults to `(0.125, 0.25, 0.5, 1.0, 2.0)`.
        linear: Boolean. Whether to use the linear-time estimator. Defaults
            to `False`.
        name: String. Name of the loss. Defaults to `"mmd_loss"`.
        **kwargs: Base `keras.losses.Loss` arguments (`reduction`, `dtype`).

    Returns:
        A scalar tensor.

    Examples:

        >>> import keras_transfer
        >>> loss = keras_transfer.losses.MMDLoss()
        >>> x = np.random.default_rng(0).normal(size=(16, 4)).astype("float32")
        >>> float(loss(x, x))
        0.0
        >>> bool(loss(x, x + 3.0) > 0.5)
        True
    """

    def __init__(self, kernel_multipliers=DEFAULT_MULTIPLIERS, linear=False,
                 name="mmd_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.kernel_multipliers = check_multipliers(kernel_multipliers)
        self.linear = bool(linear)
        self.min_samples = 2 if self.linear else 1

    def compute(self, source, target):
        source = flatten_features(source)
        target = flatten_features(target)
        if self.linear:
            d = linear_mmd_terms(*linear_pairs(source, target))
            base = ops.stop_gradient(ops.mean(ops.concatenate(d, axis=0)))
            k = [gaussian_kernels(x, self.kernel_multipliers, base=base) for x in d]
            return linear_mmd_from_kernels(k)
        kernel = pooled_kernel(source, target, self.kernel_multipliers)
        return mmd_from_kernels(*split_blocks(kernel, ops.shape(source)[0]))

    def get_config(self):
        base_config = super().get_config()
        config = {
            "kernel_multipliers": list(self.kernel_multipliers),
            "linear": self.linear,
        }
        return {**base_config, **config}
