"""A keras.Model that adapts a classifier to an unlabelled target domain."""

import math
import warnings

import keras
from keras import ops

from keras_transfer.adaptation import methods
from keras_transfer.adaptation._monitoring import TargetDiversity
from keras_transfer.adaptation.methods import (
    CDAN,
    MDD,
    AdaptationBatch,
    AdaptationMethod,
    MethodContext,
)
from keras_transfer.api_export import keras_transfer_export
from keras_transfer.callbacks.adaptation_monitor import AdaptationMonitor
from keras_transfer.callbacks.lambda_scheduler import DANNLambdaScheduler
from keras_transfer.utils import global_batch
from keras_transfer.utils.checks import (
    check_lambda,
    check_positive,
    check_positive_int,
)
from keras_transfer.utils.kept_state import run_keeping_state
from keras_transfer.utils.progress import progress_verbose

SOURCE, TARGET = "source", "target"
# Constructor keywords that moved to the method objects: keyword -> (method
# argument, whether a method class takes it).
_MOVED = {
    "lambda_": ("lambda_", lambda cls: cls.uses_reversal),
    "discriminator": ("discriminator", lambda cls: cls.uses_discriminator),
    "mdd_margin": ("margin", lambda cls: issubclass(cls, MDD)),
    "cdan_random_dim": ("random_dim", lambda cls: issubclass(cls, CDAN)),
}


def _check_weight(name, weight, method):
    try:
        weight = float(weight)
    except (TypeError, ValueError):
        raise ValueError(
            f"`method` weights must be floats. Received: method={method!r}"
        ) from None
    if not weight >= 0.0 or math.isinf(weight):
        raise ValueError(
            f"`method` weights must be finite and >= 0. Received: {name!r}: {weight}"
        )
    return weight


def _from_name(name, moved):
    key = str(name).lower()
    if key not in methods.REGISTRY:
        raise ValueError(
            f"Unknown `method` {name!r}. Known methods: {', '.join(methods.REGISTRY)}"
        )
    cls = methods.REGISTRY[key]
    kwargs = {
        argument: moved[keyword]
        for keyword, (argument, takes) in _MOVED.items()
        if keyword in moved and takes(cls)
    }
    return methods.get(key, **kwargs)


def resolve_methods(method, moved=None):
    """`method=` as a list of `(AdaptationMethod, weight)` pairs.

    `method` is a registered name, an `AdaptationMethod`, a list of those (or
    of `(method, weight)` pairs), or a dict `{name: weight}`. `moved` holds
    the deprecated constructor keywords, applied to the methods given by name.
    """
    moved = moved or {}
    if isinstance(method, (str, AdaptationMethod)):
        items = [(method, None)]
    elif isinstance(method, dict):
        items = list(method.items())
    elif isinstance(method, (list, tuple)):
        items = [
            tuple(m) if isinstance(m, (list, tuple)) else (m, None) for m in method
        ]
    else:
        raise ValueError(
            "`method` must be a method name, an AdaptationMethod, a list of "
            "them or a dict {name: weight}. Received: "
            f"method={type(method).__name__}"
        )
    if not items:
        raise ValueError(
            f"`method` must name at least one method. Known: "
            f"{', '.join(methods.REGISTRY)}"
        )
    pairs = []
    for item in items:
        if len(item) != 2:
            raise ValueError(
                f"`method` list items are methods or (method, weight) pairs. "
                f"Received: {item!r}"
            )
        entry, weight = item
        if isinstance(entry, dict):  # a serialized method (from a config)
            entry = keras.saving.deserialize_keras_object(entry)
        if isinstance(entry, str):
            entry = _from_name(entry, moved)
        elif not isinstance(entry, AdaptationMethod):
            raise ValueError(
                "`method` entries must be method names or AdaptationMethod "
                f"objects. Received: {type(entry).__name__}"
            )
        if weight is None:  # no weight given: the method's own default
            weight = entry.default_weight
        pairs.append((entry, _check_weight(entry.name, weight, method)))
    names = [m.name for m, _ in pairs]
    if len(set(names)) != len(names):
        raise ValueError(
            "`method` names must be unique (they name the logs). Received: "
            f"{names}. Give one of them another `name=`."
        )
    adversarial = [m.name for m, _ in pairs if m.uses_discriminator]
    if len(adversarial) > 1:
        raise ValueError(
            "`method` may contain only one of 'dann', 'cdan', 'cdan+e' (one "
            f"domain discriminator per model). Received: {adversarial}"
        )
    return pairs


