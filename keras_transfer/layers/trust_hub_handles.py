"""`trust_hub_handles`: the handles a `HubLayer` may load from a config."""

import contextlib
import contextvars
import os

from keras_transfer.api_export import keras_transfer_export

_TRUSTED = contextvars.ContextVar("keras_transfer_trusted_hub_handles", default=())


def normalize_handle(handle):
    """The form handles are compared in: URLs as given, folders made absolute.

    Pure string work: nothing on disk or on the network is read.
    """
    handle = os.fspath(handle)
    if "://" in handle or handle.startswith(("hub:", "kaggle")):
        return handle.rstrip("/")
    return os.path.normpath(os.path.abspath(os.path.expanduser(handle)))


def is_trusted(handle):
    """Whether `handle` is in the allow-list of an enclosing `trust_hub_handles`."""
    try:
        key = normalize_handle(handle)
    except TypeError:
        return False
    return key in _TRUSTED.get()


@keras_transfer_export("keras_transfer.layers.trust_hub_handles")
@contextlib.contextmanager
def trust_hub_handles(handles):
    """Let `HubLayer`s with these handles load from a config in safe mode.

    A `.keras` file that holds a `HubLayer` keeps the module's handle (a
    SavedModel folder or a TF-Hub / Kaggle URL), and loading the layer
    loads and runs that SavedModel's TensorFlow graph. Under Keras's
    `safe_mode` (the default of `keras.saving.load_model`) a `HubLayer` is
    therefore not rebuilt from a config unless its handle is trusted: inside
    this context manager, for the handles listed; or everywhere with
    `keras.saving.load_model(path, safe_mode=False)` or
    `keras.config.enable_unsafe_deserialization()`. Every other layer of the
    file is still loaded in safe mode.

    Folders are compared as absolute paths, URLs as written (a trailing `/`
    ignored). Contexts nest; each adds to the handles of the enclosing one.

    Args:
        handles: A string (one handle) or an iterable of strings: SavedModel
            folders or TF-Hub / Kaggle handles.

    Examples:

        >>> import os, tempfile
        >>> module = tf.Module()
        >>> module.w = tf.Variable([[2.0], [1.0]])
        >>> module.__call__ = tf.function(
        ...     lambda x: tf.matmul(x, module.w),
        ...     input_signature=[tf.TensorSpec([None, 2], tf.float32)])
        >>> folder = os.path.join(tempfile.mkdtemp(), "module")
        >>> tf.saved_model.save(module, folder)
        >>> inputs = keras.Input((2,))
        >>> from keras_transfer.layers import HubLayer
        >>> model = keras.Model(inputs, HubLayer(folder)(inputs))
        >>> path = os.path.join(tempfile.mkdtemp(), "model.keras")
        >>> model.save(path)
        >>> with trust_hub_handles([folder]):
        ...     loaded = keras.saving.load_model(path)
        >>> loaded(np.array([[1.0, 1.0]], "float32")).numpy()
        array([[3.]], dtype=float32)
    """
    if isinstance(handles, (str, os.PathLike)):
        handles = [handles]
    try:
        keys = [normalize_handle(h) for h in handles]
    except TypeError:
        raise ValueError(
            "`handles` must be a string or an iterable of strings (SavedModel "
            f"folders or TF-Hub handles). Received: handles={handles!r}"
        ) from None
    token = _TRUSTED.set(tuple(_TRUSTED.get()) + tuple(keys))
    try:
        yield
    finally:
        _TRUSTED.reset(token)
