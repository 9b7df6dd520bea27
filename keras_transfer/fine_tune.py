"""`fine_tune`: the fine-tuning recipe in one call, built on one `model.fit`."""

import math

import keras
import numpy as np

from keras_transfer import _compat
from keras_transfer.api_export import keras_transfer_export
from keras_transfer.backbones._probe import probe_head
from keras_transfer.backbones.grouped_layer import GroupedLayer
from keras_transfer.backbones.groups_of import find_backbone, groups_of
from keras_transfer.callbacks.gradual_unfreezing import GradualUnfreezing
from keras_transfer.losses.sparse_categorical_crossentropy import (
    SparseCategoricalCrossentropy,
    check_label_smoothing,
)
from keras_transfer.lr_finder import lr_find
from keras_transfer.peft.enable_lora import enable_lora
from keras_transfer.utils.kept_state import run_keeping_state
from keras_transfer.utils.progress import progress_verbose

SCHEDULES = ("one_cycle", "slanted_triangular", "constant")
# The suggestion `learning_rate="find"` takes from its range test, which runs
# on the model with every group the schedule unfreezes trainable: the rate at
# the lowest loss divided by FIND_DIVISOR (see docs/guides/lr_find.md, "Third
# run", for how 3 was chosen over fastai's 10).
FIND_RULE = "minimum"
FIND_DIVISOR = 3.0
# What the arguments left at `None` mean, without and with `peft`. With
# `peft` the adapters of every group learn at the head's rate
# (`layer_decay` 1.0), all of them from the end of the head phase
# (`unfreeze_every` 0) and at a constant rate: a low-rank update starts from
# zero and has no pretrained weights to protect, so the decay, the gradual
# unfreezing and the warm-up that protect them in full fine-tuning only cost
# the adapters steps (docs/guides/peft.md, "Vision, fourth run" and "fifth
# run", for how they were chosen). Without `peft`, a decay of 0.5 keeps the
# lowest groups slow enough not to diverge on a target far from the
# backbone's pretraining (docs/guides/fine_tuning.md, "The layer decay
# across targets").
RECIPE = {"layer_decay": 0.5, "unfreeze_every": 1, "schedule": "one_cycle"}
PEFT_RECIPE = {"layer_decay": 1.0, "unfreeze_every": 0, "schedule": "constant"}
# The length of the fit when `epochs` is left out: at least MIN_EPOCHS
# epochs and at least MIN_STEPS optimizer steps, so that a few-shot set (an
# epoch of two or three steps) gets as many updates as a larger one
# (docs/guides/fine_tuning.md, "A length counted in steps", for how it was
# chosen). When the steps per epoch cannot be told, MIN_EPOCHS.
MIN_EPOCHS = 20
MIN_STEPS = 120
# The label smoothing of the loss `fine_tune` infers when `label_smoothing`
# is left out (docs/guides/fine_tuning.md, "Label smoothing", for how it was
# chosen).
LABEL_SMOOTHING = 0.1