def _source_part(value):
    if isinstance(value, dict) and SOURCE in value:
        return value[SOURCE]
    return value


def _is_paired(x):
    return isinstance(x, dict) and SOURCE in x and TARGET in x


def _hits(predictions, labels):
    if len(labels.shape) == len(predictions.shape) and (
        labels.shape[-1] == predictions.shape[-1]
    ):
        labels = ops.argmax(labels, axis=-1)
    labels = ops.reshape(ops.cast(labels, "int32"), (-1,))
    predicted = ops.cast(ops.argmax(predictions, axis=-1), "int32")
    return ops.cast(predicted == labels, "float32")


class _LambdaWarmup(DANNLambdaScheduler):
    """The scheduler `fit()` adds by default: each reversal layer goes from 0
    to its own `lambda_` along the DANN schedule; it warns, rather than
    fails, when the number of steps is unknown (then `lambda_` stays)."""

    def __init__(self):
        super().__init__(max_value=1.0)

    def _unknown_steps(self):
        warnings.warn(
            "DomainAdaptationModel: the number of training steps is not "
            "known (a dataset of unknown length), so `lambda_` is not "
            "warmed up and stays at its full value. Pass `steps_per_epoch` "
            "or a DANNLambdaScheduler(total_steps=...) callback.",
            stacklevel=2,
        )
        self._layers = []
        return 1

    def on_train_batch_begin(self, batch, logs=None):
        self.model  # noqa: B018  (on JAX: attaches the state, see the base)
        fraction = self.value(self._step / self._steps)
        for layer in self._layers:
            layer.lambda_variable.assign(layer.lambda_ * fraction)
        self._step += 1


class _StartMethods(keras.callbacks.Callback):
    """Lets each method set up state from built weights, eagerly, once."""

    def on_train_begin(self, logs=None):
        for method in self.model.methods:
            method.start()


def _known_input_shape(model):
    """The input shape of a built single-input model, or None."""
    if not getattr(model, "built", False):
        return None
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        return None
    if not isinstance(inputs, (list, tuple)) or len(inputs) != 1:
        return None
    shape = getattr(inputs[0], "shape", None)
    return tuple(shape) if shape is not None else None


