"""One export decorator for every public symbol.

Every public class goes through `keras_transfer_export`, which registers it for
Keras saving under the package name ``"keras_transfer"``. A `.keras` file that
contains our objects therefore loads with plain `keras.saving.load_model(path)`,
with `safe_mode` on and no `custom_objects`, once `keras_transfer` is imported.
"""

import keras

PACKAGE = "keras_transfer"


def keras_transfer_export(path=None, serializable=True):
    """Register a class or function as public and Keras-serializable.

    Args:
        path: String or list of strings. Public path(s) of the symbol, such as
            `"keras_transfer.layers.GradientReversal"`. Kept as documentation
            on the symbol (`_keras_transfer_paths`).
        serializable: Boolean. Register the symbol for Keras saving. False for
            the few public classes that are views of live objects and have no
            config (`GroupedLayer`).
    """
    paths = [path] if isinstance(path, str) else list(path or [])

    def decorator(symbol):
        symbol._keras_transfer_paths = paths
        if not serializable:
            return symbol
        return keras.saving.register_keras_serializable(package=PACKAGE)(symbol)

    return decorator
