"""The one place that reaches into Keras or TensorFlow internals.

Every use of a private Keras/TensorFlow attribute, of `keras.src`, or a
method replaced on an instance or a class lives here, behind a small function
with a docstring that says why no public API does the job. Each reach has a
test in `tests/test_compat.py` that fails with the Keras version and the
reach named when a Keras release moves it. `REACHES` lists them; the
compatibility page of the docs explains each one.
"""

import sys

import keras

KERAS_VERSION = keras.version()

# Every Keras/TensorFlow internal used below, as `tests/test_compat.py` and
# the docs name it.
REACHES = (
    "Layer._flatten_layers",
    "Layer._trainable_variables",
    "Layer._track_variable",
    "Variable._value",
    "Functional._nodes_by_depth",
    "KerasTensor._keras_history",
    "Optimizer._var_key",
    "Optimizer._trainable_variables",
    "Optimizer._trainable_variables_indices",
    "Optimizer._get_variable_index",
    "Optimizer._check_variables_are_known",
    "Optimizer._use_weight_decay",
    "Optimizer._apply_weight_decay",
    "Optimizer.update_step (replaced on an instance)",
    "Optimizer.stateless_apply (replaced on an instance, JAX trainer)",
    "Trainer builds the optimizer from its own method (call stack)",
    "ConcreteFunction._arg_keywords",
    "TensorFlow trainer: _maybe_symbolic_build, reduce_per_replica",
    "keras.src.saving.serialization_lib.in_safe_mode",
    "Metric._direction",
    "Optimizer._learning_rate",
    "Optimizer._model_variables_moving_average",
    "Layer._tracker (unlocked to add a variable)",
    "Layer._trainable_variables and _non_trainable_variables (variables removed)",
    "Layer.__class__ (replaced by a subclass)",
    "Layer._get_kernel_with_merged_lora",
    "Layer._kernel / Embedding._embeddings",
    "Layer._trainable_variables and _non_trainable_variables (variables moved)",
    "Layer.__dict__ (a weight attribute shadowed by a property)",
    "Variable._value (None while the JAX trainer holds the state)",
)


class CompatibilityError(RuntimeError):
    """A Keras or TensorFlow internal this package relies on has moved."""


def _moved(reach, error):
    return CompatibilityError(
        f"keras-transfer relies on `{reach}`, which this Keras "
        f"({KERAS_VERSION}) no longer provides ({error}). Please report it "
        "with your Keras version."
    )


def _attribute(obj, name, reach):
    try:
        return getattr(obj, name)
    except AttributeError as error:
        raise _moved(reach, error) from error


# ------------------------------------------------------------------ layers


def flatten_layers(layer, include_self=True, recursive=True):
    """`layer` and every layer it tracks, depth first, each once.

    Keras has no public recursive walk over a layer's sublayers
    (`Model.layers` lists the top level only); `Layer._flatten_layers` is the
    walk Keras itself uses for `trainable_weights`.
    """
    walk = _attribute(layer, "_flatten_layers", "Layer._flatten_layers")
    return list(walk(include_self=include_self, recursive=recursive))


def own_trainable_variables(layer):
    """The variables `layer` itself created trainable, frozen or not.

    Kernels, biases and BatchNorm scales, whether or not the layer is frozen
    right now; moving statistics and other never-trained state are left out.
    Public `trainable_weights` is empty for a frozen layer and
    `non_trainable_weights` then mixes both kinds (freezing sets
    `variable.trainable = False`), so only `Layer._trainable_variables`
    still tells them apart.
    """
    return list(_attribute(layer, "_trainable_variables", "Layer._trainable_variables"))


def trainable_kind_variables(layer):
    """Variables of `layer` and its sublayers created trainable, each once.

    `own_trainable_variables` over `flatten_layers(layer)`: what a frozen
    backbone would train once unfrozen (kernels, biases, BatchNorm scales).
    """
    out, seen = [], set()
    for sub in flatten_layers(layer):
        for variable in own_trainable_variables(sub):
            if id(variable) not in seen:
                seen.add(id(variable))
                out.append(variable)
    return out


