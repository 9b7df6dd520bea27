"""`L2SP`: keep fine-tuned weights close to their pretrained starting point."""

import types

import keras

from keras_transfer import _compat
from keras_transfer.api_export import keras_transfer_export
from keras_transfer.utils.checks import check_positive


def _trainable_kind_variables(layer):
    """Variables created trainable (kernels, biases, BN scales) in `layer`.

    Found whether or not `layer` is frozen right now; moving statistics and
    other state that is never trained are left out.
    """
    out, seen = [], set()
    for sub in _compat.flatten_layers(layer):
        for variable in _compat.own_trainable_variables(sub):
            if id(variable) not in seen:
                seen.add(id(variable))
                out.append(variable)
    return out


@keras_transfer_export("keras_transfer.regularizers.L2SP")
class L2SP(keras.layers.Wrapper):
    """L2-SP regularization (Li et al., 2018): stay close to the pretrained weights.

    Wrap the pretrained part of the network (a backbone, or any layer) in
    `L2SP`: it records the starting values `w0` of the wrapped layer's weights
    when it is built, in non-trainable weights of its own (so they are saved
    in `.keras` files), and on every training call adds

    ```
    alpha / 2 * sum ||w - w0||^2
    ```

    over the wrapped layer's currently trainable weights to the model's loss,
    pulling fine-tuned weights toward their pretrained values rather than
    toward zero as plain weight decay does. The forward pass is the wrapped
    layer's. It works with plain `model.fit`.

    The paper's second term, `beta / 2 * ||w||^2` on the new layers (the head),
    is ordinary L2 regularization: give the head's layers
    `kernel_regularizer=L2SP.head_regularizer(beta)`.

    Args:
        layer: The pretrained `keras.layers.Layer` (or model) to wrap. Build
            it (and load its pretrained weights) before the wrapper is built.
        alpha: Float >= 0. Strength of the pull toward the starting point.
            Defaults to 0.01.
        **kwargs: Base layer keyword arguments, such as `name`.

    Examples:

        >>> import keras_transfer
        >>> body = keras.layers.Dense(4, name="pretrained")
        >>> body.build((None, 3))
        >>> inputs = keras.Input((3,))
        >>> features = keras_transfer.regularizers.L2SP(body, alpha=0.1)(inputs)
        >>> outputs = keras.layers.Dense(
        ...     1, kernel_regularizer=keras_transfer.regularizers.L2SP.head_regularizer(
        ...         0.01
        ...     )
        ... )(features)
        >>> model = keras.Model(inputs, outputs)
        >>> model.compile(optimizer="sgd", loss="mse")
        >>> _ = model.fit(np.ones((4, 3)), np.ones((4, 1)), verbose=0)
    """

    def __init__(self, layer, alpha=0.01, **kwargs):
        check_positive("alpha", alpha, allow_zero=True)
        if not isinstance(layer, keras.layers.Layer):
            raise ValueError(
                "`layer` must be a Keras layer or model (the pretrained part). "
                f"Received: layer={layer!r}"
            )
        super().__init__(layer, **kwargs)
        self.alpha = float(alpha)

    @staticmethod
    def head_regularizer(beta):
        """The paper's `beta / 2 * ||w||^2` term for the new layers.

        Args:
            beta: Float >= 0. Strength of the weight decay on the new layers.

        Returns:
            A `keras.regularizers.L2` with factor `beta / 2`.
        """
        check_positive("beta", beta, allow_zero=True)
        return keras.regularizers.L2(beta / 2.0)

    def build(self, input_shape=None):
        if not self.layer.built:
            self.layer.build(input_shape)
        pairs = []
        for i, variable in enumerate(_trainable_kind_variables(self.layer)):
            start = keras.ops.convert_to_numpy(variable)

            def initializer(shape, dtype=None, start=start):
                return keras.ops.convert_to_tensor(start, dtype=dtype)

            anchor = self.add_weight(
                shape=variable.shape,
                initializer=initializer,
                dtype=variable.dtype,
                trainable=False,
                name=f"start_{i}",
            )
            pairs.append((variable, anchor))
        # Untracked holder: the wrapped weights are the wrapped layer's state.
        self._untracked = types.SimpleNamespace(pairs=pairs)
        self.built = True

    @property
    def _pairs(self):
        return self._untracked.pairs

    @property
    def starting_values(self):
        """The recorded starting values, one per regularized weight."""
        return [anchor for _, anchor in self._pairs]

    def penalty(self):
        """`alpha / 2 * sum ||w - w0||^2` over the currently trainable weights."""
        ops = keras.ops
        total = ops.zeros((), "float32")
        for variable, anchor in self._pairs:
            if variable.trainable:
                diff = ops.cast(variable, "float32") - ops.cast(anchor, "float32")
                total = total + ops.sum(ops.square(diff))
        return 0.5 * self.alpha * total

    def call(self, inputs, training=None, **kwargs):
        outputs = self.layer(inputs, training=training, **kwargs)
        if training and self.alpha > 0:
            self.add_loss(self.penalty())
        return outputs

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)

    def compute_output_spec(self, inputs, **kwargs):
        return self.layer.compute_output_spec(inputs, **kwargs)

    def get_config(self):
        base_config = super().get_config()
        return {**base_config, "alpha": self.alpha}