@keras_transfer_export("keras_transfer.fine_tune")
def fine_tune(
    model,
    backbone=None,
    train_data=None,
    validation_data=None,
    epochs=None,
    *,
    head_epochs=None,
    probe_epochs=0,
    probe_l2=0.0,
    unfreeze_every=None,
    learning_rate=1e-3,
    layer_decay=None,
    schedule=None,
    optimizer=None,
    freeze_bn=None,
    train_bn=False,
    loss=None,
    label_smoothing=None,
    metrics=None,
    compile=True,
    batch_size=None,
    callbacks=None,
    verbose="auto",
    keep_head_weights=False,
    peft=None,
    rank=8,
    **fit_kwargs,
):
    """Fine-tune a model built on a pretrained backbone, in one call.

    The recipe of fastai's `fine_tune` and of the Keras transfer-learning
    guide, run as ONE standard `model.fit` from the components of this
    package:

    1. The head trains first, with the backbone frozen, for `head_epochs`.
    2. Then the groups of the backbone are unfrozen from the top down, one
       group every `unfreeze_every` epochs (`GradualUnfreezing`), or all at
       once with `unfreeze_every=0` (the default with `peft`).
    3. Each group learns at its own rate (`DiscriminativeLR`, layer-wise
       learning-rate decay with the head as the top layer): the head at
       `learning_rate`, the top group of the backbone at `layer_decay` (0.5)
       times that, and each group below at `layer_decay` times the rate of
       the group above. With `peft`, every group's adapters learn at the
       head's rate (`layer_decay=1.0`).
    4. The base rate follows a one-cycle schedule over the whole fit
       (`OneCycle`; or `SlantedTriangular`, or constant, the default with
       `peft`).
    5. The loss, when inferred, has a label smoothing of 0.1
       (`label_smoothing`): on a few labelled images it keeps the logits
       from growing without bound on examples already right.
    6. Every BatchNorm layer of the backbone stays in inference mode
       (`freeze_bn`, the default unless `train_bn=True`): with little data,
       batch statistics are noisy and the pretrained moving statistics are
       better.

    The optimizer is built once over every variable that will train, so no
    optimizer state is lost when a group is unfrozen, and frozen groups skip
    back-propagation (the train function is rebuilt once per unfreeze event).

    With `compile=True` (the default) the model is compiled here:
    `optimizer` (default `keras.optimizers.Adam()`) is given the schedule and
    wrapped in `DiscriminativeLR`. The loss, when not given, is inferred from
    the labels and the output layer: integer labels (or one label column)
    with several outputs give `SparseCategoricalCrossentropy`; one-hot
    labels give `CategoricalCrossentropy`; a single output gives
    `BinaryCrossentropy`. The labels must fit the head: integer labels in
    `[0, units)`, one-hot labels with `units` columns, labels in `[0, 1]` for
    a single output; otherwise the loss is not guessed and the error asks
    for `loss=`. `from_logits` is `False` when the output layer
    ends in a softmax or sigmoid, `True` otherwise. Anything else (a
    regression, several outputs) needs `loss=`. `metrics` defaults to
    `["accuracy"]` for an inferred loss. With `compile=False` the model's own
    compile (optimizer, loss, metrics) is kept and only the freezing schedule
    is applied; the optimizer must then be able to take every variable that
    will train (see `GradualUnfreezing`).

    The backbone is the pretrained part of `model`, as the model already has
    it: a `keras.applications` or keras-hub model, a keras-cv backbone, a
    model of your own, or a `Backbone`, grouped in place
    (`keras_transfer.backbones.groups_of`). With `backbone=None` it is found
    inside `model` (`keras_transfer.backbones.find_backbone`).

    Args:
        model: A `keras.Model` that calls `backbone` and adds a head.
        backbone: The pretrained part of `model` (any Keras layer or model, a
            `Backbone` or a `GroupedLayer`), or `None` to find it.
        train_data: What `model.fit` takes as `x`: a tuple `(x, y)` or
            `(x, y, sample_weight)` of arrays, a `tf.data.Dataset` of
            `(x, y)` batches, or a `keras.utils.PyDataset`.
        validation_data: Passed to `model.fit`.
        epochs: Integer, or `None`. Total number of epochs, head phase
            included. The recipe's events (head phase, unfreezing, the
            schedule) are counted in epochs. `None` (the default) counts the
            length in steps: at least 20 epochs and at least 120 optimizer
            steps, so an epoch of few steps gets more epochs (on 50 images
            at batch 32, 2 steps an epoch, 60 epochs; on 100 images, 30; on
            200 images or more, 20); 20 when the steps per epoch cannot be
            told. On three targets at 5, 10 and 20 images per class it
            scored 0.858 on validation against 0.844 for 20 epochs
            everywhere (docs/guides/fine_tuning.md, "A length counted in
            steps"). The length chosen is printed when it is over 20 (unless
            `verbose=0`) and is `history.params["epochs"]`.
        head_epochs: Integer. Epochs with the backbone frozen before the
            first unfreeze event. Defaults to `max(1, epochs // 10)`, so the
            default needs `epochs >= 2`; `head_epochs=0` starts unfreezing at
            the first epoch.
        probe_epochs: Integer. Before the fit, train the head alone for
            this many epochs on the backbone's outputs computed once over
            `train_data` (a linear probe on cached features, the first half
            of LP-FT, Kumar et al. 2022), with Adam at `learning_rate` (1e-3
            with `"find"`): the fine-tune then starts from a trained head
            instead of a random one. Needs a functional or Sequential
            `model` that reaches its head through the backbone only;
            augmentation layers in front of the backbone are fine (the
            features are computed in inference mode, so they are off). The
            probe's History is `history.probe`. 0 (the default) skips it.
        probe_l2: Float >= 0, or `"auto"`. L2 penalty on the head's kernels
            during the probe: `probe_l2 * sum(kernel ** 2)` is added to the
            mean loss of each probe step (biases are not penalized).
            `"auto"` is `1 / (2 * n)` for `n` training examples, which makes
            the probe's objective that of scikit-learn's
            `LogisticRegression()` (at its default `C=1`), so that a probe
            run long enough to converge (a few hundred epochs on a few-shot
            set; each costs a fraction of a backbone step) reaches a
            logistic regression on the same features. 0 (the default) fits
            the loss alone. Needs `probe_epochs > 0`.
        unfreeze_every: Integer, or `None`. Epochs between two unfreeze
            events; 0 unfreezes every group at once after the head phase
            (fastai's `fine_tune`). `None` (the default) means 1, or 0 with
            `peft` set.
        learning_rate: Float, or `"find"`. Peak learning rate of the head.
            `"find"` first runs `keras_transfer.lr_find` (100 steps, the
            model left as it was) on the model as it trains at the peak of
            the schedule, every group the schedule unfreezes trainable,
            with the same optimizer, loss and per-group factors, and uses its
            `"minimum"` suggestion with `divisor=3` (a third of the rate at
            the lowest loss: the rate the backbone can take, not only the
            head); the rate is printed (unless `verbose=0`) and kept in the
            History (see Returns).
        layer_decay: Float in (0, 1], or `None`. Ratio of the rates of two
            consecutive layers (lower / upper), the head counting as the top
            layer: the top group of the backbone gets
            `learning_rate * layer_decay`. 1.0 gives every group the rate of
            the head. `None` (the default) means 0.5, or 1.0 with `peft`
            set. Before 0.5, the default was 0.7: it scored the same on
            validation on eight of nine few-shot settings (three targets at
            5, 10 and 20 images per class, within 2.7 points either way) and
            diverged on the ninth (docs/guides/fine_tuning.md, "The layer
            decay across targets").
        schedule: One of `"one_cycle"`, `"slanted_triangular"`, `"constant"`,
            or a `keras.optimizers.schedules.LearningRateSchedule` to use as
            is (then `learning_rate` is ignored). `None` (the default) means
            `"one_cycle"`, or `"constant"` with `peft` set.
        optimizer: A `keras.optimizers.Optimizer` instance, or `None` for
            `Adam`. Its learning rate is replaced by the schedule.
        freeze_bn: Optional boolean. Keep every BatchNorm of the backbone in
            inference mode. `None` (the default) means `not train_bn`.
        train_bn: Boolean. Train the BatchNorm layers of frozen groups
            (fastai's default). Exclusive with `freeze_bn=True`.
        loss: A loss for `model.compile`, or `None` to infer it.
        label_smoothing: Float in `[0, 1)`, or `None`. Label smoothing of
            the inferred loss: the target of each example is the one-hot
            label mixed with the uniform distribution,
            `(1 - label_smoothing) * one_hot + label_smoothing /
            num_classes`. Integer labels get
            `keras_transfer.losses.SparseCategoricalCrossentropy`, one-hot
            and binary labels Keras's `CategoricalCrossentropy` and
            `BinaryCrossentropy`, each with this `label_smoothing`. `None`
            (the default) means 0.1; 0 gives Keras's plain losses (the
            default before 0.1 was chosen: on three targets at 5, 10 and 20
            images per class, 0.1 scored 0.869 on validation against 0.857;
            docs/guides/fine_tuning.md, "Label smoothing"). The probe of
            `probe_epochs` fits the plain loss. With `loss=` or
            `compile=False` the loss is yours: leave `label_smoothing` out
            and set it on that loss.
        metrics: Metrics for `model.compile`, or `None` (see above).
        compile: Boolean. If `False`, keep the model's own compile.
        batch_size: Integer. Passed to `model.fit` for array inputs
            (default 32).
        callbacks: List of extra callbacks for `model.fit`.
        verbose: Passed to `model.fit`; `"auto"` and 1 show Keras's bar on
            a terminal and plain lines (`verbose=2`) in a file or log.
        keep_head_weights: Boolean. Record the weights at the end of the
            head-only phase (a linear probe on the pretrained features; the
            weights before training if `head_epochs=0`) in
            `history.head_weights`, a list as `model.get_weights()` gives.
            With the final weights it gives the two ends of WiSE-FT
            (`keras_transfer.averaging.interpolate`, `choose_alpha`).
        peft: `None` (train the backbone's own weights), `"lora"` or
            `"dora"`: first call `keras_transfer.peft.enable_lora(backbone,
            rank=rank, dora=peft == "dora")` with its default targets, so
            that the groups unfrozen by the schedule train their adapters
            while the pretrained weights stay frozen. It changes the
            defaults of `unfreeze_every`, `layer_decay` and `schedule`: after
            the head phase every group's adapters train at once, at the
            head's constant rate.
        rank: Integer. Rank of the adapters when `peft` is set.
        **fit_kwargs: Any other argument of `model.fit`.

    Returns:
        The `keras.callbacks.History` of the fit. Its `history` has the
        usual metrics and, per epoch, `unfrozen_groups` and
        `trainable_params`. `history.params["learning_rate"]` is the peak
        rate used; with `learning_rate="find"` it is the rate found, and
        `history.lr_find` holds the range test (`LRFinderResult`, with
        `plot()`).

    Examples:

        >>> from keras_transfer.backbones import Backbone
        >>> inputs = keras.Input((4,))
        >>> h = keras.layers.Dense(8, activation="relu", name="low")(inputs)
        >>> h = keras.layers.Dense(8, activation="relu", name="high")(h)
        >>> backbone = Backbone(inputs, h, groups={"low": "low", "high": "high"})
        >>> model = keras.Sequential([backbone, keras.layers.Dense(3)])
        >>> x, y = np.random.rand(16, 4), np.arange(16) % 3
        >>> history = fine_tune(model, backbone, (x, y), epochs=3, verbose=0)
        >>> history.history["unfrozen_groups"]
        [0, 1, 2]
    """
    if not isinstance(model, keras.Model):
        raise ValueError(
            f"`model` must be a keras.Model. Received: model={model!r}"
        )
    if train_data is None:
        hint = ""
        if backbone is not None and not isinstance(
            backbone, (keras.layers.Layer, GroupedLayer)
        ):
            hint = (
                " The second argument is `backbone`: call fine_tune(model, "
                "train_data=data) or fine_tune(model, base_model, data)."
            )
        raise ValueError(
            f"`train_data` is required.{hint} Received: train_data=None"
        )
    backbone = (
        find_backbone(model)
        if backbone is None
        else groups_of(backbone, argument="backbone")
    )
    if batch_size is not None:
        _check_int("batch_size", batch_size, minimum=1)
    if batch_size is None and _is_arrays(train_data):
        batch_size = 32
    chosen_length = epochs is None
    if chosen_length:
        epochs, steps_each = _default_epochs(
            train_data, batch_size, fit_kwargs.get("steps_per_epoch")
        )
    else:
        _check_int("epochs", epochs, minimum=1)
    if peft not in (None, "lora", "dora"):
        raise ValueError(
            f"`peft` must be None, 'lora' or 'dora'. Received: peft={peft!r}"
        )
    defaults = RECIPE if peft is None else PEFT_RECIPE
    if unfreeze_every is None:
        unfreeze_every = defaults["unfreeze_every"]
    if layer_decay is None:
        layer_decay = defaults["layer_decay"]
    if schedule is None:
        schedule = defaults["schedule"]
    if head_epochs is None:
        head_epochs = _default_head_epochs(epochs)
    _check_int("head_epochs", head_epochs, minimum=0)
    _check_int("probe_epochs", probe_epochs, minimum=0)
    _check_probe_l2(probe_l2, probe_epochs)
    _check_int("unfreeze_every", unfreeze_every, minimum=0)
    label_smoothing = _label_smoothing(label_smoothing, loss, compile)
    if head_epochs >= epochs:
        raise ValueError(
            "`head_epochs` must be smaller than `epochs`, or the backbone is "
            f"never unfrozen. Received: head_epochs={head_epochs}, "
            f"epochs={epochs}"
        )
    find = isinstance(learning_rate, str) and learning_rate == "find"
    if not find and (
        isinstance(learning_rate, bool)
        or not (isinstance(learning_rate, (int, float)) and learning_rate > 0)
    ):
        raise ValueError(
            "`learning_rate` must be a positive float or 'find'. Received: "
            f"learning_rate={learning_rate!r}"
        )
    if find and not compile:
        raise ValueError(
            "`learning_rate='find'` needs `compile=True`: with compile=False "
            "the model's own optimizer and rate are kept. Run "
            "keras_transfer.lr_find(model, data) yourself instead."
        )
    if isinstance(layer_decay, bool) or not (
        isinstance(layer_decay, (int, float)) and 0 < layer_decay <= 1
    ):
        raise ValueError(
            "`layer_decay` must be a float in (0, 1] or None. Received: "
            f"layer_decay={layer_decay!r}"
        )
    if not (
        isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule)
        or schedule in SCHEDULES
    ):
        raise ValueError(
            f"`schedule` must be one of {SCHEDULES}, a LearningRateSchedule "
            "or None. "
            f"Received: schedule={schedule!r}"
        )
    if optimizer is not None and not isinstance(
        optimizer, keras.optimizers.Optimizer
    ):
        raise ValueError(
            "`optimizer` must be a keras.optimizers.Optimizer instance or None. "
            f"Received: optimizer={optimizer!r}"
        )
    for name in ("validation_split", "initial_epoch"):
        if fit_kwargs.get(name):
            raise ValueError(
                f"`{name}` is not supported by fine_tune: pass validation_data, "
                "and resume with keras.callbacks.BackupAndRestore. Received: "
                f"{name}={fit_kwargs[name]!r}"
            )

    if peft is not None:
        enable_lora(
            getattr(backbone, "layer", backbone), rank=rank, dora=peft == "dora"
        )

    num_groups = len(backbone.groups)
    if freeze_bn is None:
        freeze_bn = not train_bn
    unfreezing = GradualUnfreezing(
        backbone,
        schedule=_unfreeze_schedule(
            head_epochs, unfreeze_every, num_groups, epochs
        ),
        train_bn=train_bn,
        freeze_bn=freeze_bn,
    )

    if chosen_length and epochs > MIN_EPOCHS and verbose != 0:
        print(
            f"fine_tune: {epochs} epochs of {steps_each} steps (`epochs` left "
            f"out: at least {MIN_EPOCHS} epochs and {MIN_STEPS} steps)",
            flush=True,
        )
    probe = None
    if probe_epochs:
        probe = _probe(
            model, backbone, train_data, probe_epochs,
            1e-3 if find else learning_rate, loss, compile, batch_size,
            fit_kwargs.get("steps_per_epoch"), probe_l2,
        )
    if compile:
        steps = fit_kwargs.get("steps_per_epoch") or _steps_per_epoch(
            train_data, batch_size
        )
        total_steps = max(2, steps * epochs)
        found = None
        if find:
            found, learning_rate = _find_learning_rate(
                model,
                unfreezing.final_groups(epochs),
                (train_data, batch_size, optimizer, layer_decay, backbone),
                (loss, label_smoothing, metrics, freeze_bn, train_bn, verbose),
            )
        if isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
            rate = schedule
        else:
            rate = _make_schedule(schedule, learning_rate, total_steps)
        optimizer = _with_learning_rate(optimizer, rate)
        optimizer = _discriminative(optimizer, layer_decay, backbone)
        if loss is None:
            loss, inferred_metrics = _infer_loss(
                model, train_data, label_smoothing
            )
            if metrics is None:
                metrics = inferred_metrics
        model.compile(optimizer=optimizer, loss=loss, metrics=metrics)
    elif getattr(model, "optimizer", None) is None:
        raise ValueError(
            "`compile=False` keeps the model's own compile, but the model is not "
            "compiled. Call model.compile(...) first, or pass compile=True."
        )

    if _is_arrays(train_data):
        x, y, sample_weight = _unpack(train_data)
        fit_kwargs.update(y=y, sample_weight=sample_weight, batch_size=batch_size)
    else:
        x = train_data
        if batch_size is not None:
            fit_kwargs["batch_size"] = batch_size
    head_weights = []
    if keep_head_weights:
        callbacks = [_HeadWeights(head_epochs, head_weights), *(callbacks or [])]
    history = run_keeping_state(
        lambda callbacks: model.fit(
            x,
            validation_data=validation_data,
            epochs=epochs,
            callbacks=callbacks,
            verbose=progress_verbose(verbose),
            **fit_kwargs,
        ),
        [unfreezing, *(callbacks or [])],
    )
    if compile and not isinstance(
        schedule, keras.optimizers.schedules.LearningRateSchedule
    ):
        history.params["learning_rate"] = float(learning_rate)
    if find:
        history.lr_find = found
    if probe is not None:
        history.probe = probe
    if keep_head_weights:
        history.head_weights = head_weights[0] if head_weights else None
    return history


