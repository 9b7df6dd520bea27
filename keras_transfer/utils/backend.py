"""Which Keras backend runs, and a clear error for TensorFlow-only features.

Most of keras-transfer is written with `keras.ops` and runs on every Keras
backend. A few features are TensorFlow by nature (TF-Hub modules, SavedModel
and TFLite export, `tf.distribute`); on another backend they raise
`require_tensorflow_backend`'s error, which names the backend that runs and
what to use there instead, before anything is changed.
"""

import contextlib

import keras


def backend():
    """The name of the Keras backend that runs (`"tensorflow"`, `"jax"`, ...)."""
    return keras.backend.backend()


def is_tensorflow():
    """Whether Keras runs on TensorFlow (the backend `tf.distribute` needs)."""
    return backend() == "tensorflow"


def require_tensorflow_backend(feature, instead):
    """Raise a `RuntimeError` unless Keras runs on the TensorFlow backend.

    Args:
        feature: String. The feature that needs TensorFlow, e.g.
            "`HubLayer` (TF-Hub modules and SavedModels)".
        instead: String. What to use on the other backends.

    Examples:

        >>> require_tensorflow_backend("`to_saved_model`", "`model.export`")
        >>> keras.backend.backend()
        'tensorflow'
    """
    name = backend()
    if name == "tensorflow":
        return
    raise RuntimeError(
        f"{feature} needs the TensorFlow backend of Keras, but Keras runs on "
        f"the {name!r} backend (KERAS_BACKEND={name}). {instead}"
    )


def strategy_scope(model):
    """The `tf.distribute` scope `model` was built under, else a null scope.

    On TensorFlow every model has a `distribute_strategy` (the default one
    outside any scope); other backends have no `tf.distribute`.
    """
    strategy = getattr(model, "distribute_strategy", None)
    if not is_tensorflow() or strategy is None:
        return contextlib.nullcontext()
    return strategy.scope()