def track_variable(layer, variable):
    """Make `variable` one of `layer`'s weights, as `add_weight` would.

    For a variable that already exists (the public `add_weight` always
    creates a new one): `Layer._track_variable` files it under the trainable
    or non-trainable weights by its `trainable` flag.
    """
    _attribute(layer, "_track_variable", "Layer._track_variable")(variable)


def share_tf_variable(variable, tf_variable):
    """Make the Keras `variable` read and write the existing `tf_variable`.

    A `keras.Variable` always creates its own backend variable from an
    initializer (a copy); to train the variables that a restored SavedModel's
    functions read, the Keras variable must hold the very same `tf.Variable`,
    which the TensorFlow backend keeps in `Variable._value`.
    """
    if not hasattr(variable, "_value"):
        raise _moved("Variable._value", "the attribute is missing")
    variable._value = tf_variable


# ------------------------------------------------------- functional graphs


def is_functional(model):
    """Whether `model` is a functional model (a `keras.Model` with a graph).

    Keras does not export its `Functional` class; a functional model is the
    one that keeps its graph in `_nodes_by_depth`.
    """
    return isinstance(model, keras.Model) and hasattr(model, "_nodes_by_depth")


def functional_nodes(model):
    """The nodes of a functional model's graph, inputs first.

    Keras has no public view of a model's graph: `Functional._nodes_by_depth`
    maps a depth (0 at the outputs) to its nodes, each with `operation`,
    `arguments`, `input_tensors`, `outputs`, `parent_nodes` and `is_input`.
    """
    by_depth = _attribute(model, "_nodes_by_depth", "Functional._nodes_by_depth")
    nodes = []
    for depth in sorted(by_depth, reverse=True):
        nodes.extend(by_depth[depth])
    return nodes


def producing_operation(tensor):
    """The layer (operation) that produced the symbolic `tensor`.

    For a model input this is its `InputLayer`, whose name is the input's
    name in the model's config. Keras has no public link from a
    `KerasTensor` back to its layer other than `_keras_history`
    (`tensor.name` differs for an unnamed `keras.Input`).
    """
    history = _attribute(tensor, "_keras_history", "KerasTensor._keras_history")
    return history[0]


# -------------------------------------------------------------- optimizers


def variable_key(optimizer, variable):
    """The key under which `optimizer` files `variable`'s state.

    The TensorFlow backend keys a variable by its distributed container, so
    the same variable seen inside and outside a strategy replica gets one
    key; `Optimizer._var_key` is the only place that knows the rule.
    """
    return _attribute(optimizer, "_var_key", "Optimizer._var_key")(variable)


def built_variables(optimizer):
    """The variables `optimizer` was built with, in the order of its state.

    Public `optimizer.variables` lists the optimizer's own state (slots,
    iterations), not the model variables it serves.
    """
    return list(
        _attribute(optimizer, "_trainable_variables", "Optimizer._trainable_variables")
    )


def knows_variable(optimizer, variable):
    """Whether `optimizer` was built with `variable` (so has state for it).

    No public API says whether an optimizer has state for a variable;
    `Optimizer._trainable_variables_indices` is its own index of them.
    """
    indices = _attribute(
        optimizer,
        "_trainable_variables_indices",
        "Optimizer._trainable_variables_indices",
    )
    return variable_key(optimizer, variable) in indices


def check_variables_are_known(optimizer, variables):
    """Raise Keras's own `ValueError` when `optimizer` lacks a variable.

    The check `apply_gradients` runs, without applying anything
    (`Optimizer._check_variables_are_known`; no public equivalent).
    """
    _attribute(
        optimizer,
        "_check_variables_are_known",
        "Optimizer._check_variables_are_known",
    )(variables)


def variable_index(optimizer, variable):
    """The position of `variable`'s state in `optimizer`'s slot lists.

    Needed inside `update_step`, which receives the variable only;
    `Optimizer._get_variable_index` is the lookup every Keras optimizer uses.
    """
    return _attribute(
        optimizer, "_get_variable_index", "Optimizer._get_variable_index"
    )(variable)


