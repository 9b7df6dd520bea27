"""The gradient reversal layer of domain-adversarial training (DANN)."""

import keras
from keras import ops

from keras_transfer.api_export import keras_transfer_export
from keras_transfer.utils.checks import check_lambda


@ops.custom_gradient
def _reverse_gradient(x, lambda_):
    def grad(*args, upstream=None):
        if upstream is None:
            (upstream,) = args
        scale = ops.cast(lambda_, upstream.dtype)
        return ops.negative(upstream) * scale, ops.zeros_like(lambda_)

    return ops.copy(x), grad


@keras_transfer_export("keras_transfer.layers.GradientReversal")
class GradientReversal(keras.layers.Layer):
    """Identity on the forward pass, gradient times `-lambda_` on the backward pass.

    The gradient reversal layer (Ganin & Lempitsky, 2015) sits between a feature
    extractor and a domain discriminator. The discriminator learns to tell the
    domains apart while the reversed gradient pushes the features to make that
    impossible, in one backward pass and with one optimizer.

    `lambda_` lives in a non-trainable variable (`lambda_variable`), so a
    callback such as `keras_transfer.callbacks.DANNLambdaScheduler` can change
    it between batches without retracing the train function. It is saved with
    the layer's weights.

    Args:
        lambda_: Float, >= 0. Factor applied to the reversed gradient. Defaults
            to `1.0`.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Examples:

        >>> import keras_transfer
        >>> layer = keras_transfer.layers.GradientReversal(lambda_=0.5)
        >>> x = tf.Variable([[1.0, 2.0]])
        >>> with tf.GradientTape() as tape:
        ...     y = layer(x)
        ...     loss = tf.reduce_sum(3.0 * y)
        >>> y.numpy()
        array([[1., 2.]], dtype=float32)
        >>> tape.gradient(loss, x).numpy()
        array([[-1.5, -1.5]], dtype=float32)
        >>> layer.set_lambda(2.0)
        >>> float(layer.lambda_variable.numpy())
        2.0
    """

    def __init__(self, lambda_=1.0, **kwargs):
        super().__init__(**kwargs)
        check_lambda(lambda_)
        self.lambda_ = float(lambda_)
        self.supports_masking = True
        self.lambda_variable = self.add_weight(
            shape=(),
            initializer=keras.initializers.Constant(self.lambda_),
            trainable=False,
            dtype="float32",
            name="lambda",
        )

    def set_lambda(self, value):
        """Set the reversal factor for the next batches (no retracing).

        Args:
            value: Float, >= 0. New factor.
        """
        check_lambda(value)
        self.lambda_variable.assign(float(value))

    def call(self, inputs):
        return _reverse_gradient(inputs, ops.convert_to_tensor(self.lambda_variable))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        base_config = super().get_config()
        return {**base_config, "lambda_": self.lambda_}
