"""`fine_tune`: the fine-tuning recipe in one call, built on one `model.fit`."""

import math

import keras
import numpy as np

from keras_transfer.api_export import keras_transfer_export
from keras_transfer.callbacks.gradual_unfreezing import GradualUnfreezing
from keras_transfer.peft.enable_lora import enable_lora

SCHEDULES = ("one_cycle", "slanted_triangular", "constant")


@keras_transfer_export("keras_transfer.fine_tune")
def fine_tune(
    model,
    backbone,
    train_data,
    validation_data=None,
    epochs=20,
    *,
    head_epochs=None,
    unfreeze_every=1,
    learning_rate=1e-3,
    layer_decay=0.7,
    schedule="one_cycle",
    optimizer=None,
    freeze_bn=True,
    train_bn=False,
    loss=None,
    metrics=None,
    compile=True,
    batch_size=None,
    callbacks=None,
    verbose="auto",
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
       group every `unfreeze_every` epochs (`GradualUnfreezing`).
    3. Each group learns at its own rate (`DiscriminativeLR`, layer-wise
       learning-rate decay with the head as the top layer): the head at
       `learning_rate`, the top group of the backbone at `layer_decay` times
       that, and each group below at `layer_decay` times the rate of the
       group above.
    4. The base rate follows a one-cycle schedule over the whole fit
       (`OneCycle`; or `SlantedTriangular`, or constant).
    5. Every BatchNorm layer of the backbone stays in inference mode
       (`freeze_bn=True`): with little data, batch statistics are noisy and
       the pretrained moving statistics are better.

    The optimizer is built once over every variable that will train, so no
    optimizer state is lost when a group is unfrozen, and frozen groups skip
    back-propagation (the train function is rebuilt once per unfreeze event).

    With `compile=True` (the default) the model is compiled here:
    `optimizer` (default `keras.optimizers.Adam()`) is given the schedule and
    wrapped in `DiscriminativeLR`. The loss, when not given, is inferred from
    the labels and the output layer: integer labels (or one label column)
    with several outputs give `SparseCategoricalCrossentropy`; one-hot
    labels give `CategoricalCrossentropy`; a single output gives
    `BinaryCrossentropy`. `from_logits` is `False` when the output layer
    ends in a softmax or sigmoid, `True` otherwise. Anything else (a
    regression, several outputs) needs `loss=`. `metrics` defaults to
    `["accuracy"]` for an inferred loss. With `compile=False` the model's own
    compile (optimizer, loss, metrics) is kept and only the freezing schedule
    is applied; the optimizer must then be able to take every variable that
    will train (see `GradualUnfreezing`).

    Args:
        model: A `keras.Model` that calls `backbone` and adds a head.
        backbone: The `keras_transfer.backbones.Backbone` inside `model`.
        train_data: What `model.fit` takes as `x`: a tuple `(x, y)` or
            `(x, y, sample_weight)` of arrays, a `tf.data.Dataset` of
            `(x, y)` batches, or a `keras.utils.PyDataset`.
        validation_data: Passed to `model.fit`.
        epochs: Integer. Total number of epochs, head phase included.
        head_epochs: Integer. Epochs with the backbone frozen before the
            first unfreeze event. Defaults to `max(1, epochs // 10)`.
        unfreeze_every: Integer. Epochs between two unfreeze events.
        learning_rate: Float. Peak learning rate of the head.
        layer_decay: Float in (0, 1]. Ratio of the rates of two consecutive
            layers (lower / upper), the head counting as the top layer: the
            top group of the backbone gets `learning_rate * layer_decay`.
            1.0 gives every group the rate of the head.
        schedule: One of `"one_cycle"`, `"slanted_triangular"`, `"constant"`,
            or a `keras.optimizers.schedules.LearningRateSchedule` to use as
            is (then `learning_rate` is ignored).
        optimizer: A `keras.optimizers.Optimizer` instance, or `None` for
            `Adam`. Its learning rate is replaced by the schedule.
        freeze_bn: Boolean. Keep every BatchNorm of the backbone in inference
            mode.
        train_bn: Boolean. Train the BatchNorm layers of frozen groups
            (fastai's default). Exclusive with `freeze_bn`.
        loss: A loss for `model.compile`, or `None` to infer it.
        metrics: Metrics for `model.compile`, or `None` (see above).
        compile: Boolean. If `False`, keep the model's own compile.
        batch_size: Integer. Passed to `model.fit` for array inputs
            (default 32).
        callbacks: List of extra callbacks for `model.fit`.
        verbose: Passed to `model.fit`.
        peft: `None` (train the backbone's own weights), `"lora"` or
            `"dora"`: first call `keras_transfer.peft.enable_lora(backbone,
            rank=rank, dora=peft == "dora")` with its default targets, so
            that the groups unfrozen by the schedule train their adapters
            (at their group's rate) while the pretrained weights stay frozen.
        rank: Integer. Rank of the adapters when `peft` is set.
        **fit_kwargs: Any other argument of `model.fit`.

    Returns:
        The `keras.callbacks.History` of the fit. Its `history` has the
        usual metrics and, per epoch, `unfrozen_groups` and
        `trainable_params`.

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
    _check_int("epochs", epochs, minimum=1)
    if head_epochs is None:
        head_epochs = max(1, epochs // 10)
    _check_int("head_epochs", head_epochs, minimum=0)
    _check_int("unfreeze_every", unfreeze_every, minimum=1)
    if head_epochs >= epochs:
        raise ValueError(
            "`head_epochs` must be smaller than `epochs`, or the backbone is "
            f"never unfrozen. Received: head_epochs={head_epochs}, "
            f"epochs={epochs}"
        )
    if isinstance(learning_rate, bool) or not (
        isinstance(learning_rate, (int, float)) and learning_rate > 0
    ):
        raise ValueError(
            "`learning_rate` must be a positive float. Received: "
            f"learning_rate={learning_rate!r}"
        )
    if isinstance(layer_decay, bool) or not (
        isinstance(layer_decay, (int, float)) and 0 < layer_decay <= 1
    ):
        raise ValueError(
            "`layer_decay` must be a float in (0, 1]. Received: "
            f"layer_decay={layer_decay!r}"
        )
    if not (
        isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule)
        or schedule in SCHEDULES
    ):
        raise ValueError(
            f"`schedule` must be one of {SCHEDULES} or a LearningRateSchedule. "
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

    if peft not in (None, "lora", "dora"):
        raise ValueError(
            f"`peft` must be None, 'lora' or 'dora'. Received: peft={peft!r}"
        )
    if peft is not None:
        enable_lora(backbone, rank=rank, dora=peft == "dora")

    num_groups = len(backbone.groups) if hasattr(backbone, "groups") else 0
    unfreezing = GradualUnfreezing(
        backbone,
        schedule={
            head_epochs + i * unfreeze_every: i + 1
            for i in range(num_groups)
            if head_epochs + i * unfreeze_every < epochs
        },
        train_bn=train_bn,
        freeze_bn=freeze_bn,
    )

    if compile:
        if batch_size is None and _is_arrays(train_data):
            batch_size = 32
        steps = fit_kwargs.get("steps_per_epoch") or _steps_per_epoch(
            train_data, batch_size
        )
        total_steps = max(2, steps * epochs)
        if isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
            rate = schedule
        else:
            rate = _make_schedule(schedule, learning_rate, total_steps)
        optimizer = _with_learning_rate(optimizer, rate)
        optimizer = _discriminative(optimizer, layer_decay, backbone)
        if loss is None:
            loss, inferred_metrics = _infer_loss(model, train_data)
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
    return model.fit(
        x,
        validation_data=validation_data,
        epochs=epochs,
        callbacks=[unfreezing, *(callbacks or [])],
        verbose=verbose,
        **fit_kwargs,
    )


def _infer_loss(model, train_data):
    """Infer `(loss, metrics)` for a classifier from its labels and output.

    See `fine_tune` for the rules. Raises `ValueError` naming `loss` when
    no classification loss fits.
    """
    outputs = model.outputs if getattr(model, "_is_graph_network", False) else None
    if outputs is not None and len(outputs) != 1:
        raise ValueError(
            "Cannot infer `loss` for a model with several outputs: pass loss=. "
            f"Received a model with {len(outputs)} outputs."
        )
    units = _output_units(model)
    label_shape, label_dtype = _label_spec(train_data)
    from_logits = not _ends_in_probabilities(model)
    if units is None or label_shape is None:
        raise ValueError(
            "Cannot infer `loss`: the output size of the model or the labels of "
            "`train_data` are unknown. Pass loss=."
        )
    integer_labels = np.issubdtype(np.dtype(label_dtype), np.integer)
    label_columns = label_shape[-1] if len(label_shape) > 1 else 1
    if units == 1 and label_columns == 1:
        loss = keras.losses.BinaryCrossentropy(from_logits=from_logits)
    elif units > 1 and label_columns == 1:
        if not integer_labels:
            raise ValueError(
                "Cannot infer `loss`: one label column of floats for a model "
                f"with {units} outputs looks like a regression. Pass loss=."
            )
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits)
    elif units > 1 and label_columns == units:
        loss = keras.losses.CategoricalCrossentropy(from_logits=from_logits)
    else:
        raise ValueError(
            "Cannot infer `loss`: labels of shape "
            f"{tuple(label_shape)} do not match a classifier with {units} "
            "outputs. Pass loss=."
        )
    return loss, ["accuracy"]


# -- helpers ----------------------------------------------------------------


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
    if hasattr(train_data, "__len__"):  # PyDataset, keras Sequence
        return len(train_data)
    cardinality = getattr(train_data, "cardinality", None)
    if cardinality is not None:
        steps = int(cardinality())
        if steps > 0:
            return steps
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
    if _is_arrays(train_data):
        y = np.asarray(train_data[1]) if train_data[1] is not None else None
        if y is None:
            return None, None
        return y.shape, y.dtype
    spec = getattr(train_data, "element_spec", None)
    if isinstance(spec, (tuple, list)) and len(spec) >= 2:
        y = spec[1]
        return tuple(y.shape), y.dtype.as_numpy_dtype
    if hasattr(train_data, "__getitem__") and hasattr(train_data, "__len__"):
        batch = train_data[0]
        if isinstance(batch, (tuple, list)) and len(batch) >= 2:
            y = np.asarray(batch[1])
            return y.shape, y.dtype
    return None, None
