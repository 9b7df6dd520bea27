"""A domain discriminator head for adversarial domain adaptation."""

import keras

from keras_transfer.api_export import keras_transfer_export


@keras_transfer_export("keras_transfer.layers.DomainDiscriminator")
class DomainDiscriminator(keras.layers.Layer):
    """Dense-ReLU-(BatchNorm)-(Dropout) blocks ending in one domain logit.

    The discriminator of DANN and CDAN: it reads features (after a
    `GradientReversal` layer) and returns one logit per sample, positive for
    "source", negative for "target". Train it with binary cross-entropy
    `from_logits=True`.

    Args:
        hidden_units: Tuple of ints. Width of each hidden Dense layer. Defaults
            to `(256, 256)`.
        batch_norm: Boolean. Whether a BatchNormalization follows each hidden
            layer. Defaults to `False`.
        dropout: Float in [0, 1). Dropout rate after each hidden layer; `0`
            disables it. Defaults to `0.0`.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Examples:

        >>> import keras_transfer
        >>> disc = keras_transfer.layers.DomainDiscriminator(hidden_units=(8,))
        >>> tuple(disc(np.zeros((4, 3), "float32")).shape)
        (4, 1)
    """

    def __init__(self, hidden_units=(256, 256), batch_norm=False, dropout=0.0,
                 **kwargs):
        super().__init__(**kwargs)
        if isinstance(hidden_units, int):
            hidden_units = (hidden_units,)
        hidden_units = tuple(hidden_units)
        if not all(isinstance(u, int) and u > 0 for u in hidden_units):
            raise ValueError(
                "`hidden_units` must be a tuple of positive ints. "
                f"Received: hidden_units={hidden_units}"
            )
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(
                f"`dropout` must be in [0, 1). Received: dropout={dropout}"
            )
        self.hidden_units = hidden_units
        self.batch_norm = bool(batch_norm)
        self.dropout = float(dropout)
        self.hidden_layers = []
        for i, units in enumerate(hidden_units):
            self.hidden_layers.append(
                keras.layers.Dense(units, activation="relu", name=f"dense_{i}")
            )
            if self.batch_norm:
                self.hidden_layers.append(keras.layers.BatchNormalization(name=f"bn_{i}"))
            if self.dropout:
                self.hidden_layers.append(
                    keras.layers.Dropout(self.dropout, name=f"dropout_{i}")
                )
        self.logit = keras.layers.Dense(1, name="logit")

    def build(self, input_shape):
        shape = tuple(input_shape)
        for layer in self.hidden_layers:
            layer.build(shape)
            shape = layer.compute_output_shape(shape)
        self.logit.build(shape)

    def call(self, inputs, training=None):
        x = inputs
        for layer in self.hidden_layers:
            if isinstance(layer, keras.layers.Dense):
                x = layer(x)
            else:
                x = layer(x, training=training)
        return self.logit(x)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)[:-1] + (1,)

    def get_config(self):
        base_config = super().get_config()
        config = {
            "hidden_units": list(self.hidden_units),
            "batch_norm": self.batch_norm,
            "dropout": self.dropout,
        }
        return {**base_config, **config}
