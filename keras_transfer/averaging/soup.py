"""`soup`: average the weights of several fine-tunes (model soups)."""

import os

import keras

from keras_transfer.api_export import keras_transfer_export
from keras_transfer.averaging._weights import (
    check_same_variables,
    check_score,
    mean,
)

METHODS = ("uniform", "greedy")


@keras_transfer_export("keras_transfer.averaging.soup")
def soup(models, validation_data=None, method="uniform", score=None, verbose=0):
    """Average the weights of models fine-tuned from the same pretrained start.

    Model soups (Wortsman et al., 2022): models fine-tuned from one
    pretrained start with different seeds or hyperparameters often lie in
    one basin, and the average of their weights is one model that is as
    accurate as their ensemble, and often more robust, at the cost of one.

    - `method="uniform"`: the mean of every model's weights.
    - `method="greedy"`: the models are sorted by their score on
      `validation_data`, best first; starting from the best, each next model
      joins the soup only if the soup's score does not drop. The greedy soup
      is never worse on `validation_data` than the best single model.

    Every weight is averaged, BatchNorm moving statistics included. The
    models are not changed: the soup is a new model (a clone of the first,
    compiled like it when it is compiled).

    Args:
        models: List of `keras.Model` instances or paths of `.keras` files,
            all of one architecture.
        validation_data: `(x, y)` arrays or a dataset of `(x, y)` batches.
            Needed for `method="greedy"`.
        method: `"uniform"` or `"greedy"`.
        score: Function `(model, validation_data) -> float`, higher is better,
            or `None` for the accuracy of a classifier.
        verbose: 0 or 1. With 1, prints each model's score and whether the
            greedy soup kept it.

    Returns:
        A new `keras.Model` with the averaged weights. Its attribute
        `soup_members` lists the indices (into `models`) of the models in
        the soup.

    Examples:

        >>> def member(value):
        ...     model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        ...     model.set_weights([np.full((2, 1), value), np.zeros(1)])
        ...     return model
        >>> averaged = soup([member(1.0), member(2.0), member(6.0)])
        >>> averaged.get_weights()[0].ravel().tolist()
        [3.0, 3.0]
        >>> averaged.soup_members
        [0, 1, 2]
    """
    if method not in METHODS:
        raise ValueError(
            f"`method` must be one of {METHODS}. Received: method={method!r}"
        )
    if not isinstance(models, (list, tuple)) or not models:
        raise ValueError(
            "`models` must be a non-empty list of keras.Model instances or "
            f"`.keras` paths. Received: models={models!r}"
        )
    if method == "greedy" and validation_data is None:
        raise ValueError(
            "`validation_data` is needed for method='greedy' (members are "
            "chosen by their score on it). Received: validation_data=None"
        )
    score = check_score(score)
    loaded = [_load(m, f"models[{i}]") for i, m in enumerate(models)]
    for i, model in enumerate(loaded[1:], start=1):
        check_same_variables(loaded[0], model, f"models[{i}]")
    weights = [m.get_weights() for m in loaded]
    result = _fresh_copy(models[0], loaded[0])

    if method == "uniform":
        members = list(range(len(loaded)))
    else:
        scores = [float(score(m, validation_data)) for m in loaded]
        order = sorted(range(len(loaded)), key=lambda i: -scores[i])
        members = [order[0]]
        best = scores[order[0]]
        if verbose:
            print(f"soup: models[{order[0]}] scores {best:.4f}, the soup starts")
        for i in order[1:]:
            result.set_weights(mean([weights[j] for j in members + [i]]))
            candidate = float(score(result, validation_data))
            keep = candidate >= best
            if keep:
                members.append(i)
                best = candidate
            if verbose:
                print(
                    f"soup: models[{i}] scores {scores[i]:.4f}; with it the soup "
                    f"scores {candidate:.4f}: {'kept' if keep else 'left out'}"
                )
    result.set_weights(mean([weights[j] for j in members]))
    result.soup_members = sorted(members)
    return result


def _load(model, where):
    if isinstance(model, keras.Model):
        return model
    if isinstance(model, (str, os.PathLike)):
        if not os.path.exists(model):
            raise ValueError(f"`{where}` is a path that does not exist: {model!r}")
        return keras.saving.load_model(model)
    raise ValueError(
        f"`{where}` must be a keras.Model or the path of a `.keras` file. "
        f"Received: {type(model).__name__}"
    )


def _fresh_copy(given, model):
    """A model to hold the soup: the loaded one for a path, else a clone."""
    if not isinstance(given, keras.Model):
        return model
    try:
        copy = keras.models.clone_model(model)
    except Exception as error:  # subclassed models without get_config
        raise ValueError(
            "The first model of `models` cannot be cloned to hold the soup "
            f"({error}). Save the models as `.keras` files and pass the paths."
        ) from error
    if getattr(model, "compiled", False):
        try:
            copy.compile_from_config(model.get_compile_config())
        except Exception:  # a compile that does not serialize: leave it
            pass
    return copy
