"""The DANN warm-start schedule of the gradient reversal factor."""

import math
import warnings

import keras

from keras_transfer import _compat
from keras_transfer.api_export import keras_transfer_export


def _reversal_layers(model):
    from keras_transfer.layers.gradient_reversal import GradientReversal

    found = []
    for layer in _compat.flatten_layers(model):
        if isinstance(layer, GradientReversal):
            found.append(layer)
    return found


@keras_transfer_export("keras_transfer.callbacks.DANNLambdaScheduler")
class DANNLambdaScheduler(keras.callbacks.Callback):
    """Raise the gradient reversal factor from 0 along the DANN schedule.

    Before each training batch, every `GradientReversal` layer of the model
    gets `lambda = max_value * (2 / (1 + exp(-gamma * p)) - 1)`, where `p` in
    [0, 1] is the training progress (Ganin et al., 2016). Early on, when the
    features are still noise, the discriminator's gradient barely reaches the
    feature extractor. The update writes a variable: nothing retraces.

    `p` counts batches over `total_steps`; by default that is
    `epochs * steps_per_epoch` of the `fit()` call (the dataset must then
    have a known length). The state is reset in `on_train_begin`.

    Args:
        max_value: Float, >= 0. Value that lambda approaches at the end.
            Defaults to `1.0`.
        gamma: Float, > 0. Steepness of the schedule. Defaults to `10.0`.
        total_steps: Int or `None`. Number of batches that make up `p = 1`.
            Defaults to `None` (read from `fit()`).

    Examples:

        >>> import keras_transfer
        >>> inputs = keras.Input((2,))
        >>> reversed_ = keras_transfer.layers.GradientReversal()(inputs)
        >>> model = keras.Model(inputs, keras.layers.Dense(1)(reversed_))
        >>> model.compile("sgd", "mse")
        >>> scheduler = keras_transfer.callbacks.DANNLambdaScheduler(max_value=0.5)
        >>> _ = model.fit(np.zeros((8, 2)), np.zeros((8, 1)), batch_size=4,
        ...               epochs=2, callbacks=[scheduler], verbose=0)
        >>> round(scheduler.value(1.0), 4)
        0.4999
        >>> round(float(model.layers[1].lambda_variable.numpy()), 4)
        0.4994
    """

    def __init__(self, max_value=1.0, gamma=10.0, total_steps=None):
        super().__init__()
        if not float(max_value) >= 0.0:
            raise ValueError(
                "`max_value` must be >= 0 (a negative lambda would stop "
                f"reversing the gradient). Received: max_value={max_value}"
            )
        if not float(gamma) > 0.0:
            raise ValueError(f"`gamma` must be > 0. Received: gamma={gamma}")
        if total_steps is not None and int(total_steps) < 1:
            raise ValueError(
                f"`total_steps` must be a positive int or None. Received: "
                f"total_steps={total_steps}"
            )
        self.max_value = float(max_value)
        self.gamma = float(gamma)
        self.total_steps = None if total_steps is None else int(total_steps)
        self._step = 0
        self._steps = None
        self._layers = []

    def value(self, progress):
        """Lambda at training progress `progress` in [0, 1]."""
        progress = min(max(float(progress), 0.0), 1.0)
        return self.max_value * (2.0 / (1.0 + math.exp(-self.gamma * progress)) - 1.0)

    def on_train_begin(self, logs=None):
        self._step = 0
        self._layers = _reversal_layers(self.model)
        if not self._layers:
            warnings.warn(
                "DANNLambdaScheduler: the model has no `GradientReversal` layer; "
                "the callback does nothing.",
                stacklevel=2,
            )
        steps = self.total_steps
        if steps is None:
            epochs = self.params.get("epochs")
            per_epoch = self.params.get("steps")
            if epochs and per_epoch:
                steps = int(epochs) * int(per_epoch)
        if steps is None:
            steps = self._unknown_steps()
        self._steps = max(steps, 1)

    def _unknown_steps(self):
        """Called when `fit()` does not know its number of steps."""
        raise ValueError(
            "DANNLambdaScheduler could not read the number of steps from "
            "fit() (the dataset has no known length). Pass `total_steps`."
        )

    def on_train_batch_begin(self, batch, logs=None):
        # On JAX, reading `self.model` attaches the training state to the
        # variables, so the assignment below reaches the next step.
        self.model  # noqa: B018
        lam = self.value(self._step / self._steps)
        for layer in self._layers:
            layer.lambda_variable.assign(lam)
        self._step += 1

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def get_config(self):
        return {
            "max_value": self.max_value,
            "gamma": self.gamma,
            "total_steps": self.total_steps,
        }
