"""`PreprocessedModel`: a preprocessor layer in front of a functional network."""

import keras
import numpy as np

from keras_transfer.api_export import keras_transfer_export


@keras_transfer_export("keras_transfer.backbones.PreprocessedModel")
class PreprocessedModel(keras.Model):
    """Raw inputs -> `preprocessor` -> `network`, saved and loaded as one model.

    keras-hub text preprocessors (tokenizers) load their vocabulary after
    the model graph is rebuilt, so they cannot sit inside a functional graph
    that is reloaded from `.keras`. This model keeps the preprocessor outside
    the graph: it is called first, then the functional `network`. This is
    what `add_head` returns for text.

    `fit`, `evaluate` and `predict` take raw strings as Python lists or
    NumPy arrays as well as tensors and datasets: string arrays are turned
    into string tensors first (Keras's array adapter does not take them).

    Args:
        preprocessor: A layer mapping raw inputs (e.g. strings) to the
            network's inputs (e.g. a keras-hub `TextClassifierPreprocessor`).
        network: A `keras.Model` from preprocessed inputs to predictions.
        **kwargs: Passed to `keras.Model`.

    Examples:

        >>> network = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        >>> model = PreprocessedModel(keras.layers.Rescaling(0.5), network)
        >>> tuple(model(np.ones((3, 2))).shape)
        (3, 1)
    """

    def __init__(self, preprocessor, network, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(network, keras.Model):
            raise ValueError(
                f"`network` must be a keras.Model. Received: network={network!r}"
            )
        if not callable(preprocessor):
            raise ValueError(
                "`preprocessor` must be a layer. "
                f"Received: preprocessor={preprocessor!r}"
            )
        self.preprocessor = preprocessor
        self.network = network

    def fit(self, x=None, y=None, *args, **kwargs):
        return super().fit(_strings_as_tensor(x), y, *args, **kwargs)

    def evaluate(self, x=None, y=None, *args, **kwargs):
        return super().evaluate(_strings_as_tensor(x), y, *args, **kwargs)

    def predict(self, x, *args, **kwargs):
        return super().predict(_strings_as_tensor(x), *args, **kwargs)

    def build(self, input_shape=None):
        # The network is built already; the preprocessor may only be callable
        # once its assets (vocabulary) are loaded, so nothing is traced here.
        self.built = True

    def call(self, inputs, training=None):
        return self.network(self.preprocessor(inputs), training=training)

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "preprocessor": keras.saving.serialize_keras_object(self.preprocessor),
            "network": keras.saving.serialize_keras_object(self.network),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["preprocessor"] = keras.saving.deserialize_keras_object(
            config["preprocessor"]
        )
        config["network"] = keras.saving.deserialize_keras_object(config["network"])
        return cls(**config)


def _is_strings(x):
    if isinstance(x, np.ndarray):
        return x.dtype.kind in ("U", "S") or (
            x.dtype.kind == "O" and x.size > 0
            and isinstance(x.flat[0], (str, bytes))
        )
    return (
        isinstance(x, (list, tuple))
        and len(x) > 0
        and all(isinstance(item, (str, bytes)) for item in x)
    )


def _strings_as_tensor(x):
    """Lists and NumPy arrays of strings -> a string tensor; else unchanged."""
    if not _is_strings(x):
        return x
    import tensorflow as tf

    array = np.asarray(x)
    if array.dtype.kind == "O":
        array = np.array(
            [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in array.flat]
        ).reshape(array.shape)
    return tf.constant(array)