@keras_transfer_export("keras_transfer.adaptation.DomainAdaptationModel")
class DomainAdaptationModel(keras.Model):
    """Feature extractor + classifier trained to work on an unlabelled domain.

    `fit()` takes batches that pair a labelled source batch with an unlabelled
    target batch (see `keras_transfer.adaptation.pair_datasets`):
    `({"source": x_s, "target": x_t}, y_s)`. Each step minimizes the loss of
    `compile()` on the source batch plus the weighted adaptation terms of
    `method`, with the `compile()` optimizer (any Keras optimizer, or an
    optimizer wrapper) and metrics (computed on the source batch).

    `method=` is a registered name, a method object, a list of them, a list
    of `(method, weight)` pairs or a dict `{name: weight}` (a method given
    without a weight gets its class's `default_weight`). Each method is a
    small `AdaptationMethod` that owns its hyperparameters
    (`keras_transfer.adaptation.methods.REGISTRY` maps the names to the
    classes, whose defaults the names stand for):

    - `"dann"` (`DANN`): a domain discriminator behind a `GradientReversal`
      layer (Ganin et al., 2016).
    - `"cdan"`, `"cdan+e"` (`CDAN`, `CDANE`): the discriminator reads the
      multilinear map of features and predictions; `+e` weights samples by
      prediction certainty (Long et al., 2018).
    - `"mdd"` (`MDD`): an adversarial copy of the classifier behind the
      reversal layer, trained with `MDDLoss` (Zhang et al., 2019).
    - `"mmd"`, `"jmmd"`, `"coral"` (`MMD`, `JMMD`, `CORAL`): `MMDLoss`,
      `JMMDLoss` (features and predictions), `CORALLoss` on the features.
    - `"mcc"`, `"entropy"` (`MCC`, `EntropyMinimization`): `MCCLoss`,
      `EntropyLoss` on target predictions.
    - `"afn"` (`AFN`): stepwise adaptive feature norm (Xu et al., 2019).

    Training is Keras's own `train_step` with this model's `compute_loss`:
    the classification loss of `compile()` on the source batch, then one
    loop over the methods, each adding `weight * method.compute(batch)`.
    Each step runs the feature extractor once, on the source and target
    batches concatenated (so BatchNormalization in it sees both domains).
    The classifier's training pass covers both halves when a method reads
    target predictions; otherwise it covers the source half, and an
    inference pass without gradient on the target half feeds the logs
    below. Under `tf.distribute`, the batch-statistic methods (`CORAL`,
    `MMD`, `JMMD`, `MCC`) are computed on the global batch gathered from all
    replicas, so the result matches one device.

    The methods with a reversal layer (`DANN`, `CDAN`, `CDANE`, `MDD`) own
    it (`model.gradient_reversal` is the first one); its factor `lambda_`
    (an argument of the method) scales the gradient that reaches the
    feature extractor. By default (`lambda_warmup=True`) `fit()` raises each
    from 0 to its `lambda_` along the DANN schedule, unless the callbacks
    already hold a `keras_transfer.callbacks.DANNLambdaScheduler` (which
    then sets every reversal layer to its own `max_value` schedule).

    `call()` and `predict()` return the classifier's predictions only (for a
    paired dict input, those on the source). Validate with labelled target
    data: `validation_data=(x_target, y_target)`. Logs: `loss` (total),
    the compiled metrics on the source batch, `classification_loss`,
    `adaptation_loss`, `<name>_loss` per method (`cdan_e_loss` for
    `"cdan+e"`), `domain_accuracy` of the discriminator (DANN/CDAN), and,
    without any target label, `source_accuracy`, `target_entropy` (entropy
    of the epoch's mean target prediction over `log(num_classes)`) and
    `target_top_class_share`; with `monitor=True` an `AdaptationMonitor`
    warns when the target predictions collapse or source accuracy falls far
    below its best epoch. `target_accuracy` appears when the paired data
    carries target labels (which are then used for that metric only, never
    for training; a warning says so). `inference_model()` returns a plain
    functional model of feature extractor and classifier for export.
    An error raised by bad input leaves the model (weights, optimizer
    state) as it was, on JAX too, where Keras's trainer empties the
    variables before the first step of `fit`, `evaluate` and `predict`.

    Args:
        feature_extractor: A Keras model or layer (for instance a
            `keras_transfer.backbones.Backbone`) mapping inputs to features.
        classifier: A Keras model or layer mapping features to class
            predictions (probabilities unless `from_logits=True`).
        method: The adaptation method(s): a name from
            `keras_transfer.adaptation.methods.REGISTRY`, an
            `AdaptationMethod` such as `DANN(lambda_=0.5)`, a list of them
            (or of `(method, weight)` pairs), or a dict `{name: weight}`.
            Defaults to `"dann"`.
        from_logits: Boolean. Whether the classifier returns logits. Defaults
            to `False`.
        lambda_warmup: Boolean. Whether `fit()` warms each reversal factor
            up from 0 along the DANN schedule over the whole `fit`. Without
            a known number of steps (a dataset of unknown length and no
            `steps_per_epoch`) a warning says the factors stay at `lambda_`.
            Defaults to `True`.
        monitor: Boolean. Whether `fit()` adds an `AdaptationMonitor` (when
            the callbacks hold none) that warns on collapse. Defaults to
            `True`.
        discriminator: Deprecated: pass it to the method
            (`DANN(discriminator=...)`). Applied to a discriminator method
            given by name.
        lambda_: Deprecated: `DANN(lambda_=...)`, `MDD(lambda_=...)`.
        mdd_margin: Deprecated: `MDD(margin=...)`.
        cdan_random_dim: Deprecated: `CDAN(random_dim=...)`.
        **kwargs: Base `keras.Model` arguments, such as `name`.

    Examples:

        >>> import keras_transfer
        >>> from keras_transfer.adaptation import DANN, DomainAdaptationModel
        >>> features = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8)])
        >>> head = keras.Sequential([keras.Input((8,)),
        ...                          keras.layers.Dense(3, activation="softmax")])
        >>> model = DomainAdaptationModel(
        ...     features, head,
        ...     method=DANN(discriminator=keras_transfer.layers.DomainDiscriminator(
        ...         (8,))))
        >>> model.compile(
        ...     "adam", "sparse_categorical_crossentropy", metrics=["accuracy"]
        ... )
        >>> rng = np.random.default_rng(0)
        >>> data = keras_transfer.adaptation.pair_datasets(
        ...     (rng.normal(size=(16, 4)), rng.integers(0, 3, 16)),
        ...     rng.normal(size=(12, 4)) + 1.0, batch_size=8)
        >>> history = model.fit(data, epochs=1, verbose=0)
        >>> sorted(history.history)  # doctest: +NORMALIZE_WHITESPACE
        ['accuracy', 'adaptation_loss', 'classification_loss', 'dann_loss',
         'domain_accuracy', 'loss', 'source_accuracy', 'target_entropy',
         'target_top_class_share']
        >>> model.predict(np.zeros((2, 4)), verbose=0).shape
        (2, 3)
        >>> layers = model.inference_model().layers
        >>> " -> ".join(type(layer).__name__ for layer in layers)
        'InputLayer -> Sequential -> Sequential'
    """

    def __init__(
        self,
        feature_extractor,
        classifier,
        method="dann",
        from_logits=False,
        lambda_warmup=True,
        monitor=True,
        discriminator=None,
        lambda_=None,
        mdd_margin=None,
        cdan_random_dim=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        for arg, value in (
            ("feature_extractor", feature_extractor),
            ("classifier", classifier),
        ):
            if not isinstance(value, keras.layers.Layer):
                raise ValueError(
                    f"`{arg}` must be a Keras model or layer. Received: "
                    f"{arg}={type(value).__name__}"
                )
        moved = {
            key: value
            for key, value in (
                ("discriminator", discriminator),
                ("lambda_", lambda_),
                ("mdd_margin", mdd_margin),
                ("cdan_random_dim", cdan_random_dim),
            )
            if value is not None
        }
        if moved:
            warnings.warn(
                f"DomainAdaptationModel: {', '.join(f'`{k}`' for k in moved)} "
                "moved to the method objects (e.g. `method=DANN(lambda_=0.5)`, "
                "`MDD(margin=...)`, `CDAN(random_dim=...)`); here they apply "
                "only to methods given by name.",
                DeprecationWarning,
                stacklevel=2,
            )
        if "lambda_" in moved:
            check_lambda(lambda_)
        # Checked by their own names, whatever the method they would reach.
        if "mdd_margin" in moved:
            check_positive("mdd_margin", mdd_margin)
        if "cdan_random_dim" in moved:
            check_positive_int("cdan_random_dim", cdan_random_dim)
        pairs = resolve_methods(method, moved)
        self.methods = [m for m, _ in pairs]
        self.method_weights = [w for _, w in pairs]
        self.from_logits = bool(from_logits)
        self.lambda_warmup = bool(lambda_warmup)
        self.monitor = bool(monitor)
        self.feature_extractor = feature_extractor
        self.classifier = classifier
        self._needs_target_predictions = any(
            m.needs_target_predictions for m in self.methods
        )
        self.classification_loss_tracker = keras.metrics.Mean(
            name="classification_loss"
        )
        self.adaptation_loss_tracker = keras.metrics.Mean(name="adaptation_loss")
        self.method_trackers = [
            keras.metrics.Mean(name=f"{m.name}_loss") for m in self.methods
        ]
        extra = sorted({name for m in self.methods for name in m.metric_names})
        self.method_metric_trackers = {
            name: keras.metrics.Mean(name=name) for name in extra
        }
        self.source_accuracy_tracker = keras.metrics.Mean(name="source_accuracy")
        self.target_accuracy_tracker = keras.metrics.Mean(name="target_accuracy")
        self.target_diversity = None
        self._target_labels_seen = False
        self._input_shape = None
        # Build every part now when the input shape is known (a functional
        # feature extractor, e.g. a Backbone): then `model.trainable_variables`
        # is complete before `fit`, which callbacks that build the optimizer
        # up front (`GradualUnfreezing`) rely on.
        known_shape = _known_input_shape(feature_extractor)
        if known_shape is not None:
            self.build(known_shape)

    # ------------------------------------------------------------ the parts

    @property
    def method(self):
        """`{method name: weight}`, in the order of the terms."""
        return {m.name: w for m, w in zip(self.methods, self.method_weights)}

    @property
    def gradient_reversal(self):
        """The first method's `GradientReversal` layer, or None."""
        for m in self.methods:
            if m.uses_reversal:
                return m.gradient_reversal
        return None

    @property
    def discriminator(self):
        """The domain discriminator of the DANN/CDAN method, or None."""
        for m in self.methods:
            if m.uses_discriminator:
                return m.discriminator
        return None

    @property
    def mdd_classifier(self):
        """The adversarial classifier of the MDD method, or None."""
        for m in self.methods:
            if isinstance(m, MDD):
                return m.adversary
        return None

    @property
    def backbone(self):
        """The feature extractor: the part `GradualUnfreezing()` and
        `fine_tune` unfreeze when no backbone is named."""
        return self.feature_extractor

    # ------------------------------------------------------------------ build

    def build(self, input_shape=None, **shapes):
        if input_shape is None and shapes:
            input_shape = shapes.get("inputs_shape", next(iter(shapes.values())))
        if isinstance(input_shape, dict):
            source_shape = tuple(input_shape[SOURCE])
            target_shape = tuple(input_shape.get(TARGET, source_shape))
            self._check_shapes(source_shape, target_shape)
            input_shape = source_shape
        input_shape = tuple(input_shape)
        self._input_shape = input_shape
        if not self.feature_extractor.built:
            self.feature_extractor.build(input_shape)
        feature_shape = tuple(self.feature_extractor.compute_output_shape(input_shape))
        if not self.classifier.built:
            self.classifier.build(feature_shape)
        output_shape = tuple(self.classifier.compute_output_shape(feature_shape))
        classes = len(output_shape) == 2 and (output_shape[-1] or 0) >= 2
        num_classes = int(output_shape[-1]) if classes else None
        for m in self.methods:
            if (m.needs_target_predictions or isinstance(m, MDD)) and not classes:
                raise ValueError(
                    f"`method` {type(m).__name__} ({m.name!r}) reads the class "
                    "predictions of `classifier`, which must return "
                    "(batch, num_classes) with num_classes >= 2. Received: "
                    f"classifier output shape {output_shape}. Use a softmax "
                    "(or logits) classifier, or a method that aligns features "
                    "only (DANN, MMD, CORAL, AFN)."
                )
        context = MethodContext(
            feature_shape, num_classes, self.from_logits, self.classifier
        )
        for m in self.methods:
            if not m.built:
                m.build(context)
        if classes and self.target_diversity is None:
            self.target_diversity = TargetDiversity(num_classes)
        if global_batch.executing_eagerly():
            for m in self.methods:
                m.start()
        self.built = True

    def _check_shapes(self, source_shape, target_shape):
        if tuple(source_shape[1:]) != tuple(target_shape[1:]):
            raise ValueError(
                "Source and target inputs must have the same feature shape: "
                "x['source'] and x['target'] differ. Received: source shape "
                f"{tuple(source_shape)}, target shape {tuple(target_shape)}"
            )

    def _check_batch_sizes(self, x_s, x_t):
        need = max(m.min_batch_size for m in self.methods)
        for part, n in ((SOURCE, x_s.shape[0]), (TARGET, x_t.shape[0])):
            if n is not None and n < need:
                names = sorted(m.name for m in self.methods if m.min_batch_size > n)
                raise ValueError(
                    f"Methods {names} need at least {need} samples per domain "
                    f"in a batch; the {part} batch has {n}. Received: "
                    f"batch_size={n}. Use a larger `batch_size`."
                )

    # ------------------------------------------------------------------- call

    def call(self, inputs, training=None):
        if training and _is_paired(inputs):
            return self._paired_forward(inputs[SOURCE], inputs[TARGET])
        inputs = _source_part(inputs)
        features = self.feature_extractor(inputs, training=training)
        return self.classifier(features, training=training)

    def _paired_forward(self, x_s, x_t):
        """Training outputs on a paired batch: predictions and features."""
        n = ops.shape(x_s)[0]
        x_all = ops.concatenate([x_s, ops.cast(x_t, x_s.dtype)], axis=0)
        features = self.feature_extractor(x_all, training=True)
        outputs = {"features_source": features[:n], "features_target": features[n:]}
        if self._needs_target_predictions:
            predictions = self.classifier(features, training=True)
            outputs[SOURCE], outputs[TARGET] = predictions[:n], predictions[n:]
        else:
            # The training pass covers the source half; the target half gets
            # an inference pass without gradient, for the logs only.
            outputs[SOURCE] = self.classifier(features[:n], training=True)
            outputs["target_inference"] = self.classifier(
                ops.stop_gradient(features[n:]), training=False
            )
        return outputs

    def inference_model(self):
        """A plain functional model: feature extractor then classifier.

        No reversal layer, discriminator or adversarial head; the layers (and
        weights) are those of this model. Use it for export and serving.

        Returns:
            A functional `keras.Model`.
        """
        if self._input_shape is None:
            raise ValueError(
                "The model is not built yet: call it on a batch or fit it "
                "before `inference_model()`."
            )
        inputs = keras.Input(shape=self._input_shape[1:], name="inputs")
        features = self.feature_extractor(inputs)
        outputs = self.classifier(features)
        return keras.Model(inputs, outputs, name=f"{self.name}_inference")

    # ----------------------------------------------------------------- losses

    def compute_loss(
        self, x=None, y=None, y_pred=None, sample_weight=None, training=True
    ):
        """The compiled loss on the source batch plus the weighted methods."""
        source_pred = y_pred[SOURCE] if isinstance(y_pred, dict) else y_pred
        classification = super().compute_loss(
            x=_source_part(x),
            y=_source_part(y),
            y_pred=source_pred,
            sample_weight=_source_part(sample_weight),
            training=training,
        )
        if not isinstance(y_pred, dict):  # evaluation, or the symbolic build
            return classification
        local = AdaptationBatch(
            y_pred["features_source"],
            y_pred["features_target"],
            ops.cast(y_pred[SOURCE], "float32"),
            ops.cast(y_pred[TARGET], "float32") if TARGET in y_pred else None,
            from_logits=self.from_logits,
            training=training,
        )
        gathered = None
        adaptation = ops.zeros((), "float32")
        for method, weight, tracker in zip(
            self.methods, self.method_weights, self.method_trackers
        ):
            batch = local
            if method.batch_statistic:
                if gathered is None:
                    gathered = _gather(local)
                batch = gathered
            value, extra = method.compute(batch), {}
            if isinstance(value, tuple):
                value, extra = value
            value = ops.cast(value, "float32")
            adaptation = adaptation + weight * value
            if training:
                tracker.update_state(value)
                for name, values in extra.items():
                    self.method_metric_trackers[name].update_state(values)
        replicas = global_batch.num_replicas()
        if training:
            self.classification_loss_tracker.update_state(
                ops.cast(classification, "float32") * replicas
            )
            self.adaptation_loss_tracker.update_state(adaptation)
        return classification + ops.cast(adaptation / replicas, classification.dtype)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        y_source = _source_part(y)
        if isinstance(y_pred, dict):
            target = y_pred.get(TARGET, y_pred.get("target_inference"))
            if self.target_diversity is not None:
                p_t = ops.softmax(target, -1) if self.from_logits else target
                self.target_diversity.update_state(p_t)
                if y_source is not None:
                    self.source_accuracy_tracker.update_state(
                        _hits(y_pred[SOURCE], y_source)
                    )
            y_target = y.get(TARGET) if isinstance(y, dict) else None
            if y_target is not None:
                self.target_accuracy_tracker.update_state(_hits(target, y_target))
            y_pred = y_pred[SOURCE]
        logs = super().compute_metrics(
            _source_part(x), y_source, y_pred,
            sample_weight=_source_part(sample_weight),
        )
        if not (isinstance(y, dict) and y.get(TARGET) is not None):
            logs.pop("target_accuracy", None)
        if self.target_diversity is None:
            logs.pop("source_accuracy", None)
        return logs

    # ------------------------------------------------------------------- fit

    def fit(
        self,
        x=None,
        y=None,
        batch_size=None,
        epochs=1,
        verbose="auto",
        callbacks=None,
        **kwargs,
    ):
        if not isinstance(callbacks, keras.callbacks.CallbackList):
            callbacks = list(callbacks or [])
            callbacks.insert(0, _StartMethods())
            if (
                self.lambda_warmup
                and any(m.uses_reversal for m in self.methods)
                and not any(isinstance(c, DANNLambdaScheduler) for c in callbacks)
            ):
                callbacks.append(_LambdaWarmup())
            if self.monitor and not any(
                isinstance(c, AdaptationMonitor) for c in callbacks
            ):
                callbacks.append(AdaptationMonitor())
        fit = super().fit
        return run_keeping_state(
            lambda callbacks: fit(
                x,
                y,
                batch_size=batch_size,
                epochs=epochs,
                verbose=progress_verbose(verbose),
                callbacks=callbacks,
                **kwargs,
            ),
            callbacks,
        )

    # `fit`, `evaluate` and `predict` run through `run_keeping_state`: an
    # error raised while the first step is traced (bad input) leaves the
    # model as it was on JAX too (see `keras_transfer.utils.kept_state`).

    def evaluate(self, *args, callbacks=None, **kwargs):
        evaluate = super().evaluate
        return run_keeping_state(
            lambda callbacks: evaluate(*args, callbacks=callbacks, **kwargs),
            callbacks,
        )

    def predict(self, *args, callbacks=None, **kwargs):
        predict = super().predict
        return run_keeping_state(
            lambda callbacks: predict(*args, callbacks=callbacks, **kwargs),
            callbacks,
        )

    # ------------------------------------------------------------ train step

    def train_step(self, *args):
        """Check the paired batch, then Keras's own train step.

        `train_step(data)` on TensorFlow, `train_step(state, data)` on JAX.
        """
        data = args[-1]
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        if not _is_paired(x):
            raise ValueError(
                "DomainAdaptationModel.fit expects inputs "
                "{'source': x_source, 'target': x_target}, e.g. from "
                "keras_transfer.adaptation.pair_datasets(). Received: x = "
                + _describe_inputs(x)
            )
        self._check_shapes(x[SOURCE].shape, x[TARGET].shape)
        self._check_batch_sizes(x[SOURCE], x[TARGET])
        if not self.built:
            self.build({SOURCE: tuple(x[SOURCE].shape), TARGET: tuple(x[TARGET].shape)})
        if (
            isinstance(y, dict)
            and y.get(TARGET) is not None
            and not self._target_labels_seen
        ):
            self._target_labels_seen = True
            warnings.warn(
                "DomainAdaptationModel: the training data carries target labels. "
                "They are used only for the `target_accuracy` metric, never for "
                "training (unsupervised domain adaptation).",
                stacklevel=2,
            )
        return super().train_step(*args)

    def test_step(self, *args):
        # `test_step(data)` on TensorFlow, `test_step(state, data)` on JAX.
        state, data = args[:-1], args[-1]
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        if isinstance(x, dict) and TARGET in x:
            x = x[TARGET]
            y = y.get(TARGET) if isinstance(y, dict) else None
            if y is None:
                raise ValueError(
                    "Evaluation needs labelled target data, e.g. "
                    "validation_data=(x_target, y_target). Received paired "
                    "inputs without target labels."
                )
        out = super().test_step(*state, (x, y, sample_weight))
        logs, state = (out, None) if not state else out
        logs = {k: v for k, v in logs.items() if k not in self._training_only()}
        return logs if state is None else (logs, state)

    def _training_only(self):
        names = {
            "classification_loss",
            "adaptation_loss",
            "target_accuracy",
            "source_accuracy",
            "target_entropy",
            "target_top_class_share",
        }
        names |= set(self.method_metric_trackers)
        return names | {f"{m.name}_loss" for m in self.methods}

    # ----------------------------------------------------------------- config

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "feature_extractor": keras.saving.serialize_keras_object(
                self.feature_extractor
            ),
            "classifier": keras.saving.serialize_keras_object(self.classifier),
            "method": [
                {"method": keras.saving.serialize_keras_object(m), "weight": w}
                for m, w in zip(self.methods, self.method_weights)
            ],
            "from_logits": self.from_logits,
            "lambda_warmup": self.lambda_warmup,
            "monitor": self.monitor,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("feature_extractor", "classifier", "discriminator"):
            if config.get(key) is not None:
                config[key] = keras.saving.deserialize_keras_object(config[key])
        method = config.get("method")
        if isinstance(method, list) and all(
            isinstance(m, dict) and "method" in m for m in method
        ):
            config["method"] = [(m["method"], m["weight"]) for m in method]
        return cls(**config)


def _gather(batch):
    """`batch` over the global batch of every replica (the same outside one)."""
    if global_batch.num_replicas() == 1:
        return batch
    return AdaptationBatch(
        global_batch.gather(batch.source_features),
        global_batch.gather(batch.target_features),
        global_batch.gather(batch.source_predictions),
        global_batch.gather(batch.target_predictions),
        from_logits=batch.from_logits,
        training=batch.training,
    )


def _describe_inputs(x):
    """What a step received as `x`, in words (a traced tensor by its shape)."""
    if isinstance(x, dict):
        return f"a dict with keys {sorted(x)}"
    shape = getattr(x, "shape", None)
    if shape is not None:
        return f"a tensor of shape {tuple(shape)}"
    return f"an object of type {type(x).__name__}"
