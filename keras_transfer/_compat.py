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


def trainable_kind_variables(layer):
    """Variables of `layer` (and its sublayers) created trainable, each once.

    Kernels, biases, BatchNorm scales: whether or not the layer is frozen
    now. Keras keeps them apart from never-trained state (moving statistics)
    in `Layer._trainable_variables`; the public `trainable_weights` is empty
    for a frozen layer, and `Variable.trainable` is switched off with it, so
    no public attribute tells the two kinds apart.
    """
    out, seen = [], set()
    for sub in flatten_layers(layer):
        try:
            own = sub._trainable_variables
        except AttributeError as error:
            raise _moved("Layer._trainable_variables", error) from error
        for variable in own:
            if id(variable) not in seen:
                seen.add(id(variable))
                out.append(variable)
    return out


def model_building(optimizer, max_depth=40):
    """The `keras.Model` whose `fit`/`compile` is building `optimizer`, or None.

    An optimizer is given its variables by the model (`optimizer.build(
    model.trainable_variables)`) but never the model itself, and no public
    API tells an optimizer which model it serves. The model is found on the
    call stack: the Keras trainer method that builds the optimizer runs with
    the model as `self`, and that model's `optimizer` is `optimizer` (or a
    `LossScaleOptimizer` around it). Best effort: None when not found.
    """
    import inspect

    frame = inspect.currentframe()
    try:
        depth = 0
        while frame is not None and depth < max_depth:
            owner = frame.f_locals.get("self")
            if isinstance(owner, keras.Model):
                current = getattr(owner, "optimizer", None)
                while current is not None:
                    if current is optimizer:
                        return owner
                    current = getattr(current, "inner_optimizer", None)
            frame = frame.f_back
            depth += 1
    finally:
        del frame
    return None
