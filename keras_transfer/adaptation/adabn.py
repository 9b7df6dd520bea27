"""AdaBN: BatchNorm statistics re-estimated on target data."""

import numpy as np

from keras_transfer.adaptation import _test_time
from keras_transfer.api_export import keras_transfer_export
from keras_transfer.utils.checks import check_positive_int


@keras_transfer_export("keras_transfer.adaptation.adabn")
def adabn(model, target_x, batch_size=128, copy=True):
    """Re-estimates every BatchNorm layer's statistics on target data (AdaBN).

    Li et al. (2016), "Revisiting Batch Normalization For Practical Domain
    Adaptation": a network trained on the source keeps its weights; only the
    moving mean and variance of its `BatchNormalization` layers are replaced
    by the statistics of the target data, so each layer normalizes target
    activations as it normalized source activations. No labels, no training
    step. On CIFAR-10-C at severity 5, Wang et al. (2021) report 20.4% error
    with BatchNorm re-estimation against 43.5% without adaptation.

    The target inputs are passed in batches with `training=True`; each
    layer's statistics are its exact population mean and variance over all
    target samples (combined from the per-batch moments, weighted by batch
    size), not a momentum average. Layers above see activations normalized
    with the current batch's statistics, as during training. Other layers,
    `LayerNormalization` included, are left alone.

    The way back: with `copy=True` (the default) `model` is not touched and
    the adapted model is a copy (`keras.models.clone_model` with the same
    weights). With `copy=False` the model is adapted in place and returned;
    keep `weights = model.get_weights()` before to restore it bit for bit
    with `model.set_weights(weights)`.

    Args:
        model: A trained Keras model with `BatchNormalization` layers (at any
            depth).
        target_x: Array of unlabelled target inputs, shape `(samples, ...)`.
        batch_size: Integer. Samples per forward pass. Defaults to `128`.
        copy: Boolean. Adapt a copy (`True`, the default) or `model` itself.

    Returns:
        The adapted model (a copy of `model`, or `model` with `copy=False`).

    Examples:

        >>> import keras_transfer
        >>> model = keras.Sequential([keras.Input((3,)),
        ...     keras.layers.BatchNormalization(), keras.layers.Dense(2)])
        >>> rng = np.random.default_rng(0)
        >>> target = rng.normal(5.0, 2.0, (64, 3)).astype("float32")
        >>> adapted = keras_transfer.adaptation.adabn(model, target)
        >>> bn = adapted.layers[0]
        >>> bool(np.allclose(bn.moving_mean.numpy(), target.mean(0), atol=1e-4))
        True
        >>> bool(np.allclose(bn.moving_variance.numpy(), target.var(0), atol=1e-4))
        True
        >>> model.layers[0].moving_mean.numpy().tolist()  # the original is kept
        [0.0, 0.0, 0.0]
    """
    _test_time.check_model(model)
    target = _test_time.as_target_array(target_x, min_samples=2)
    batch_size = check_positive_int("batch_size", batch_size)
    layers = _test_time.batch_norm_layers(model)
    if not layers:
        raise ValueError(
            "`model` has no BatchNormalization layers: AdaBN re-estimates "
            "BatchNorm statistics. Received: model="
            f"{getattr(model, 'name', type(model).__name__)!r}"
        )
    for layer in layers:
        if getattr(layer, "renorm", False):
            raise ValueError(
                "`model` has a BatchNormalization layer with `renorm=True` "
                f"({layer.name!r}): its statistics cannot be re-estimated by "
                "AdaBN."
            )
    adapted = _test_time.copy_model(model) if copy else model
    reestimate_batch_norm(adapted, target, batch_size)
    return adapted


def reestimate_batch_norm(model, target, batch_size):
    """Sets each BatchNorm layer's moving statistics to its target moments.

    Each batch runs with `training=True` after the moving statistics are set
    to zero; the layer then holds `(1 - momentum) * batch_moment`, from which
    the batch's mean and variance are read back exactly. Batch moments are
    combined into population moments (law of total variance).
    """
    layers = _test_time.batch_norm_layers(model)
    n = len(target)
    # Drop a last batch of one sample: it has no variance of its own.
    bounds = list(range(0, n, batch_size)) + [n]
    if len(bounds) > 2 and bounds[-1] - bounds[-2] == 1:
        bounds.pop(-2)
    sums = {id(layer): None for layer in layers}
    counts = 0
    for start, stop in zip(bounds[:-1], bounds[1:]):
        for layer in layers:
            layer.moving_mean.assign(np.zeros(layer.moving_mean.shape, "float32"))
            layer.moving_variance.assign(
                np.zeros(layer.moving_variance.shape, "float32")
            )
        model(target[start:stop], training=True)
        size = stop - start
        for layer in layers:
            scale = 1.0 - float(layer.momentum)
            mean = np.asarray(layer.moving_mean.numpy(), "float64") / scale
            var = np.asarray(layer.moving_variance.numpy(), "float64") / scale
            # Accumulate sum of x and sum of x^2 per channel.
            part = (size * mean, size * (var + mean**2))
            old = sums[id(layer)]
            sums[id(layer)] = (
                part if old is None else (old[0] + part[0], old[1] + part[1])
            )
        counts += size
    for layer in layers:
        total, total_sq = sums[id(layer)]
        mean = total / counts
        var = np.maximum(total_sq / counts - mean**2, 0.0)
        layer.moving_mean.assign(mean.astype("float32"))
        layer.moving_variance.assign(var.astype("float32"))
