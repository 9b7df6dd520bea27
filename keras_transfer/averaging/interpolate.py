"""`interpolate`: a model between two weight lists (WiSE-FT)."""

import keras

from keras_transfer.api_export import keras_transfer_export
from keras_transfer.averaging._weights import blend, check_alpha, check_weights


@keras_transfer_export("keras_transfer.averaging.interpolate")
def interpolate(model, start_weights, end_weights, alpha):
    """Set a model's weights to `(1 - alpha) * start + alpha * end`.

    Weight-space ensembling (WiSE-FT, Wortsman et al., 2022): between the
    weights before fine-tuning (or after the head-only phase, a linear
    probe) and the fine-tuned weights, models along the straight line are
    often more robust under distribution shift than either end, at equal or
    better accuracy on the target. `alpha=0` gives `start_weights` exactly,
    `alpha=1` gives `end_weights` exactly. Integer weights, if any, are taken
    from `end_weights`.

    Args:
        model: The `keras.Model` the weights belong to.
        start_weights: List of arrays, as `model.get_weights()` gives.
        end_weights: List of arrays, as `model.get_weights()` gives.
        alpha: Float in [0, 1].

    Returns:
        `model`, with the interpolated weights.

    Examples:

        >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        >>> start = [np.zeros((2, 1)), np.zeros(1)]
        >>> end = [np.ones((2, 1)), np.full(1, 2.0)]
        >>> _ = interpolate(model, start, end, alpha=0.25)
        >>> [w.ravel().tolist() for w in model.get_weights()]
        [[0.25, 0.25], [0.5]]
    """
    if not isinstance(model, keras.Model):
        raise ValueError(f"`model` must be a keras.Model. Received: model={model!r}")
    alpha = check_alpha(alpha)
    start = check_weights(model, start_weights, "start_weights")
    end = check_weights(model, end_weights, "end_weights")
    model.set_weights(blend(start, end, alpha))
    return model