def _unfreeze_schedule(head_epochs, every, num_groups, epochs):
    """`{epoch: groups}` for `GradualUnfreezing`; `every=0`: all at once."""
    if every == 0:
        return {head_epochs: num_groups}
    return {
        head_epochs + i * every: i + 1
        for i in range(num_groups)
        if head_epochs + i * every < epochs
    }


def _probe(
    model, backbone, train_data, epochs, rate, loss, compile, batch, steps, l2
):
    """Fit the head of `model` on cached backbone outputs (`probe_epochs`)."""
    if loss is None:
        loss = (
            _infer_loss(model, train_data)[0] if compile else model.loss
        )
    layer = getattr(backbone, "layer", backbone)
    return probe_head(
        model, layer, train_data, epochs=epochs, learning_rate=rate, loss=loss,
        batch_size=batch, steps=steps, l2=l2,
    )


def _find_learning_rate(model, groups, data, settings):
    """`lr_find` on the model with its top `groups` groups trainable.

    Returns the range test's result and the rate it suggests.
    """
    train_data, batch_size, optimizer, layer_decay, backbone = data
    loss, label_smoothing, metrics, freeze_bn, train_bn, verbose = settings
    if loss is None:
        loss, inferred = _infer_loss(model, train_data, label_smoothing)
        metrics = inferred if metrics is None else metrics
    probe = _with_learning_rate(optimizer, 1e-3)
    probe = _discriminative(probe, layer_decay, backbone)
    flags = [(layer, layer.trainable) for layer in _compat.flatten_layers(backbone)]
    if groups <= 0:
        backbone.freeze(train_bn=train_bn)
    elif groups >= len(backbone.groups):
        backbone.unfreeze(freeze_bn=freeze_bn)
    else:
        backbone.freeze_to(groups, train_bn=train_bn, freeze_bn=freeze_bn)
    model.compile(optimizer=probe, loss=loss, metrics=metrics)
    try:
        result = lr_find(
            model,
            tuple(train_data) if _is_arrays(train_data) else train_data,
            batch_size=batch_size if _is_arrays(train_data) else None,
            verbose=0,
        )
    finally:
        # Outer layers first: setting `trainable` on a layer sets it on all
        # the layers inside it.
        for layer, flag in flags:
            layer.trainable = flag
    rate = result.suggestion(FIND_RULE, divisor=FIND_DIVISOR)
    if verbose != 0:
        print(
            f"fine_tune: learning_rate='find' chose {rate:.3g} "
            f"({FIND_RULE} / {FIND_DIVISOR:g} rule of a "
            f"{result.steps}-step range test, "
            f"{result.seconds:.1f} s)",
            flush=True,
        )
    return result, rate


