"""The one place that reaches into Keras or TensorFlow internals.

Every use of a private Keras/TensorFlow attribute, of `keras.src`, or a
method replaced on an instance lives here, behind a small function with a
docstring that says why no public API does the job. Each reach has a test in
`tests/test_compat.py` that fails with the Keras version and the reach named
when a Keras release moves it.
"""

import keras

KERAS_VERSION = keras.version()


class CompatibilityError(RuntimeError):
    """A Keras or TensorFlow internal this package relies on has moved."""


def _moved(reach, error):
    return CompatibilityError(
        f"keras-transfer relies on `{reach}`, which this Keras "
        f"({KERAS_VERSION}) no longer provides ({error}). Please report it "
        "with your Keras version."
    )


def flatten_layers(layer, include_self=True, recursive=True):
    """`layer` and every layer it tracks, depth first, each once.

    Keras has no public recursive walk over a layer's sublayers
    (`Model.layers` lists the top level only); `Layer._flatten_layers` is the
    walk Keras itself uses for `trainable_weights`.
    """
    try:
        walk = layer._flatten_layers
    except AttributeError as error:
        raise _moved("Layer._flatten_layers", error) from error
    return list(walk(include_self=include_self, recursive=recursive))


def learning_rate_object(optimizer):
    """What the innermost optimizer keeps as its learning rate.

    A `keras.Variable` for a constant rate, or the `LearningRateSchedule`
    (or callable) it was given. `Optimizer.learning_rate` returns the
    schedule's value at the current step, not the schedule, and Keras has no
    public way to tell the two apart; `Optimizer._learning_rate` holds it.
    Wrappers (`LossScaleOptimizer`, `DiscriminativeLR`) are walked through
    their public `inner_optimizer`.
    """
    while hasattr(optimizer, "inner_optimizer"):
        optimizer = optimizer.inner_optimizer
    try:
        return optimizer._learning_rate
    except AttributeError as error:
        raise _moved("Optimizer._learning_rate", error) from error


def moving_average_of(optimizer, variable):
    """The EMA copy of `variable` an optimizer built with `use_ema=True` keeps.

    Keras keeps the averages in `Optimizer._model_variables_moving_average`,
    in the order of the variables the optimizer was built with
    (`Optimizer._get_variable_index`), and has no public accessor. Returns
    `None` when the optimizer keeps no average for `variable`.
    """
    try:
        averages = optimizer._model_variables_moving_average
        index = optimizer._get_variable_index(variable)
    except KeyError:
        return None
    except AttributeError as error:
        raise _moved("Optimizer._model_variables_moving_average", error) from error
    return averages[index]