def uses_weight_decay(optimizer, variable):
    """Whether `optimizer`'s weight decay applies to `variable`.

    `exclude_from_weight_decay` sets the exclusions publicly, but only
    `Optimizer._use_weight_decay` answers for one variable.
    """
    return _attribute(optimizer, "_use_weight_decay", "Optimizer._use_weight_decay")(
        variable
    )


def replace_update_step(optimizer, update_step):
    """Replace `optimizer.update_step` on this instance by `update_step`.

    `update_step(gradient, variable, learning_rate)` is where an optimizer
    applies its rule to one variable with the learning rate; giving each
    variable its own rate there is the cheapest correct way for any
    optimizer, and no public hook receives the variable with its rate.
    """
    _attribute(optimizer, "update_step", "Optimizer.update_step")
    optimizer.update_step = update_step


def replace_stateless_apply(optimizer, stateless_apply):
    """Replace `optimizer.stateless_apply` on this instance by `stateless_apply`.

    Keras's JAX trainer applies gradients with
    `optimizer.stateless_apply(optimizer_values, grads, trainable_values)`
    and its base implementation requires exactly the variables the optimizer
    was built with. `GradualUnfreezing` builds a plain optimizer over every
    variable that will ever train, more than train while part of the
    backbone is frozen; the replacement (`keras_transfer.utils.stateless`)
    steps on the trainable part. No public hook lets the trainer pass the
    variables themselves. Returns the method that was in place.
    """
    original = _attribute(optimizer, "stateless_apply", "Optimizer.stateless_apply")
    optimizer.stateless_apply = stateless_apply
    return original


def _no_weight_decay(variables):
    return None


def skip_apply_weight_decay(optimizer):
    """Stop `optimizer` from applying weight decay itself at each step.

    For a wrapper that decays each variable inside `update_step` with that
    variable's own rate: `Optimizer.apply` always calls
    `_apply_weight_decay` with the single learning rate, and no public switch
    turns it off. When the method is missing, decay would silently run
    twice, so that is an error.
    """
    if not callable(getattr(type(optimizer), "_apply_weight_decay", None)):
        raise _moved("Optimizer._apply_weight_decay", "the method is missing")
    optimizer._apply_weight_decay = _no_weight_decay


# -------------------------------------------------------------- TensorFlow


def model_building(optimizer, max_depth=40):
    """The `keras.Model` whose `fit`/`compile` is building `optimizer`, or None.

    An optimizer is given its variables by the model (`optimizer.build(
    model.trainable_variables)`) but never the model itself, and no public
    API tells an optimizer which model it serves. The model is found on the
    call stack: the Keras trainer method that builds the optimizer runs with
    the model as `self`, and that model's `optimizer` is `optimizer` (or a
    `LossScaleOptimizer` around it). Best effort: None when not found.
    """
    frame = sys._getframe()
    try:
        depth = 0
        while frame is not None and depth < max_depth:
            owner = frame.f_locals.get("self")
            if isinstance(owner, keras.Model):
                current = getattr(owner, "optimizer", None)
                while current is not None:
                    if current is optimizer:
                        return owner
                    current = getattr(current, "inner_optimizer", None)
            frame = frame.f_back
            depth += 1
    finally:
        del frame
    return None


def concrete_function_arg_names(concrete):
    """Names of the arguments a traced `tf.function` takes as tensors.

    A restored SavedModel function lists a positional tensor argument only
    by position in `structured_input_signature`; the public `function_type`
    also lists arguments that were traced as Python constants. Only
    `ConcreteFunction._arg_keywords` names exactly the tensor arguments.
    An empty list when TensorFlow does not provide it.
    """
    return list(getattr(concrete, "_arg_keywords", None) or [])


# ---------------------------------------------------------------- trainers


def _tensorflow_trainer():
    """The TensorFlow backend's trainer class and its module, or `None`s.

    Found as the base of `keras.Model` that defines `_maybe_symbolic_build`
    (Keras 3.15 names it `TensorFlowTrainer`, later releases `Trainer`).
    """
    for cls in keras.Model.__mro__:
        if "_maybe_symbolic_build" in vars(cls):
            module = sys.modules.get(cls.__module__)
            if callable(getattr(module, "reduce_per_replica", None)):
                return cls, module
    return None, None