class _HeadWeights(keras.callbacks.Callback):
    """Records the weights once the head-only phase is over."""

    def __init__(self, head_epochs, store):
        super().__init__()
        self.head_epochs = head_epochs
        self.store = store

    def on_train_begin(self, logs=None):
        if self.head_epochs == 0:
            self.store.append(self.model.get_weights())

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.head_epochs:
            self.store.append(self.model.get_weights())


def _label_smoothing(value, loss, compile):
    """The label smoothing of the inferred loss, or an error naming it."""
    if value is None:
        return LABEL_SMOOTHING if loss is None and compile else 0.0
    value = check_label_smoothing(value)
    if loss is not None or not compile:
        given = f"loss={loss!r}" if loss is not None else "compile=False"
        raise ValueError(
            "`label_smoothing` smooths the loss fine_tune infers; with "
            f"{given} the loss is yours. Leave label_smoothing out and set "
            "it on that loss (keras_transfer.losses."
            "SparseCategoricalCrossentropy takes it for integer labels). "
            f"Received: label_smoothing={value!r}, {given}"
        )
    return value


def _infer_loss(model, train_data, label_smoothing=0.0):
    """Infer `(loss, metrics)` for a classifier from its labels and output.

    See `fine_tune` for the rules. Raises `ValueError` naming `loss` when
    no classification loss fits.
    """
    outputs = model.outputs if _compat.is_functional(model) else None
    if outputs is not None and len(outputs) != 1:
        raise ValueError(
            "Cannot infer `loss` for a model with several outputs: pass loss=. "
            f"Received a model with {len(outputs)} outputs."
        )
    units = _output_units(model)
    label_shape, label_dtype, label_values = _label_spec(train_data)
    from_logits = not _ends_in_probabilities(model)
    if units is None or label_shape is None:
        raise ValueError(
            "Cannot infer `loss`: the output size of the model or the labels of "
            "`train_data` are unknown. Pass loss=."
        )
    integer_labels = np.issubdtype(np.dtype(label_dtype), np.integer)
    label_columns = label_shape[-1] if len(label_shape) > 1 else 1
    if units == 1 and label_columns == 1:
        loss = keras.losses.BinaryCrossentropy(
            from_logits=from_logits, label_smoothing=label_smoothing
        )
    elif units > 1 and label_columns == 1:
        if not integer_labels:
            raise ValueError(
                "Cannot infer `loss`: one label column of floats for a model "
                f"with {units} outputs looks like a regression. Pass loss=."
            )
        loss = (
            SparseCategoricalCrossentropy(
                from_logits=from_logits, label_smoothing=label_smoothing
            )
            if label_smoothing
            else keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits)
        )
    elif units > 1 and label_columns == units:
        loss = keras.losses.CategoricalCrossentropy(
            from_logits=from_logits, label_smoothing=label_smoothing
        )
        label_values = None  # one-hot: the columns already match the head
    else:
        raise ValueError(
            "Cannot infer `loss`: labels of shape "
            f"{tuple(label_shape)} do not match a classifier with {units} "
            "outputs. Pass loss=."
        )
    _check_labels_fit_head(units, label_values)
    return loss, ["accuracy"]


