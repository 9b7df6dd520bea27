"""`recompute_batch_norm`: BatchNorm statistics for weights that changed."""

import keras
import numpy as np

from keras_transfer import _compat
from keras_transfer.api_export import keras_transfer_export


@keras_transfer_export("keras_transfer.averaging.recompute_batch_norm")
def recompute_batch_norm(model, data, steps=None, batch_size=32):
    """Recompute the moving statistics of the model's trainable BatchNorm layers.

    Averaged or interpolated weights no longer match the BatchNorm moving
    statistics recorded along the way (Izmailov et al., 2018): one pass over
    training data in training mode gives every BatchNorm layer that trains
    (`trainable=True`) the plain mean of its batch statistics. BatchNorm
    layers that are frozen (in inference mode, as `fine_tune` keeps them by
    default) are left as they are. Nothing else changes.

    Args:
        model: A `keras.Model`.
        data: Training inputs: an array (or `(x, y)` tuple of arrays), or a
            dataset of `x` or `(x, y)` batches.
        steps: Integer or `None`. At most this many batches (default: all).
        batch_size: Integer. Batch size for array `data`.

    Returns:
        The number of BatchNorm layers recomputed.

    Examples:

        >>> model = keras.Sequential([
        ...     keras.Input((3,)), keras.layers.BatchNormalization()
        ... ])
        >>> x = np.random.default_rng(0).normal(5.0, 2.0, size=(64, 3))
        >>> recompute_batch_norm(model, x, batch_size=16)
        1
        >>> moving_mean = model.layers[0].moving_mean.numpy()
        >>> np.allclose(moving_mean, x.mean(axis=0), atol=1e-4)
        True
    """
    if not isinstance(model, keras.Model):
        raise ValueError(f"`model` must be a keras.Model. Received: model={model!r}")
    if steps is not None and (
        isinstance(steps, bool) or not isinstance(steps, int) or steps < 1
    ):
        raise ValueError(f"`steps` must be an integer >= 1. Received: steps={steps!r}")
    layers = [
        layer
        for layer in _compat.flatten_layers(model)
        if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable
    ]
    if not layers:
        return 0
    momenta = [layer.momentum for layer in layers]
    try:
        for k, x in enumerate(_batches(data, batch_size)):
            if steps is not None and k >= steps:
                break
            # Momentum k / (k + 1): the moving value becomes the running mean
            # of the batch statistics seen so far.
            for layer in layers:
                layer.momentum = k / (k + 1.0)
            model(x, training=True)
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
    return len(layers)


def _batches(data, batch_size):
    if isinstance(data, (tuple, list)):
        data = data[0]
    if isinstance(data, np.ndarray) or keras.ops.is_tensor(data):
        x = np.asarray(data)
        for i in range(0, len(x), batch_size):
            yield x[i : i + batch_size]
        return
    for batch in data:
        yield batch[0] if isinstance(batch, (tuple, list)) else batch
