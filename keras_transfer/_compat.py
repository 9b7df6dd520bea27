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


def deserialization_safe_mode():
    """Keras's safe-mode flag for the deserialization under way.

    `True` inside `keras.saving.load_model(..., safe_mode=True)` (the
    default) and any `deserialize_keras_object` call in safe mode, `False`
    inside `load_model(..., safe_mode=False)` or after
    `keras.config.enable_unsafe_deserialization()`, and `None` when no
    deserialization has set it. Keras sets the flag with public API but
    offers no public way to read it; `keras.layers.TFSMLayer` and
    `keras.layers.Lambda` read it with
    `keras.src.saving.serialization_lib.in_safe_mode`, the reach used here.
    """
    try:
        from keras.src.saving import serialization_lib

        read = serialization_lib.in_safe_mode
    except (ImportError, AttributeError) as error:
        reach = "keras.src.saving.serialization_lib.in_safe_mode"
        raise _moved(reach, error) from error
    return read()


def metric_direction(name):
    """`"up"`, `"down"` or `None`: whether the Keras metric `name` improves up.

    `keras.metrics.get(name)` is public, but what a metric object says about
    its direction is the private `Metric._direction`, which Keras's own
    `MonitorCallback` (`EarlyStopping`, `ModelCheckpoint`) reads in
    `mode="auto"`. `None` when Keras knows no metric of that name or the
    metric does not say.
    """
    import keras

    try:
        metric = keras.metrics.get(name)
    except (ValueError, TypeError):
        return None
    if isinstance(metric, type):
        try:
            metric = metric()
        except TypeError:
            return None
    direction = getattr(metric, "_direction", None)
    return direction if direction in ("up", "down") else None
