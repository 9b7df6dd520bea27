"""Shared machinery of the domain adaptation losses (private)."""

import keras
from keras import ops


def _to_tensor(value, dtype):
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return [_to_tensor(v, dtype) for v in value]
    return ops.convert_to_tensor(value, dtype=dtype)


class DomainLoss(keras.losses.Loss):
    """Base of the losses called as `loss(source, target)` -> scalar.

    Subclasses implement `compute(source, target)`, where `source` and
    `target` are tensors (or lists of tensors, see each class) holding one
    batch of each domain. The value is a scalar; under `tf.distribute` it is
    scaled for summation over replicas, like every Keras loss.
    """

    #: Smallest batch size (per domain) the estimator is defined for.
    min_samples = 1
    #: Whether the loss reads only the target batch.
    target_only = False

    def __init__(self, name=None, reduction="sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def __call__(self, source, target=None, sample_weight=None):
        if sample_weight is not None:
            raise ValueError(
                f"`{type(self).__name__}` is a batch-level statistic and does "
                "not take `sample_weight`. Received: sample_weight="
                f"{type(sample_weight).__name__}"
            )
        if target is None:
            if not self.target_only:
                raise ValueError(
                    f"`{type(self).__name__}` is called as loss(source, target) "
                    "with one batch of each domain. Received: target=None"
                )
            source, target = None, source
        with keras.name_scope(self.name):
            source = _to_tensor(source, self.dtype)
            target = _to_tensor(target, self.dtype)
            self._check(source, target)
            value = self.compute(source, target)
            return _Identity(self.reduction, self.dtype)(value, value)

    def call(self, y_true, y_pred):
        # `keras.losses.Loss` API: `y_true` is the source, `y_pred` the target.
        return self.compute(y_true, y_pred)

    def compute(self, source, target):
        raise NotImplementedError

    def _check(self, source, target):
        pairs = [] if source is None else _zip_parts(source, target, self)
        for s, t in pairs:
            if s.shape[1:] != t.shape[1:] and None not in (
                tuple(s.shape[1:]) + tuple(t.shape[1:])
            ):
                raise ValueError(
                    f"`{type(self).__name__}`: source and target must have the "
                    "same feature shape. Received: source shape "
                    f"{tuple(s.shape)}, target shape {tuple(t.shape)}"
                )
        parts = [target] if not isinstance(target, list) else target
        if source is not None:
            parts = parts + ([source] if not isinstance(source, list) else source)
        for part in parts:
            n = part.shape[0]
            if n is not None and n < self.min_samples:
                raise ValueError(
                    f"`{type(self).__name__}` needs at least {self.min_samples} "
                    "samples per domain in a batch. Received: batch_size="
                    f"{n}. Use a larger `batch_size`."
                )

    def get_config(self):
        return super().get_config()


def _zip_parts(source, target, loss):
    s_list = source if isinstance(source, list) else [source]
    t_list = target if isinstance(target, list) else [target]
    if len(s_list) != len(t_list):
        raise ValueError(
            f"`{type(loss).__name__}`: source and target must have the same "
            f"number of parts. Received: {len(s_list)} and {len(t_list)}"
        )
    return list(zip(s_list, t_list))


class _Identity(keras.losses.Loss):
    """Applies the Keras reduction and distribution scaling to a scalar."""

    def __init__(self, reduction, dtype):
        super().__init__(name="identity", reduction=reduction, dtype=dtype)

    def call(self, y_true, y_pred):
        return y_pred


def squared_distances(a, b):
    """Pairwise squared Euclidean distances between the rows of `a` and `b`."""
    a2 = ops.sum(ops.square(a), axis=-1)
    b2 = ops.sum(ops.square(b), axis=-1)
    d = ops.expand_dims(a2, 1) + ops.expand_dims(b2, 0) - 2.0 * ops.matmul(
        a, ops.transpose(b)
    )
    return ops.maximum(d, 0.0)


def gaussian_kernels(sq_dist, multipliers, base=None, sigma=None):
    """Sum of Gaussian kernels exp(-d / (2 m base)) over the multipliers.

    `base` defaults to the mean squared distance (no gradient), the
    data-driven bandwidth of DAN; `sigma` fixes a single bandwidth instead.
    """
    if sigma is not None:
        return ops.exp(-sq_dist / (2.0 * float(sigma) ** 2))
    if base is None:
        base = ops.stop_gradient(ops.mean(sq_dist))
    base = ops.maximum(base, 1e-6)
    total = 0.0
    for m in multipliers:
        total = total + ops.exp(-sq_dist / (2.0 * float(m) * base))
    return total


def flatten_features(x):
    """Reshape `(batch, ...)` features to `(batch, dim)`."""
    if len(x.shape) == 2:
        return x
    return ops.reshape(x, (ops.shape(x)[0], -1))


def check_multipliers(multipliers, name="kernel_multipliers"):
    multipliers = tuple(float(m) for m in multipliers)
    if not multipliers or min(multipliers) <= 0:
        raise ValueError(
            f"`{name}` must be a non-empty tuple of positive floats. "
            f"Received: {name}={multipliers}"
        )
    return multipliers


def probabilities(x, from_logits):
    return ops.softmax(x, axis=-1) if from_logits else x


def log_probabilities(x, from_logits):
    if from_logits:
        return ops.log_softmax(x, axis=-1)
    return ops.log(ops.clip(x, 1e-7, 1.0))
