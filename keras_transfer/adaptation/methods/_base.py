"""What every adaptation method is: one small layer with one hook (private)."""

import collections

import keras
from keras import ops

#: What a method learns about the model when it is built.
MethodContext = collections.namedtuple(
    "MethodContext", ["feature_shape", "num_classes", "from_logits", "classifier"]
)


def flatten(x):
    """`(batch, ...)` -> `(batch, dim)`."""
    if x is None or len(x.shape) == 2:
        return x
    return ops.reshape(x, (ops.shape(x)[0], -1))


class AdaptationBatch:
    """One training batch as a method sees it.

    Attributes:
        source_features, target_features: The feature extractor's outputs on
            the source and the target batch (the classifier's input shape).
        source_predictions, target_predictions: The classifier's outputs on
            each batch (logits when `from_logits`), float32.
            `target_predictions` is `None` unless the method declares
            `needs_target_predictions`.
        from_logits: Whether the predictions are logits.
        training: Whether this is a training call.
    """

    def __init__(self, source_features, target_features, source_predictions,
                 target_predictions, from_logits, training=True):
        self.source_features = source_features
        self.target_features = target_features
        self.source_predictions = source_predictions
        self.target_predictions = target_predictions
        self.from_logits = bool(from_logits)
        self.training = training

    @property
    def n_source(self):
        return ops.shape(self.source_features)[0]

    def probabilities(self, predictions):
        """Class probabilities of `predictions` (softmax of logits)."""
        if predictions is None:
            return None
        return ops.softmax(predictions, axis=-1) if self.from_logits else predictions

    @property
    def source_probabilities(self):
        return self.probabilities(self.source_predictions)

    @property
    def target_probabilities(self):
        return self.probabilities(self.target_predictions)

    def flat_features(self):
        """`(source, target)` features flattened to `(batch, dim)`, float32."""
        return (
            ops.cast(flatten(self.source_features), "float32"),
            ops.cast(flatten(self.target_features), "float32"),
        )


class AdaptationMethod(keras.layers.Layer):
    """Base of the domain adaptation methods of `DomainAdaptationModel`.

    A method is a small layer that owns its hyperparameters (checked in
    `__init__`, errors naming the argument) and its trainable parts (a
    discriminator, an adversarial head), and implements one hook,
    `compute(batch)`, returning its loss on one `AdaptationBatch` (or
    `(loss, {metric_name: per-sample values})`). The class attributes say
    what it needs from the model:

    - `needs_target_predictions`: the classifier must run (with gradient)
      on the target batch and return `(batch, num_classes)` predictions.
    - `uses_discriminator`: it trains a domain discriminator; a model holds
      at most one such method.
    - `uses_reversal`: it has a `GradientReversal` layer
      (`self.gradient_reversal`), which `fit()` warms up.
    - `min_batch_size`: the smallest number of samples per domain in a batch.
    - `batch_statistic`: the loss is a statistic of the whole batch (a
      covariance, a kernel mean); under `tf.distribute` it is computed on the
      global batch gathered from every replica.
    - `metric_names`: per-sample metrics `compute` returns, logged as means.
    - `default_weight`: the weight of the term when `method=` gives the
      method without one (a name, or the object alone); a `(method,
      weight)` pair or a dict `{name: weight}` sets it.

    `build(context)` receives a `MethodContext` (feature shape, number of
    classes, `from_logits`, the classifier) and creates what the method owns.
    The model adds `weight * loss` to the source classification loss and logs
    `<name>_loss`.
    """

    needs_target_predictions = False
    uses_discriminator = False
    uses_reversal = False
    min_batch_size = 1
    batch_statistic = False
    metric_names = ()
    #: Weight of the term in the total loss when none is given.
    default_weight = 1.0
    #: Layer name, and prefix of the logged `<name>_loss`.
    default_name = None

    def __init__(self, name=None, **kwargs):
        super().__init__(name=name or self.default_name, **kwargs)
        self.from_logits = False
        self.num_classes = None

    def build(self, context):
        self.from_logits = bool(context.from_logits)
        self.num_classes = context.num_classes

    def start(self):
        """Called once, eagerly, when the model is built and before training.

        For state that must be set from built weights (MDD's adversary
        starts as a copy of the classifier). Does nothing by default.
        """

    def compute(self, batch):
        """The method's loss (a scalar) on `batch`, an `AdaptationBatch`."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement `compute(batch)`."
        )

    def call(self, *args, **kwargs):
        raise TypeError(
            f"{type(self).__name__} is used through `compute(batch)` by "
            "`DomainAdaptationModel`, not called on tensors."
        )

    def get_build_config(self):
        # Built by the model from its own shapes (`DomainAdaptationModel.build`).
        return None

    def get_config(self):
        return super().get_config()