def detached_by_trainer(variable):
    """Whether the JAX trainer took `variable`'s value and has not put it back.

    Keras's JAX trainer empties the model's variables (`Variable._value =
    None`, in `_purge_model_variables`) as the first step of `fit`,
    `evaluate` or `predict` begins, hands the values to the jitted step, and
    puts back only the state a step returned (keras-team/keras#21019 made
    `fit` do so when it is interrupted). A step that raises while it is
    traced leaves the variables empty, and the public `variable.value` then
    answers with the initializer's output (or fails once the initializer is
    released), so only `Variable._value` tells an emptied variable.
    """
    if not hasattr(variable, "_value"):
        raise _moved("Variable._value", "the attribute is missing")
    return variable._value is None


_MULTI_WORKER_PATCH = {}


def patch_multi_worker_fit(is_multi_worker):
    """Let `model.fit` run under a multi-worker collective strategy.

    Keras's TensorFlow trainer (keras-team/keras#20585) reduces the whole
    nested first batch across workers to build the model, and averages
    scalar metric values along an axis 0 they do not have. Both happen
    inside the trainer (`_maybe_symbolic_build`, the module function
    `reduce_per_replica`), with no public hook, so both are replaced, for
    strategies where `is_multi_worker(strategy)` is true only.

    Returns `True` when the replacement is in place (now or from an earlier
    call), `False` when this Keras has no such trainer (nothing is changed).
    """
    if _MULTI_WORKER_PATCH:
        return True
    import tensorflow as tf

    trainer_cls, trainer_module = _tensorflow_trainer()
    if trainer_cls is None or not hasattr(trainer_cls, "_symbolic_build"):
        return False
    original_build = trainer_cls._maybe_symbolic_build
    original_reduce = trainer_module.reduce_per_replica

    def local(value, strategy):
        if isinstance(value, tf.distribute.DistributedValues):
            return strategy.experimental_local_results(value)[0]
        return value

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = self._distribute_strategy
        if strategy is None or iterator is None or not is_multi_worker(strategy):
            return original_build(self, iterator=iterator, data_batch=data_batch)
        # Only shapes and dtypes matter for the symbolic build: one local
        # replica's batch has them, no cross-worker reduction is needed.
        for _, _, it in iterator:
            batch = next(it)
            data_batch = keras.tree.map_structure(lambda v: local(v, strategy), batch)
            break
        with strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    def reduce_per_replica(values, strategy, reduction):
        if not is_multi_worker(strategy) or reduction not in ("auto", "mean"):
            return original_reduce(values, strategy, reduction)

        def _reduce(v):
            value = local(v, strategy)
            if getattr(value, "shape", None) is not None and value.shape.rank == 0:
                return strategy.reduce("MEAN", v, axis=None)
            return original_reduce(v, strategy, reduction)

        return keras.tree.map_structure(_reduce, values)

    trainer_cls._maybe_symbolic_build = _maybe_symbolic_build
    trainer_module.reduce_per_replica = reduce_per_replica
    _MULTI_WORKER_PATCH["build"] = (trainer_cls, original_build)
    _MULTI_WORKER_PATCH["reduce"] = (trainer_module, original_reduce)
    return True


# ------------------------------------------------------------ saving, metrics


def deserialization_safe_mode():
    """Keras's safe-mode flag for the deserialization under way.

    `True` inside `keras.saving.load_model(..., safe_mode=True)` (the
    default) and any `deserialize_keras_object` call in safe mode, `False`
    inside `load_model(..., safe_mode=False)` or after
    `keras.config.enable_unsafe_deserialization()`, and `None` when no
    deserialization has set it. Keras sets the flag with public API but
    offers no public way to read it; `keras.layers.TFSMLayer` and
    `keras.layers.Lambda` read it with
    `keras.src.saving.serialization_lib.in_safe_mode`, the reach used here.
    """
    try:
        from keras.src.saving import serialization_lib

        read = serialization_lib.in_safe_mode
    except (ImportError, AttributeError) as error:
        reach = "keras.src.saving.serialization_lib.in_safe_mode"
        raise _moved(reach, error) from error
    return read()


