"""`GradualUnfreezing`: unfreeze a backbone group by group inside one `fit`."""

import weakref

import keras

from keras_transfer import _compat
from keras_transfer.api_export import keras_transfer_export
from keras_transfer.backbones.groups_of import find_backbone, groups_of
from keras_transfer.utils.stateless import apply_to_variables
from keras_transfer.utils.variables import count_params


@keras_transfer_export("keras_transfer.callbacks.GradualUnfreezing")
class GradualUnfreezing(keras.callbacks.Callback):
    """Unfreeze the groups of a backbone from the top down during one `fit`.

    Training starts with the backbone frozen, so only the head learns. At the
    epochs given by the schedule, more groups of the backbone become trainable,
    starting with the group nearest the output (ULMFiT's gradual unfreezing).
    Everything happens inside one `model.fit` call:

    - The optimizer is kept. It is built once, at the start of training, over
      every variable that will ever train (the head and every group the
      schedule unfreezes), so unfreezing a group loses no optimizer state.
      Keras optimizers only update the variables they were built with, and
      accept any subset of them at each step.
    - Frozen groups really skip back-propagation: the train function is
      rebuilt exactly once at each unfreeze event, so a step with the backbone
      frozen costs what the step of a statically frozen model costs.
    - The trainable set is derived from the epoch number at the start of each
      epoch, so training resumed by `keras.callbacks.BackupAndRestore` (or with
      `initial_epoch`) continues with the right groups trainable.
    - At the end of each epoch the logs get `unfrozen_groups` (how many groups
      of the backbone are trainable) and `trainable_params`, so `History` and
      `TensorBoard` record them (list `GradualUnfreezing` before `TensorBoard`).

    If the optimizer was already built over fewer variables and has not taken
    a step yet (as under a `tf.distribute` strategy, where `fit` builds it
    before the callbacks run), `model.optimizer` is replaced by a fresh copy
    of the same configuration, built over every variable that will train.
    An optimizer that has already taken steps over fewer variables is an
    error: compile the model again with a new optimizer. The backbone does not
    need to be frozen before `fit`: the callback freezes it.

    The backbone can be any Keras layer or model inside the trained model: a
    `keras.applications` or keras-hub model, a keras-cv backbone, a model of
    your own, or a `Backbone`. It is grouped in place
    (`keras_transfer.backbones.groups_of`): the same layers and variables,
    nothing rebuilt. With `backbone=None` the callback finds the pretrained
    part inside the model (`keras_transfer.backbones.find_backbone`). A
    `base_model.trainable = False` set before `fit`, as in the Keras
    transfer-learning guide, does not stop the unfreezing: the callback owns
    the trainable flags of the backbone during `fit`. BatchNorm layers follow
    `train_bn` / `freeze_bn` only; a `training=False` in the model's call
    does not keep a trainable BatchNorm in inference mode during `fit`
    (keras-team/keras#20285), so pass `freeze_bn=True` for that.

    Args:
        backbone: The pretrained part of the trained model (any Keras layer or
            model, or a `Backbone` / `GroupedLayer`), or `None` to find it
            inside the model.
        schedule: When to unfreeze, as one of:
            a dict `{epoch: n}`: from `epoch` on, the top `n` groups are
            trainable (`n` strictly increasing with the epoch, at most the
            number of groups); or a list of epochs: at the i-th epoch of the
            list (0-based `i`), the top `i + 1` groups become trainable.
            Epochs are 0-based, as in `on_epoch_begin`. Mutually exclusive
            with `every`.
        every: Integer. Unfreeze one more group every `every` epochs: the top
            group at epoch `every`, the next at `2 * every`, and so on. Used
            when `schedule` is `None`; defaults to 1.
        train_bn: Boolean. If `True`, BatchNorm layers of frozen groups stay
            trainable (fastai's default). Passed to the backbone's `freeze_to`.
        freeze_bn: Boolean. If `True`, every BatchNorm layer of the backbone
            stays non-trainable, i.e. in inference mode, even in trainable
            groups. This is usually best when fine-tuning on little data.
        verbose: Integer. 0: quiet, 1: print a message at each unfreeze event.

    Examples:

        >>> from keras_transfer.backbones import Backbone
        >>> inputs = keras.Input((4,))
        >>> h = keras.layers.Dense(8, activation="relu", name="low")(inputs)
        >>> h = keras.layers.Dense(8, activation="relu", name="high")(h)
        >>> backbone = Backbone(inputs, h, groups={"low": "low", "high": "high"})
        >>> model = keras.Sequential([backbone, keras.layers.Dense(1)])
        >>> model.compile(optimizer="adam", loss="mse")
        >>> unfreezing = GradualUnfreezing(backbone, schedule=[1, 2])
        >>> history = model.fit(np.ones((8, 4)), np.ones((8, 1)), epochs=3,
        ...                     callbacks=[unfreezing], verbose=0)
        >>> history.history["unfrozen_groups"]
        [0, 1, 2]
        >>> backbone.trainable_group_names
        ['low', 'high']
    """

    def __init__(
        self,
        backbone=None,
        schedule=None,
        every=None,
        train_bn=False,
        freeze_bn=False,
        verbose=0,
    ):
        super().__init__()
        if schedule is not None and every is not None:
            raise ValueError(
                "Pass either `schedule` or `every`, not both. Received: "
                f"schedule={schedule}, every={every}"
            )
        if every is not None:
            if isinstance(every, bool) or not isinstance(every, int) or every < 1:
                raise ValueError(
                    "`every` must be a positive integer (epochs between two "
                    f"unfreeze events). Received: every={every}"
                )
        if train_bn and freeze_bn:
            raise ValueError(
                "`train_bn` and `freeze_bn` contradict each other: pass at most "
                f"one of them as True. Received: train_bn={train_bn}, "
                f"freeze_bn={freeze_bn}"
            )
        self.backbone = None
        self._given = backbone
        self.every = every
        self.train_bn = bool(train_bn)
        self.freeze_bn = bool(freeze_bn)
        self.verbose = verbose
        self.schedule = _normalize_schedule(schedule)
        if backbone is not None:
            self._resolve(backbone, now=False)
        self._active = None
        self.events = []

    def _resolve(self, backbone, now=True):
        """Group `backbone` in place; an unbuilt layer waits for `fit`."""
        if isinstance(backbone, keras.layers.Layer) and not backbone.built:
            if now:
                groups_of(backbone, argument="backbone")  # raises: not built
            return
        self.backbone = groups_of(backbone, argument="backbone")
        if not self.backbone.groups:
            raise ValueError(
                f"`backbone` has no layer groups. Received: backbone={backbone!r}"
            )
        self._check_schedule_fits(self.backbone)

    # -- schedule ---------------------------------------------------------

    def _check_schedule_fits(self, backbone):
        num_groups = len(backbone.groups)
        if self.schedule:
            largest = max(self.schedule.values())
            if largest > num_groups:
                raise ValueError(
                    "`schedule` unfreezes past the last group: it asks for the "
                    f"top {largest} groups but the backbone has {num_groups} "
                    f"({backbone.group_names}). Received: schedule="
                    f"{self.schedule}"
                )

    def groups_at(self, epoch):
        """Number of top groups of the backbone trainable during `epoch`."""
        num_groups = len(self._backbone().groups)
        if self.schedule is None:
            return min(epoch // (self.every or 1), num_groups)
        count = 0
        for start, n in sorted(self.schedule.items()):
            if start <= epoch:
                count = n
        return count

    def final_groups(self, epochs=None):
        """Largest number of top groups the schedule ever makes trainable."""
        num_groups = len(self._backbone().groups)
        if self.schedule is None:
            if epochs is None:
                return num_groups
            return self.groups_at(max(epochs - 1, 0))
        return max(self.schedule.values(), default=0)

    # -- trainable state --------------------------------------------------

    def _backbone(self):
        if self.backbone is None:
            raise ValueError(
                "`backbone` is not known yet: pass it to GradualUnfreezing, or "
                "use the callback in `fit` of a model that holds one "
                "pretrained part (see `keras_transfer.backbones.find_backbone`)."
            )
        return self.backbone

    def _set_groups(self, n):
        backbone = self._backbone()
        num_groups = len(backbone.groups)
        if n <= 0:
            backbone.freeze(train_bn=self.train_bn)
        elif n >= num_groups:
            backbone.unfreeze(freeze_bn=self.freeze_bn)
        else:
            backbone.freeze_to(n, train_bn=self.train_bn, freeze_bn=self.freeze_bn)

    # -- optimizer ----------------------------------------------------------

    def _prepare_optimizer(self):
        """Build `model.optimizer` over every variable that will ever train."""
        model = self.model
        optimizer = getattr(model, "optimizer", None)
        if optimizer is None:
            raise ValueError(
                "GradualUnfreezing needs a compiled model: call "
                "`model.compile(optimizer=...)` before `fit`."
            )
        unbuilt = _unbuilt_layers(model)
        if unbuilt:
            raise ValueError(
                "GradualUnfreezing builds the optimizer over every variable "
                "that will train before the first step, but these layers of "
                f"model {model.name!r} have not created their variables yet: "
                f"{', '.join(unbuilt[:5])}{' ...' if len(unbuilt) > 5 else ''}. "
                "Build the model first: give it a `keras.Input`, call "
                "`model.build(input_shape)`, or call it on one batch."
            )
        _tell_model(optimizer, model)
        flags = _trainable_flags(model)
        try:
            self._set_groups(self.final_groups(self.params.get("epochs")))
            wanted = list(model.trainable_variables)
        finally:
            _restore_flags(flags)
        if not optimizer.built:
            with _strategy_scope(model):
                optimizer.build(wanted)
            _step_on_trainable_part(optimizer, model)
            return
        if _knows_variables(optimizer, wanted):
            _step_on_trainable_part(optimizer, model)
            return
        if int(keras.ops.convert_to_numpy(optimizer.iterations)) > 0:
            raise ValueError(
                "`model.optimizer` has already taken steps over fewer variables "
                f"than GradualUnfreezing will train ({len(wanted)} variables: "
                "the head and every group the schedule unfreezes). Keras "
                "optimizers only update the variables they were built with. "
                "Compile the model again with a new optimizer before this fit."
            )
        with _strategy_scope(model):
            fresh = optimizer.__class__.from_config(optimizer.get_config())
            _tell_model(fresh, model)
            fresh.build(wanted)
        _step_on_trainable_part(fresh, model)
        model.optimizer = fresh

    # -- callback hooks -----------------------------------------------------

    def set_params(self, params):
        super().set_params(params)
        if params and "epochs" in params and self.model is not None:
            # `fit` calls this before any `on_train_begin`: preparing the
            # optimizer here means `BackupAndRestore` finds it built over the
            # right variables whatever the order of the callbacks.
            self._begin()

    def on_train_begin(self, logs=None):
        self._begin()
        self._active = None
        self.events = []

    def _begin(self):
        model = self.model
        if self._given is None:
            # Found anew at every fit: the instance may serve another model.
            self.backbone = find_backbone(model)
            self._check_schedule_fits(self.backbone)
        elif self.backbone is None:
            self._resolve(self._given)
        _check_model_contains(model, self.backbone)
        self._prepare_optimizer()

    def on_epoch_begin(self, epoch, logs=None):
        n = self.groups_at(epoch)
        if n == self._active:
            return
        self._set_groups(n)
        # The train function of Keras reads `trainable` when it is traced:
        # rebuild it once, so the next step traces with the new trainable set.
        self.model.make_train_function(force=True)
        if self._active is not None:
            self.events.append((epoch, n))
            if self.verbose:
                print(
                    f"\nEpoch {epoch + 1}: GradualUnfreezing: top {n} of "
                    f"{len(self.backbone.groups)} groups trainable "
                    f"({', '.join(self.backbone.trainable_group_names)})."
                )
        self._active = n

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        logs["unfrozen_groups"] = self._active
        logs["trainable_params"] = int(
            count_params(self.model.trainable_variables)
        )

    def get_config(self):
        return {
            "schedule": self.schedule,
            "every": self.every,
            "train_bn": self.train_bn,
            "freeze_bn": self.freeze_bn,
            "verbose": self.verbose,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _normalize_schedule(schedule):
    """`{epoch: n}` with int keys, checked; `None` stays `None`."""
    if schedule is None:
        return None
    if isinstance(schedule, dict):
        items = []
        for key, value in schedule.items():
            try:
                epoch = int(key)
            except (TypeError, ValueError):
                raise ValueError(
                    "`schedule` keys must be epochs (integers). Received: "
                    f"schedule={schedule}"
                ) from None
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(
                    "`schedule` values must be numbers of top groups to make "
                    f"trainable (integers). Received: schedule={schedule}"
                )
            items.append((epoch, value))
    elif isinstance(schedule, (list, tuple)):
        for epoch in schedule:
            if isinstance(epoch, bool) or not isinstance(epoch, int):
                raise ValueError(
                    "`schedule` as a list must hold epochs (integers). "
                    f"Received: schedule={schedule}"
                )
        items = [(epoch, i + 1) for i, epoch in enumerate(schedule)]
    else:
        raise ValueError(
            "`schedule` must be a dict {epoch: number of top groups trainable} "
            f"or a list of epochs. Received: schedule={schedule!r}"
        )
    items.sort()
    previous_epoch, previous_n = None, 0
    for epoch, n in items:
        if epoch < 0:
            raise ValueError(
                "`schedule` epochs must be >= 0 (0-based, as in "
                f"on_epoch_begin). Received: schedule={schedule}"
            )
        if n < 0:
            raise ValueError(
                "`schedule` counts of trainable groups must be >= 0. "
                f"Received: schedule={schedule}"
            )
        if epoch == previous_epoch or n <= previous_n:
            raise ValueError(
                "`schedule` unfreezes a group twice: the number of trainable "
                "groups must strictly increase with the epoch, one entry per "
                f"epoch. Received: schedule={schedule}"
            )
        previous_epoch, previous_n = epoch, n
    return dict(items)


def _check_model_contains(model, backbone):
    model_ids = {id(v) for v in model.variables}
    backbone_variables = list(backbone.variables)
    if not backbone_variables or any(
        id(v) not in model_ids for v in backbone_variables
    ):
        raise ValueError(
            f"`backbone` ({backbone.name!r}) is not part of the model being "
            f"trained ({model.name!r}). Pass the layer or model instance that "
            "the model calls."
        )


def _unbuilt_layers(model):
    """Names of the layers inside `model` that have not been built."""
    return [
        layer.name
        for layer in _compat.flatten_layers(model, include_self=False)
        if not layer.built
    ]


def _trainable_flags(model):
    return [
        (layer, layer.trainable) for layer in _compat.flatten_layers(model)
    ]


def _restore_flags(flags):
    # Outer layers first: setting `trainable` on a layer sets it on its
    # sublayers too, which are restored right after.
    for layer, flag in flags:
        layer.trainable = flag


def _tell_model(optimizer, model):
    """Let `optimizer` (or the optimizers it wraps) know the model it trains.

    `DiscriminativeLR.set_model` makes its regex rules be checked against
    every variable of the model, including groups the schedule never
    unfreezes.
    """
    while optimizer is not None:
        if hasattr(optimizer, "set_model"):
            optimizer.set_model(model)
        optimizer = getattr(optimizer, "inner_optimizer", None)


def _step_on_trainable_part(optimizer, model):
    """On JAX, let a plain optimizer step on part of the variables it knows.

    Keras's JAX trainer calls `stateless_apply` with the values of the
    variables that train now, and Keras's own `stateless_apply` requires
    every variable the optimizer was built with. An optimizer with its own
    `stateless_apply` (`DiscriminativeLR`) already handles it; a plain one
    gets `keras_transfer.utils.stateless.apply_to_variables` in its place.
    The TensorFlow trainer calls `apply(grads, variables)`, which needs
    nothing.
    """
    if keras.backend.backend() != "jax":
        return
    innermost = optimizer
    while hasattr(innermost, "inner_optimizer"):
        innermost = innermost.inner_optimizer
    if getattr(innermost, "use_ema", False):
        raise ValueError(
            "GradualUnfreezing with `use_ema=True` is not supported on the "
            f"{keras.backend.backend()!r} backend: Keras's JAX optimizer "
            "averages every variable it was built with at each step, frozen "
            "groups included. Train without `use_ema` (or average with "
            "`keras_transfer.callbacks.WeightAveraging`), or use the "
            "TensorFlow backend."
        )
    while isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        optimizer = optimizer.inner_optimizer
    plain = keras.optimizers.Optimizer.stateless_apply
    if type(optimizer).stateless_apply is not plain:
        return
    trained = weakref.ref(model)

    def stateless_apply(optimizer_variables, grads, trainable_variables):
        current = _compat.model_building(optimizer) or trained()
        return apply_to_variables(
            optimizer,
            current.trainable_variables,
            optimizer_variables,
            grads,
            trainable_variables,
        )

    _compat.replace_stateless_apply(optimizer, stateless_apply)


def _knows_variables(optimizer, variables):
    inner = getattr(optimizer, "inner_optimizer", None)
    if inner is not None:
        return _knows_variables(inner, variables)
    try:
        _compat.check_variables_are_known(optimizer, variables)
    except ValueError:
        return False
    return True


def _strategy_scope(model):
    strategy = getattr(model, "distribute_strategy", None)
    if strategy is None:
        import contextlib

        return contextlib.nullcontext()
    return strategy.scope()


