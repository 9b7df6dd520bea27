"""A keras.Model that adapts a classifier to an unlabelled target domain."""

import math
import warnings

import keras
from keras import ops

from keras_transfer import _compat
from keras_transfer.api_export import keras_transfer_export
from keras_transfer.callbacks.lambda_scheduler import DANNLambdaScheduler
from keras_transfer.layers.domain_discriminator import DomainDiscriminator
from keras_transfer.layers.gradient_reversal import GradientReversal, _check_lambda
from keras_transfer.losses.coral_loss import CORALLoss
from keras_transfer.losses.entropy_loss import EntropyLoss
from keras_transfer.losses.jmmd_loss import JMMDLoss
from keras_transfer.losses.mcc_loss import MCCLoss
from keras_transfer.losses.mdd_loss import MDDLoss
from keras_transfer.losses.mmd_loss import MMDLoss
from keras_transfer.utils.checks import check_positive, check_positive_int
from keras_transfer.utils.progress import progress_verbose

METHODS = ("dann", "cdan", "cdan+e", "mdd", "mmd", "jmmd", "coral", "mcc", "entropy")
ADVERSARIAL = ("dann", "cdan", "cdan+e")
# Methods whose estimator needs two samples per domain in a batch.
NEEDS_TWO = ("coral", "mmd", "jmmd", "dann", "cdan", "cdan+e", "mcc")
# Methods that read the classifier's predictions on the target batch.
READS_TARGET_PREDICTIONS = ("jmmd", "mcc", "entropy", "mdd", "cdan", "cdan+e")
SOURCE, TARGET = "source", "target"


def _parse_method(method):
    if isinstance(method, str):
        method = {method: 1.0}
    elif isinstance(method, (list, tuple)):
        method = {m: 1.0 for m in method}
    elif not isinstance(method, dict):
        raise ValueError(
            "`method` must be a string, a list of strings or a dict "
            f"{{method: weight}}. Received: method={method!r}"
        )
    if not method:
        raise ValueError(f"`method` must name at least one method. Known: {METHODS}")
    parsed = {}
    for name, weight in method.items():
        key = str(name).lower()
        if key not in METHODS:
            raise ValueError(
                f"Unknown `method` {name!r}. Known methods: {', '.join(METHODS)}"
            )
        try:
            weight = float(weight)
        except (TypeError, ValueError):
            raise ValueError(
                f"`method` weights must be floats. Received: method={method!r}"
            ) from None
        if not weight >= 0.0 or math.isinf(weight):
            raise ValueError(
                f"`method` weights must be finite and >= 0. Received: {name!r}: "
                f"{weight}"
            )
        parsed[key] = weight
    if len([m for m in parsed if m in ADVERSARIAL]) > 1:
        raise ValueError(
            "`method` may contain only one of 'dann', 'cdan', 'cdan+e' (they "
            f"share the domain discriminator). Received: method={method!r}"
        )
    return parsed


def _metric_name(method):
    return method.replace("+", "_") + "_loss"


def _source_part(value):
    if isinstance(value, dict) and SOURCE in value:
        return value[SOURCE]
    return value