def metric_direction(name):
    """`"up"`, `"down"` or `None`: whether the Keras metric `name` improves up.

    `keras.metrics.get(name)` is public, but what a metric object says about
    its direction is the private `Metric._direction`, which Keras's own
    `MonitorCallback` (`EarlyStopping`, `ModelCheckpoint`) reads in
    `mode="auto"`. `None` when Keras knows no metric of that name or the
    metric does not say.
    """
    try:
        metric = keras.metrics.get(name)
    except (ValueError, TypeError):
        return None
    if isinstance(metric, type):
        try:
            metric = metric()
        except TypeError:
            return None
    direction = getattr(metric, "_direction", None)
    return direction if direction in ("up", "down") else None


# ------------------------------------------------- learning rates, averages


def learning_rate_object(optimizer):
    """What the innermost optimizer keeps as its learning rate.

    A `keras.Variable` for a constant rate, or the `LearningRateSchedule`
    (or callable) it was given. `Optimizer.learning_rate` returns the
    schedule's value at the current step, not the schedule, and Keras has no
    public way to tell the two apart; `Optimizer._learning_rate` holds it.
    Wrappers (`LossScaleOptimizer`, `DiscriminativeLR`) are walked through
    their public `inner_optimizer`.
    """
    while hasattr(optimizer, "inner_optimizer"):
        optimizer = optimizer.inner_optimizer
    try:
        return optimizer._learning_rate
    except AttributeError as error:
        raise _moved("Optimizer._learning_rate", error) from error


def moving_average_of(optimizer, variable):
    """The EMA copy of `variable` an optimizer built with `use_ema=True` keeps.

    Keras keeps the averages in `Optimizer._model_variables_moving_average`,
    in the order of the variables the optimizer was built with
    (`Optimizer._get_variable_index`), and has no public accessor. Returns
    `None` when the optimizer keeps no average for `variable`.
    """
    try:
        averages = optimizer._model_variables_moving_average
        index = optimizer._get_variable_index(variable)
    except KeyError:
        return None
    except AttributeError as error:
        raise _moved("Optimizer._model_variables_moving_average", error) from error
    return averages[index]


# ------------------------------------------------------ LoRA and DoRA layers


def unlocked_state(layer):
    """Context manager: lets a built `layer` take new variables.

    A built Keras layer locks its state tracker, and Keras has no public way
    to add a variable afterwards except through its own `enable_lora`. A
    DoRA magnitude vector is such a variable; `Layer._tracker` is the lock
    Keras itself opens in `enable_lora`.
    """
    import contextlib

    try:
        tracker = layer._tracker
    except AttributeError as error:
        raise _moved("Layer._tracker", error) from error

    @contextlib.contextmanager
    def scope():
        tracker.unlock()
        try:
            yield
        finally:
            tracker.lock()

    return scope()


def remove_variables(layer, names):
    """Delete the variables `layer.<name>` for each of `names`, untracked.

    Keras can add LoRA variables to a layer (`enable_lora`) but has no public
    way to take them away again; merging adapters into the base weights
    needs it to leave a layer with exactly the base architecture's
    variables. The variables live in `Layer._trainable_variables` /
    `_non_trainable_variables` and in the tracker's `stored_ids`.
    """
    try:
        lists = (layer._trainable_variables, layer._non_trainable_variables)
        stored = layer._tracker.stored_ids
    except AttributeError as error:
        raise _moved("Layer._trainable_variables", error) from error
    with unlocked_state(layer):
        for name in names:
            variable = getattr(layer, name)
            for variables in lists:
                for i, v in enumerate(variables):
                    if v is variable:
                        del variables[i]
                        break
            for ids in stored.values():
                ids.discard(id(variable))
            delattr(layer, name)


