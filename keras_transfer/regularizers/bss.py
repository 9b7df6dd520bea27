"""`BSS`: batch spectral shrinkage of the feature batch."""

import numbers

import keras

from keras_transfer.api_export import keras_transfer_export
from keras_transfer.utils import global_batch
from keras_transfer.utils.checks import check_positive


@keras_transfer_export("keras_transfer.regularizers.BSS")
class BSS(keras.layers.Layer):
    """Batch spectral shrinkage (Chen et al., 2019): curb negative transfer.

    Put `BSS` on the feature tensor of a fine-tuned network (between the
    backbone and the head). The forward pass is the identity; on training calls
    it adds

    ```
    eta * sum_{i=1..k} sigma_{-i}^2
    ```

    to the model's loss, where `sigma_{-i}` are the `k` smallest singular
    values of the batch of features (a `batch x features` matrix; other axes
    are flattened). Shrinking the small singular values suppresses the
    feature directions that are least transferable, which the paper found to
    cause negative transfer. It works with plain `model.fit`. The singular
    values are a statistic of the whole batch, so under a `tf.distribute`
    strategy the penalty is computed on the global batch, gathered from
    every replica: a two-replica run takes the same steps as one device
    (tested). Only the `loss` that `fit` logs may differ there: Keras keeps
    a layer's added losses in one list that the replicas' threads share,
    and a replica that resumes after the gather can read the other's
    penalty too (a term without gradient for it, so the step is unchanged).

    Args:
        k: Int >= 1. Number of smallest singular values to shrink. Defaults
            to 1, the paper's choice.
        eta: Float >= 0. Weight of the penalty. Defaults to 1e-3.
        **kwargs: Base layer keyword arguments, such as `name`.

    Examples:

        >>> import keras_transfer
        >>> inputs = keras.Input((6,))
        >>> features = keras.layers.Dense(4, activation="relu")(inputs)
        >>> features = keras_transfer.regularizers.BSS(k=1, eta=1e-3)(features)
        >>> model = keras.Model(inputs, keras.layers.Dense(2)(features))
        >>> model.compile(optimizer="adam", loss="mse")
        >>> _ = model.fit(np.ones((8, 6)), np.ones((8, 2)), verbose=0)
    """

    def __init__(self, k=1, eta=1e-3, **kwargs):
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
            raise ValueError(f"`k` must be an integer >= 1. Received: k={k!r}")
        check_positive("eta", eta, allow_zero=True)
        super().__init__(**kwargs)
        self.k = int(k)
        self.eta = float(eta)
        self.supports_masking = True

    def penalty(self, features):
        """`eta` times the sum of the `k` smallest squared singular values.

        Args:
            features: Tensor of shape `(batch, ...)`.

        Returns:
            A float32 scalar tensor.
        """
        ops = keras.ops
        x = ops.cast(features, "float32")
        x = ops.reshape(x, (ops.shape(x)[0], -1))
        singular_values = ops.svd(x, compute_uv=False)  # descending
        smallest = singular_values[-self.k :]
        return self.eta * ops.sum(ops.square(smallest))

    def call(self, inputs, training=None):
        if training and self.eta > 0:
            # Keras divides added losses by the number of replicas and sums
            # the replicas' gradients: each replica adds the global penalty.
            self.add_loss(self.penalty(global_batch.gather(inputs)))
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        base_config = super().get_config()
        return {**base_config, "k": self.k, "eta": self.eta}