def _check_labels_fit_head(units, values):
    """Raise when class labels `values` cannot be the targets of `units` outputs."""
    if values is None or not np.size(values):
        return
    values = np.asarray(values)
    low, high = float(values.min()), float(values.max())
    if units == 1 and (low < 0 or high > 1):
        found = np.unique(values)
        raise ValueError(
            "Cannot infer `loss`: the head has 1 output, which fits binary "
            f"labels in [0, 1], but the labels take the values {found[:10]}"
            f"{'...' if found.size > 10 else ''}. For {found.size} classes give "
            f"the head {found.size} units, or pass loss= if this is intended."
        )
    if units > 1 and (low < 0 or high >= units):
        raise ValueError(
            f"Cannot infer `loss`: the head has {units} outputs, which fit "
            f"integer labels in [0, {units - 1}], but the labels go from "
            f"{low:g} to {high:g}. Give the head {int(high) + 1} units, or "
            "pass loss=."
        )


def _default_epochs(train_data, batch_size, steps_per_epoch):
    """`(epochs, steps per epoch)` when `epochs` is left out.

    At least `MIN_EPOCHS` epochs and `MIN_STEPS` steps; `MIN_EPOCHS` (and
    `None` steps) when the steps per epoch cannot be told.
    """
    steps = steps_per_epoch
    if steps is None:
        try:
            steps = _steps_per_epoch(train_data, batch_size)
        except ValueError:
            return MIN_EPOCHS, None
    if (
        isinstance(steps, bool)
        or not isinstance(steps, (int, np.integer))
        or steps < 1
    ):
        return MIN_EPOCHS, None
    return max(MIN_EPOCHS, math.ceil(MIN_STEPS / steps)), steps