class _LambdaWarmup(DANNLambdaScheduler):
    """The scheduler `fit()` adds by default: it warns, rather than fails,
    when the number of steps is unknown, and leaves `lambda_` constant."""

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

    Methods (`method=` a name, a list of names, or a dict name -> weight;
    every weight defaults to 1):

    - `"dann"`: a `DomainDiscriminator` behind a `GradientReversal` layer
      (Ganin et al., 2016).
    - `"cdan"`, `"cdan+e"`: the discriminator reads the multilinear map of
      features and predictions; `+e` weights samples by prediction certainty
      (Long et al., 2018).
    - `"mdd"`: an adversarial copy of the classifier (same architecture,
      starting from the classifier's weights plus 1% noise) behind the
      reversal layer, trained with `MDDLoss` (Zhang et al., 2019).
    - `"mmd"`, `"jmmd"`, `"coral"`: `MMDLoss`, `JMMDLoss` (features and
      predictions), `CORALLoss` on the features.
    - `"mcc"`, `"entropy"`: `MCCLoss`, `EntropyLoss` on target predictions.

    Each step runs the feature extractor once, on the source and target
    batches concatenated (so BatchNormalization in it sees both domains).
    The classifier runs on both halves when a method reads target predictions
    (`"cdan"`, `"cdan+e"`, `"mdd"`, `"jmmd"`, `"mcc"`, `"entropy"`) or the
    data carries target labels; for `"dann"`, `"mmd"` and `"coral"` alone it
    runs on the source half only, which saves its cost on the target.

    The adversarial methods share one `GradientReversal` layer
    (`model.gradient_reversal`) whose factor `lambda_` scales the gradient
    that reaches the feature extractor. By default (`lambda_warmup=True`)
    `fit()` raises it from 0 to `lambda_` along the DANN schedule
    (`keras_transfer.callbacks.DANNLambdaScheduler`, added to the callbacks
    unless they already hold one): with the full factor from the first step,
    the reversed gradient can push still-random features apart until they
    blow up. The domain logits are clipped to [-16, 16] in the
    discriminator's loss, which bounds it (as sigmoid outputs with a 1e-7
    floor do).

    `call()` and `predict()` return the classifier's predictions only (for a
    paired dict input, those on the source). Validate with labelled target
    data: `validation_data=(x_target, y_target)`. Logs: `loss` (total),
    the compiled metrics on the source batch, `classification_loss`,
    `adaptation_loss`, `<method>_loss` per method, `domain_accuracy` of the
    discriminator (DANN/CDAN) and `target_accuracy` when the paired data
    carries target labels (which are then used for that metric only, never
    for training; a warning says so). `inference_model()` returns a plain
    functional model of feature extractor and classifier for export.

    Training uses TensorFlow (`train_step` is written for the TensorFlow
    backend); `tf.distribute` strategies work.

    Args:
        feature_extractor: A Keras model or layer (for instance a
            `keras_transfer.backbones.Backbone`) mapping inputs to features.
        classifier: A Keras model or layer mapping features to class
            predictions (probabilities unless `from_logits=True`).
        method: String, list of strings or dict `{method: weight}`. The
            adaptation method(s), from `"dann"`, `"cdan"`, `"cdan+e"`,
            `"mdd"`, `"mmd"`, `"jmmd"`, `"coral"`, `"mcc"`, `"entropy"`.
            Defaults to `"dann"`.
        discriminator: A Keras layer or model mapping (flattened) features to
            one logit, or `None` for `DomainDiscriminator(hidden_units=(256,
            256))`. Used by DANN/CDAN. Defaults to `None`.
        lambda_: Float, >= 0. Initial factor of the gradient reversal layer.
            Defaults to `1.0`.
        from_logits: Boolean. Whether the classifier returns logits. Defaults
            to `False`.
        mdd_margin: Float > 0. Margin of `MDDLoss`. Defaults to `4.0`.
        cdan_random_dim: Int. Above this size of the multilinear map
            (features x classes), CDAN uses a random projection to this many
            dimensions instead. Defaults to `4096`.
        lambda_warmup: Boolean. Whether `fit()` warms `lambda_` up from 0
            along the DANN schedule over the whole `fit` (for the methods
            with a reversal layer), by adding a `DANNLambdaScheduler` when
            `callbacks` hold none; pass your own scheduler to change its
            shape. Without a known number of steps (a dataset of unknown
            length and no `steps_per_epoch`) a warning says the factor stays
            at `lambda_`. Defaults to `True`.
        **kwargs: Base `keras.Model` arguments, such as `name`.

    Examples:

        >>> import keras_transfer
        >>> features = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8)])
        >>> head = keras.Sequential([keras.Input((8,)),
        ...                          keras.layers.Dense(3, activation="softmax")])
        >>> model = keras_transfer.adaptation.DomainAdaptationModel(
        ...     features, head, method="dann",
        ...     discriminator=keras_transfer.layers.DomainDiscriminator((8,)))
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
         'domain_accuracy', 'loss']
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
        discriminator=None,
        lambda_=1.0,
        from_logits=False,
        mdd_margin=4.0,
        cdan_random_dim=4096,
        lambda_warmup=True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if keras.backend.backend() != "tensorflow":
            raise ValueError(
                "DomainAdaptationModel trains with the TensorFlow backend. "
                f"Received: KERAS_BACKEND={keras.backend.backend()!r}"
            )
        for arg, value in (
            ("feature_extractor", feature_extractor),
            ("classifier", classifier),
        ):
            if not isinstance(value, keras.layers.Layer):
                raise ValueError(
                    f"`{arg}` must be a Keras model or layer. Received: "
                    f"{arg}={type(value).__name__}"
                )
        if discriminator is not None and not isinstance(
            discriminator, keras.layers.Layer
        ):
            raise ValueError(
                "`discriminator` must be a Keras layer/model or None. Received: "
                f"discriminator={type(discriminator).__name__}"
            )
        self.cdan_random_dim = check_positive_int("cdan_random_dim", cdan_random_dim)
        self.mdd_margin = float(check_positive("mdd_margin", mdd_margin))
        self.method = _parse_method(method)
        self.from_logits = bool(from_logits)
        _check_lambda(lambda_)
        self.lambda_ = float(lambda_)
        self.lambda_warmup = bool(lambda_warmup)
        self.feature_extractor = feature_extractor
        self.classifier = classifier
        self.adversarial = next((m for m in self.method if m in ADVERSARIAL), None)
        uses_reversal = self.adversarial is not None or "mdd" in self.method
        self.gradient_reversal = (
            GradientReversal(lambda_, name="gradient_reversal")
            if uses_reversal
            else None
        )
        self.discriminator = None
        if self.adversarial is not None:
            self.discriminator = discriminator or DomainDiscriminator(
                name="domain_discriminator"
            )
        self.mdd_classifier = None
        if "mdd" in self.method:
            try:
                self.mdd_classifier = keras.models.clone_model(classifier)
            except Exception as e:  # subclassed classifiers cannot be cloned
                raise ValueError(
                    "method 'mdd' needs a copy of `classifier`, and "
                    "`keras.models.clone_model` failed on it. Use a functional or "
                    f"Sequential `classifier`. Error: {e}"
                ) from e
        self._adaptation_losses = {
            "mmd": MMDLoss(),
            "jmmd": JMMDLoss(),
            "coral": CORALLoss(),
            "mcc": MCCLoss(from_logits=self.from_logits),
            "entropy": EntropyLoss(from_logits=self.from_logits),
            "mdd": MDDLoss(margin=self.mdd_margin, from_logits=self.from_logits),
        }
        self.classification_loss_tracker = keras.metrics.Mean(
            name="classification_loss"
        )
        self.adaptation_loss_tracker = keras.metrics.Mean(name="adaptation_loss")
        self.method_trackers = {
            m: keras.metrics.Mean(name=_metric_name(m)) for m in self.method
        }
        self.domain_accuracy_tracker = (
            keras.metrics.Mean(name="domain_accuracy")
            if self.adversarial is not None
            else None
        )
        self.target_accuracy_tracker = keras.metrics.Mean(name="target_accuracy")
        self._target_labels_seen = False
        self._input_shape = None
        self._cdan_projection = None
        # Build every part now when the input shape is known (a functional
        # feature extractor, e.g. a Backbone): then `model.trainable_variables`
        # is complete before `fit`, which callbacks that build the optimizer
        # up front (`GradualUnfreezing`) rely on.
        known_shape = _known_input_shape(feature_extractor)
        if known_shape is not None:
            self.build(known_shape)

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
        flat = int(math.prod(d for d in feature_shape[1:]))
        num_classes = int(output_shape[-1])
        if self.mdd_classifier is not None:
            if not self.mdd_classifier.built:
                self.mdd_classifier.build(feature_shape)
            self._start_adversary_at_classifier()
        if self.gradient_reversal is not None and not self.gradient_reversal.built:
            self.gradient_reversal.build(feature_shape)
        self._cdan_projection = None
        if self.adversarial is not None:
            disc_dim = flat
            if self.adversarial.startswith("cdan"):
                disc_dim = flat * num_classes
                if disc_dim > self.cdan_random_dim:
                    disc_dim = self.cdan_random_dim
                    seed = keras.random.SeedGenerator(0)
                    self._cdan_projection = [
                        self.add_weight(
                            shape=(size, disc_dim),
                            initializer=keras.initializers.RandomNormal(seed=seed),
                            trainable=False,
                            name=f"cdan_projection_{part}",
                        )
                        for part, size in (
                            ("features", flat),
                            ("predictions", num_classes),
                        )
                    ]
            if not self.discriminator.built:
                self.discriminator.build((None, disc_dim))
        self.built = True

    def _start_adversary_at_classifier(self):
        # The MDD adversary starts as the classifier plus 1% noise, so that
        # it first agrees with it on both domains. Eager even when the build
        # happens while the train function is traced (the copy is done once).
        import tensorflow as tf

        with tf.init_scope():
            seed = keras.random.SeedGenerator(1)
            for adv, main in zip(self.mdd_classifier.weights, self.classifier.weights):
                if adv.shape != main.shape:
                    return
                noise = keras.random.normal(adv.shape, seed=seed, dtype=adv.dtype)
                adv.assign(main * (1.0 + 0.01 * noise))

    def _check_shapes(self, source_shape, target_shape):
        if tuple(source_shape[1:]) != tuple(target_shape[1:]):
            raise ValueError(
                "Source and target inputs must have the same feature shape. "
                f"Received: source shape {tuple(source_shape)}, target shape "
                f"{tuple(target_shape)}"
            )

    # ------------------------------------------------------------------- call

    def call(self, inputs, training=None):
        inputs = _source_part(inputs)
        features = self.feature_extractor(inputs, training=training)
        return self.classifier(features, training=training)

    @property
    def backbone(self):
        """The feature extractor: the part `GradualUnfreezing()` and
        `fine_tune` unfreeze when no backbone is named."""
        return self.feature_extractor

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
        return super().compute_loss(
            x=_source_part(x),
            y=_source_part(y),
            y_pred=y_pred,
            sample_weight=sample_weight,
            training=training,
        )

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        return super().compute_metrics(
            _source_part(x), _source_part(y), y_pred, sample_weight=sample_weight
        )

    def _probabilities(self, predictions):
        return ops.softmax(predictions, -1) if self.from_logits else predictions

    def _cdan_map(self, features, probabilities, entropy_weights):
        del entropy_weights
        probabilities = ops.stop_gradient(probabilities)
        if self._cdan_projection is not None:
            r_f, r_p = self._cdan_projection
            dim = float(self.cdan_random_dim)
            return (
                ops.matmul(features, r_f)
                * ops.matmul(probabilities, r_p)
                / (math.sqrt(dim))
            )
        outer = ops.expand_dims(probabilities, 2) * ops.expand_dims(features, 1)
        return ops.reshape(outer, (ops.shape(features)[0], -1))

    def _adaptation_terms(self, features, predictions, n_source, training):
        """Raw (unscaled) adaptation losses, and the discriminator accuracy."""
        f_flat = ops.reshape(features, (ops.shape(features)[0], -1))
        f_s, f_t = f_flat[:n_source], f_flat[n_source:]
        p_s, p_t = predictions[:n_source], predictions[n_source:]
        probs = self._probabilities(predictions)
        terms, domain_accuracy = {}, None
        for method in self.method:
            if method == "mmd":
                terms[method] = self._adaptation_losses["mmd"].compute(f_s, f_t)
            elif method == "jmmd":
                terms[method] = self._adaptation_losses["jmmd"].compute(
                    [f_s, probs[:n_source]], [f_t, probs[n_source:]]
                )
            elif method == "coral":
                terms[method] = self._adaptation_losses["coral"].compute(f_s, f_t)
            elif method in ("mcc", "entropy"):
                terms[method] = self._adaptation_losses[method].compute(None, p_t)
            elif method == "mdd":
                adversary = self.mdd_classifier(
                    self.gradient_reversal(features), training=training
                )
                terms[method] = self._adaptation_losses["mdd"].compute(
                    [p_s, adversary[:n_source]], [p_t, adversary[n_source:]]
                )
            else:
                terms[method], domain_accuracy = self._domain_loss(
                    method, f_flat, probs, n_source, training
                )
        return terms, domain_accuracy

    def _domain_loss(self, method, f_flat, probs, n_source, training):
        weights = None
        if method == "dann":
            inputs = f_flat
        else:
            inputs = self._cdan_map(f_flat, probs, None)
            if method == "cdan+e":
                p = ops.stop_gradient(probs)
                entropy = -ops.sum(p * ops.log(p + 1e-7), axis=-1)
                weights = 1.0 + ops.exp(-entropy)
        logits = self.discriminator(self.gradient_reversal(inputs), training=training)
        logits = ops.reshape(ops.cast(logits, "float32"), (-1,))
        logits = ops.clip(logits, -16.0, 16.0)
        n = ops.shape(logits)[0]
        labels = ops.cast(ops.arange(n) < n_source, "float32")
        per_sample = (
            ops.maximum(logits, 0.0)
            - logits * labels
            + ops.log1p(ops.exp(-ops.abs(logits)))
        )
        if weights is None:
            weights = ops.ones_like(per_sample)
        # Each domain counts half, whatever the two batch sizes.
        w_s, w_t = weights[:n_source], weights[n_source:]
        loss = 0.5 * (
            ops.sum(w_s * per_sample[:n_source]) / ops.sum(w_s)
            + ops.sum(w_t * per_sample[n_source:]) / ops.sum(w_t)
        )
        correct = ops.cast(ops.cast(logits > 0, "float32") == labels, "float32")
        return loss, correct

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
        if (
            self.lambda_warmup
            and self.gradient_reversal is not None
            and not isinstance(callbacks, keras.callbacks.CallbackList)
        ):
            callbacks = list(callbacks or [])
            if not any(isinstance(c, DANNLambdaScheduler) for c in callbacks):
                callbacks.append(_LambdaWarmup(max_value=self.lambda_))
        return super().fit(
            x,
            y,
            batch_size=batch_size,
            epochs=epochs,
            verbose=progress_verbose(verbose),
            callbacks=callbacks,
            **kwargs,
        )

    # ------------------------------------------------------------ train step

    def _unpack(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        if not (isinstance(x, dict) and SOURCE in x and TARGET in x):
            raise ValueError(
                "DomainAdaptationModel.fit expects inputs "
                "{'source': x_source, 'target': x_target}, e.g. from "
                "keras_transfer.adaptation.pair_datasets(). Received: x of type "
                f"{type(x).__name__}"
                + (f" with keys {sorted(x)}" if isinstance(x, dict) else "")
            )
        y_target = None
        if isinstance(y, dict):
            y_target = y.get(TARGET)
            y = y.get(SOURCE)
        if isinstance(sample_weight, dict):
            sample_weight = sample_weight.get(SOURCE)
        return x[SOURCE], x[TARGET], y, y_target, sample_weight

    def train_step(self, data):
        import tensorflow as tf

        x_s, x_t, y_s, y_t, sample_weight = self._unpack(data)
        self._check_shapes(x_s.shape, x_t.shape)
        if not self.built:
            # Without a distribution strategy Keras builds lazily, at trace time.
            self.build({SOURCE: tuple(x_s.shape), TARGET: tuple(x_t.shape)})
        for n in (x_s.shape[0], x_t.shape[0]):
            if n is not None and n < 2 and any(m in NEEDS_TWO for m in self.method):
                raise ValueError(
                    f"Methods {sorted(m for m in self.method if m in NEEDS_TWO)} "
                    "need at least 2 samples per domain in a batch. Received: "
                    f"batch_size={n}. Use a larger `batch_size`."
                )
        if y_t is not None and not self._target_labels_seen:
            self._target_labels_seen = True
            warnings.warn(
                "DomainAdaptationModel: the training data carries target labels. "
                "They are used only for the `target_accuracy` metric, never for "
                "training (unsupervised domain adaptation).",
                stacklevel=2,
            )
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        n_source = ops.shape(x_s)[0]
        with tf.GradientTape() as tape:
            x_all = ops.concatenate([x_s, ops.cast(x_t, x_s.dtype)], axis=0)
            features = self.feature_extractor(x_all, training=True)
            if y_t is not None or any(
                m in READS_TARGET_PREDICTIONS for m in self.method
            ):
                predictions = self.classifier(features, training=True)
                p_s = predictions[:n_source]
            else:
                # DANN, CORAL and MMD align features only: the classifier
                # runs on the source half alone.
                p_s = predictions = self.classifier(
                    features[:n_source], training=True
                )
            classification = self.compute_loss(
                x=x_s, y=y_s, y_pred=p_s, sample_weight=sample_weight, training=True
            )
            terms, domain_correct = self._adaptation_terms(
                features, predictions, n_source, training=True
            )
            adaptation = ops.zeros((), "float32")
            for method, value in terms.items():
                adaptation = adaptation + self.method[method] * ops.cast(
                    value, "float32"
                )
            classification_unscaled = ops.cast(classification, "float32") * replicas
            total = classification + ops.cast(
                adaptation / replicas, classification.dtype
            )
            scaled = self.optimizer.scale_loss(total) if self.optimizer else total
        weights = self.trainable_weights
        gradients = tape.gradient(scaled, weights)
        self.optimizer.apply_gradients(zip(gradients, weights))

        _compat.loss_tracker(self).update_state(
            classification_unscaled + adaptation, sample_weight=n_source
        )
        self.classification_loss_tracker.update_state(classification_unscaled)
        self.adaptation_loss_tracker.update_state(adaptation)
        for method, value in terms.items():
            self.method_trackers[method].update_state(value)
        if domain_correct is not None:
            self.domain_accuracy_tracker.update_state(domain_correct)
        if y_t is not None:
            p_t = predictions[n_source:]
            labels = y_t
            if len(y_t.shape) == len(p_t.shape) and y_t.shape[-1] == p_t.shape[-1]:
                labels = ops.argmax(y_t, axis=-1)
            labels = ops.reshape(ops.cast(labels, "int32"), (-1,))
            hits = ops.cast(
                ops.cast(ops.argmax(p_t, axis=-1), "int32") == labels, "float32"
            )
            self.target_accuracy_tracker.update_state(hits)
        logs = self.compute_metrics(x_s, y_s, p_s, sample_weight=sample_weight)
        if y_t is None:
            logs.pop("target_accuracy", None)
        return logs

    def test_step(self, data):
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
        logs = super().test_step((x, y, sample_weight))
        return {k: v for k, v in logs.items() if k not in self._training_only()}

    def _training_only(self):
        names = {
            "classification_loss",
            "adaptation_loss",
            "domain_accuracy",
            "target_accuracy",
        }
        return names | {_metric_name(m) for m in self.method}

    # ----------------------------------------------------------------- config

    def get_config(self):
        config = {
            "name": self.name,
            "trainable": self.trainable,
            "feature_extractor": keras.saving.serialize_keras_object(
                self.feature_extractor
            ),
            "classifier": keras.saving.serialize_keras_object(self.classifier),
            "method": dict(self.method),
            "discriminator": (
                keras.saving.serialize_keras_object(self.discriminator)
                if self.discriminator is not None
                else None
            ),
            "lambda_": self.lambda_,
            "from_logits": self.from_logits,
            "mdd_margin": self.mdd_margin,
            "cdan_random_dim": self.cdan_random_dim,
            "lambda_warmup": self.lambda_warmup,
        }
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("feature_extractor", "classifier", "discriminator"):
            if config.get(key) is not None:
                config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)
