"""Joint maximum mean discrepancy (JAN)."""

from keras import ops

from keras_transfer.api_export import keras_transfer_export
from keras_transfer.losses._base import (
    DomainLoss,
    check_multipliers,
    flatten_features,
    gaussian_kernels,
    squared_distances,
)
from keras_transfer.losses.mmd_loss import (
    DEFAULT_MULTIPLIERS,
    linear_mmd_from_kernels,
    linear_mmd_terms,
    linear_pairs,
    mmd_from_kernels,
    split_blocks,
)


@keras_transfer_export("keras_transfer.losses.JMMDLoss")
class JMMDLoss(DomainLoss):
    """Joint maximum mean discrepancy over features and predictions.

    The alignment loss of JAN (Long et al., 2017): the MMD of the joint
    distribution of several activations, with a kernel that is the product
    of one kernel per activation. Every activation but the last gets the
    multi-kernel Gaussian of `MMDLoss` (data-driven bandwidths); the last
    (the class predictions) gets one Gaussian of fixed width
    `prediction_sigma`, as in JAN, unless `prediction_sigma=None`.

    Called as `loss([source_features, source_predictions],
    [target_features, target_predictions])` (any number of parts, the same
    for both domains; a single tensor works as one part). Returns a scalar.
    The quadratic estimator is non-negative, symmetric and zero for identical
    batches; `linear=True` uses the linear-time estimator.

    Args:
        kernel_multipliers: Tuple of positive floats. Bandwidth multipliers of
            the Gaussian kernels on the features. Defaults to
            `(0.125, 0.25, 0.5, 1.0, 2.0)`.
        prediction_sigma: Float or `None`. Fixed Gaussian width for the last
            part. Defaults to `0.92`.
        linear: Boolean. Whether to use the linear-time estimator. Defaults
            to `False`.
        name: String. Name of the loss. Defaults to `"jmmd_loss"`.
        **kwargs: Base `keras.losses.Loss` arguments (`reduction`, `dtype`).

    Returns:
        A scalar tensor.

    Examples:

        >>> import keras_transfer
        >>> rng = np.random.default_rng(0)
        >>> f = rng.normal(size=(8, 4)).astype("float32")
        >>> p = keras.ops.softmax(rng.normal(size=(8, 3))).numpy()
        >>> loss = keras_transfer.losses.JMMDLoss()
        >>> float(loss([f, p], [f, p]))
        0.0
    """

    def __init__(self, kernel_multipliers=DEFAULT_MULTIPLIERS,
                 prediction_sigma=0.92, linear=False, name="jmmd_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.kernel_multipliers = check_multipliers(kernel_multipliers)
        if prediction_sigma is not None and not float(prediction_sigma) > 0:
            raise ValueError(
                "`prediction_sigma` must be a positive float or None. "
                f"Received: prediction_sigma={prediction_sigma}"
            )
        self.prediction_sigma = (
            None if prediction_sigma is None else float(prediction_sigma)
        )
        self.linear = bool(linear)
        self.min_samples = 2 if self.linear else 1

    def _sigma(self, index, count):
        return self.prediction_sigma if index == count - 1 and count > 1 else None

    def compute(self, source, target):
        source = source if isinstance(source, list) else [source]
        target = target if isinstance(target, list) else [target]
        count = len(source)
        if self.linear:
            kernels = None
            for i, (s, t) in enumerate(zip(source, target)):
                d = linear_mmd_terms(
                    *linear_pairs(flatten_features(s), flatten_features(t))
                )
                base = ops.stop_gradient(ops.mean(ops.concatenate(d, axis=0)))
                sigma = self._sigma(i, count)
                k = [
                    gaussian_kernels(x, self.kernel_multipliers, base=base,
                                     sigma=sigma)
                    for x in d
                ]
                kernels = k if kernels is None else [a * b for a, b in zip(kernels, k)]
            return linear_mmd_from_kernels(kernels)
        kernel = None
        for i, (s, t) in enumerate(zip(source, target)):
            pooled = ops.concatenate(
                [flatten_features(s), flatten_features(t)], axis=0
            )
            k = gaussian_kernels(
                squared_distances(pooled, pooled),
                self.kernel_multipliers,
                sigma=self._sigma(i, count),
            )
            kernel = k if kernel is None else kernel * k
        return mmd_from_kernels(*split_blocks(kernel, ops.shape(source[0])[0]))

    def get_config(self):
        base_config = super().get_config()
        config = {
            "kernel_multipliers": list(self.kernel_multipliers),
            "prediction_sigma": self.prediction_sigma,
            "linear": self.linear,
        }
        return {**base_config, **config}