def _default_head_epochs(epochs):
    """`max(1, epochs // 10)`, or an error about `epochs` when that leaves none."""
    if epochs < 2:
        raise ValueError(
            "`epochs` must be >= 2 with the default head phase (one epoch with "
            "the backbone frozen, then unfreezing). Pass epochs >= 2, or "
            f"head_epochs=0 to unfreeze from the first epoch. Received: "
            f"epochs={epochs}"
        )
    return max(1, epochs // 10)


# -- helpers ----------------------------------------------------------------


def _check_probe_l2(value, probe_epochs):
    if isinstance(value, str):
        valid = value == "auto"
    else:
        valid = (
            isinstance(value, (int, float, np.floating, np.integer))
            and not isinstance(value, bool)
            and np.isfinite(value)
            and value >= 0
        )
    if not valid:
        raise ValueError(
            f'`probe_l2` must be a float >= 0 or "auto". Received: '
            f"probe_l2={value!r}"
        )
    if value != 0 and not probe_epochs:
        raise ValueError(
            "`probe_l2` penalizes the head during the probe, and no probe "
            "runs: pass probe_epochs > 0 with it, or leave probe_l2 at 0. "
            f"Received: probe_l2={value!r}, probe_epochs={probe_epochs}"
        )


def _check_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(
            f"`{name}` must be an integer >= {minimum}. Received: {name}={value!r}"
        )
    if value < minimum:
        raise ValueError(
            f"`{name}` must be >= {minimum}. Received: {name}={value!r}"
        )


def _is_arrays(data):
    return isinstance(data, (tuple, list)) and 2 <= len(data) <= 3


def _unpack(data):
    if len(data) == 2:
        return data[0], data[1], None
    return tuple(data)


def _num_samples(x):
    if isinstance(x, dict):
        x = next(iter(x.values()))
    elif isinstance(x, (list, tuple)):
        x = x[0]
    return int(x.shape[0])


def _steps_per_epoch(train_data, batch_size):
    if _is_arrays(train_data):
        return math.ceil(_num_samples(train_data[0]) / batch_size)
    cardinality = getattr(train_data, "cardinality", None)
    if cardinality is not None:  # tf.data: its `len` raises when unknown
        steps = int(cardinality())
        if steps > 0:
            return steps
    elif hasattr(train_data, "__len__"):  # PyDataset, keras Sequence
        return len(train_data)
    raise ValueError(
        "Cannot tell the number of steps per epoch of `train_data` (an infinite "
        "or unknown-size dataset), which the learning-rate schedule needs. Pass "
        "steps_per_epoch=."
    )


def _make_schedule(kind, learning_rate, total_steps):
    from keras_transfer import schedules

    if kind == "one_cycle":
        return schedules.OneCycle(max_lr=learning_rate, total_steps=total_steps)
    if kind == "slanted_triangular":
        # The paper's 10% climb, but at least one step on short runs.
        cut_frac = max(0.1, min(0.5, 1.0 / total_steps + 1e-9))
        return schedules.SlantedTriangular(
            max_lr=learning_rate, total_steps=total_steps, cut_frac=cut_frac
        )
    return learning_rate


def _with_learning_rate(optimizer, rate):
    if optimizer is None:
        return keras.optimizers.Adam(learning_rate=rate)
    config = optimizer.get_config()
    config["learning_rate"] = rate
    return optimizer.__class__.from_config(config)


def _discriminative(optimizer, layer_decay, backbone):
    from keras_transfer.optimizers import DiscriminativeLR

    # Layer-wise decay with the head as the top layer: the head gets 1, the
    # top group of the backbone `layer_decay`, the next `layer_decay ** 2`...
    groups = backbone.groups
    multipliers = {
        group.name: float(layer_decay ** (len(groups) - i))
        for i, group in enumerate(groups)
    }
    return DiscriminativeLR(optimizer, multipliers=multipliers, groups=backbone)


def _output_units(model):
    try:
        shape = model.output_shape
    except (AttributeError, ValueError):
        shape = None
    if shape is None:
        last = model.layers[-1] if getattr(model, "layers", None) else None
        units = getattr(last, "units", None)
        return units
    if isinstance(shape, list):
        shape = shape[0]
    return shape[-1]


def _ends_in_probabilities(model):
    layer = model.layers[-1] if getattr(model, "layers", None) else None
    while isinstance(layer, keras.Model) and layer.layers:
        layer = layer.layers[-1]
    if isinstance(layer, keras.layers.Softmax):
        return True
    activation = getattr(layer, "activation", None)
    if isinstance(layer, keras.layers.Activation):
        activation = layer.activation
    name = getattr(activation, "__name__", "")
    return name in ("softmax", "sigmoid")


def _label_spec(train_data):
    """`(shape, dtype, values)` of the labels; values of one batch for datasets."""
    if _is_arrays(train_data):
        y = np.asarray(train_data[1]) if train_data[1] is not None else None
        if y is None:
            return None, None, None
        return y.shape, y.dtype, y
    spec = getattr(train_data, "element_spec", None)
    if isinstance(spec, (tuple, list)) and len(spec) >= 2:
        y = spec[1]
        values = None
        for batch in train_data.take(1):
            values = np.asarray(batch[1])
        return tuple(y.shape), y.dtype.as_numpy_dtype, values
    if hasattr(train_data, "__getitem__") and hasattr(train_data, "__len__"):
        batch = train_data[0]
        if isinstance(batch, (tuple, list)) and len(batch) >= 2:
            y = np.asarray(batch[1])
            return y.shape, y.dtype, y
    return None, None, None