def set_class(layer, cls):
    """Give `layer` the class `cls` (a subclass of its class, or its base).

    DoRA changes how a Keras layer builds its kernel from its variables;
    Keras layers have no hook for it, so an adapted layer becomes an
    instance of a registered subclass that overrides the `kernel` property
    (and back to its own class when merged). Replacing an instance's class
    is a reach Keras does not offer.
    """
    if not (issubclass(cls, type(layer)) or issubclass(type(layer), cls)):
        raise TypeError(
            f"Cannot give a {type(layer).__name__} the unrelated class "
            f"{cls.__name__}."
        )
    layer.__class__ = cls


def merged_quantized_kernel(layer):
    """`(kernel, kernel_scale)` of a quantized layer with LoRA folded in.

    For int8/int4 `Dense` and `EinsumDense`, Keras re-quantizes the LoRA
    merge itself when it saves: `_get_kernel_with_merged_lora()` on Keras
    3.15, `Layer._get_weight_with_merged_lora("kernel")` on Keras 3.16; no
    public method returns it.
    """
    merge = getattr(layer, "_get_kernel_with_merged_lora", None)
    if merge is None:
        by_name = getattr(layer, "_get_weight_with_merged_lora", None)
        if by_name is None:
            raise _moved(
                "Layer._get_kernel_with_merged_lora",
                f"'{type(layer).__name__}' has neither it nor "
                "_get_weight_with_merged_lora",
            )

        def merge():
            return by_name("kernel")

    kernel, scale, _ = merge()
    return kernel, scale


def base_weight(layer):
    """The raw base weight of a LoRA-capable Keras layer (not the merged one).

    With LoRA on, Keras's public `kernel` / `embeddings` properties return
    the base weight plus the low-rank update; the variable that holds the
    base weight alone is the private `_kernel` (Dense, EinsumDense, the
    convolutions) or `_embeddings` (Embedding).
    """
    for name in ("_kernel", "_embeddings"):
        variable = getattr(layer, name, None)
        if variable is not None:
            return variable
    raise _moved(f"{type(layer).__name__}._kernel", "no such attribute")


def freeze_variables(layer, keep_ids, partial=True):
    """Make the own variables of `layer` non-trainable for good, but `keep_ids`.

    Keras's `Layer.trainable = True` sets `trainable=True` on every variable
    the layer created trainable (`Layer._trainable_variables`), so a
    variable frozen with `variable.trainable = False` (as Keras's own
    `enable_lora` freezes the kernel) trains again as soon as anything
    unfreezes the layer (`Backbone.freeze_to`, `GradualUnfreezing`). Moving
    the variable to `Layer._non_trainable_variables` keeps it frozen.

    The moved variables go to the front of the non-trainable list, so a layer
    whose trainable variables all move keeps the order of `layer.weights`
    (which Keras's default `save_own_variables` relies on). With
    `partial=False` a layer is frozen entirely or not at all.
    Returns the variables that were frozen.
    """
    try:
        trainable = layer._trainable_variables
        non_trainable = layer._non_trainable_variables
        stored = layer._tracker.stored_ids
    except AttributeError as error:
        raise _moved("Layer._trainable_variables", error) from error
    moved = [v for v in trainable if id(v) not in keep_ids]
    if moved and not partial and len(moved) < len(trainable):
        moved = list(trainable)
    if not moved:
        return []
    ids = {id(v) for v in moved}
    # In place: the layer's tracker holds these very lists.
    trainable[:] = [v for v in trainable if id(v) not in ids]
    non_trainable[:0] = moved
    for v in moved:
        v.trainable = False
        stored.get("trainable_variables", set()).discard(id(v))
        stored.setdefault("non_trainable_variables", set()).add(id(v))
    return moved


def instance_attribute(layer, name):
    """The value `layer` holds under `name` itself, past any class property.

    Keras layers such as `DepthwiseConv2D` keep their kernel as a plain
    attribute and read it in `call`; they have no hook to compute it. Our
    LoRA subclasses of them shadow the attribute with a property (base plus
    low-rank update) and keep the variable in the instance's `__dict__`.
    Raises `AttributeError` when it is not set (yet).
    """
    try:
        return vars(layer)[name]
    except KeyError as error:
        raise AttributeError(name) from error


def set_instance_attribute(layer, name, value):
    """Store `value` under `name` in the instance's `__dict__` (see above)."""
    vars(layer)[name] = value
