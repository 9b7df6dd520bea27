"""`choose_alpha`: pick the WiSE-FT mixing coefficient on validation data."""

import keras

from keras_transfer.api_export import keras_transfer_export
from keras_transfer.averaging._weights import (
    blend,
    check_alpha,
    check_score,
    check_weights,
)

DEFAULT_ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)


@keras_transfer_export("keras_transfer.averaging.choose_alpha")
def choose_alpha(
    model,
    start_weights,
    end_weights,
    validation_data,
    alphas=DEFAULT_ALPHAS,
    score=None,
):
    """Score the interpolations between two weight lists and keep the best.

    For each `alpha`, the model gets `(1 - alpha) * start + alpha * end`
    (see `interpolate`) and is scored on `validation_data`. The model is left
    with the weights of the best `alpha`; on a tie the larger `alpha` (closer
    to the fine-tuned end) wins. Choose on a validation split, never on the
    test or shifted data you report on.

    Args:
        model: The `keras.Model` the weights belong to.
        start_weights: List of arrays, as `model.get_weights()` gives.
        end_weights: List of arrays, as `model.get_weights()` gives.
        validation_data: `(x, y)` arrays or a dataset of `(x, y)` batches.
        alphas: Sequence of floats in [0, 1] to try.
        score: Function `(model, validation_data) -> float`, higher is better,
            or `None` for the accuracy of a classifier (argmax of its
            outputs against integer or one-hot labels).

    Returns:
        A tuple `(best_alpha, scores)`, `scores` a dict `{alpha: score}`.

    Examples:

        >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)])
        >>> start = [np.zeros((2, 2)), np.zeros(2)]
        >>> end = [np.array([[1.0, -1.0], [1.0, -1.0]]), np.zeros(2)]
        >>> x = np.array([[1.0, 1.0], [-1.0, -1.0]])
        >>> y = np.array([0, 1])
        >>> best, scores = choose_alpha(model, start, end, (x, y))
        >>> best, scores[0.0], scores[1.0]
        (1.0, 0.5, 1.0)
    """
    if not isinstance(model, keras.Model):
        raise ValueError(f"`model` must be a keras.Model. Received: model={model!r}")
    if not isinstance(alphas, (list, tuple)) or not alphas:
        raise ValueError(
            f"`alphas` must be a non-empty list of floats in [0, 1]. Received: "
            f"alphas={alphas!r}"
        )
    alphas = [check_alpha(a, "alphas") for a in alphas]
    score = check_score(score)
    start = check_weights(model, start_weights, "start_weights")
    end = check_weights(model, end_weights, "end_weights")
    scores = {}
    for alpha in alphas:
        model.set_weights(blend(start, end, alpha))
        scores[alpha] = float(score(model, validation_data))
    best = max(scores, key=lambda a: (scores[a], a))
    model.set_weights(blend(start, end, best))
    return best, scores
