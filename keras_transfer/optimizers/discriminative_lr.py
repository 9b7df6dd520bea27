"""`DiscriminativeLR`: one learning-rate multiplier per variable, any optimizer."""

import math
import numbers
import re
import types

import keras

from keras_transfer import _compat
from keras_transfer.api_export import keras_transfer_export
from keras_transfer.backbones.groups_of import groups_of
from keras_transfer.utils.stateless import apply_to_variables

# Optimizers whose update (and weight decay) is exactly proportional to the
# learning rate they are given. For these the multiplier scales the learning
# rate inside `update_step`: the cheapest way to scale the update. Any other
# optimizer gets its update scaled after the fact (see `_scaled_update_step`).
_LINEAR_IN_LR = tuple(
    getattr(keras.optimizers, name)
    for name in (
        "SGD",
        "Adam",
        "AdamW",
        "Adamax",
        "Nadam",
        "RMSprop",
        "Adagrad",
        "Adadelta",
        "Lion",
        "Lamb",
    )
    if hasattr(keras.optimizers, name)
)

_SPREAD_TAG = "slice"
_EMA_ARGUMENTS = ("use_ema", "ema_momentum", "ema_overwrite_frequency")


def _set_ema(target, ema):
    """Set Keras's EMA arguments on the wrapped optimizer, before it builds."""
    if not ema:
        return
    if target.built:
        raise ValueError(
            "`use_ema` must be set before the wrapped optimizer is built. "
            f"Received: {ema} for an optimizer already built."
        )
    momentum = ema.get("ema_momentum", target.ema_momentum)
    if isinstance(momentum, bool) or not (
        isinstance(momentum, numbers.Real) and 0 <= momentum <= 1
    ):
        raise ValueError(
            "`ema_momentum` must be a float in [0, 1]. Received: "
            f"ema_momentum={momentum!r}"
        )
    frequency = ema.get("ema_overwrite_frequency", target.ema_overwrite_frequency)
    if frequency is not None and (
        isinstance(frequency, bool)
        or not isinstance(frequency, numbers.Integral)
        or frequency < 1
    ):
        raise ValueError(
            "`ema_overwrite_frequency` must be an integer >= 1 or None. "
            f"Received: ema_overwrite_frequency={frequency!r}"
        )
    target.use_ema = bool(ema.get("use_ema", target.use_ema))
    target.ema_momentum = float(momentum)
    target.ema_overwrite_frequency = frequency


def _check_multiplier(value, where):
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(float(value))
        or value < 0
    ):
        raise ValueError(
            f"`multipliers` must hold finite numbers >= 0 (0 freezes a "
            f"variable, 1 keeps the base learning rate). Received: "
            f"{where}={value!r}"
        )
    return float(value)


def _innermost(optimizer):
    while isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        optimizer = optimizer.inner_optimizer
    return optimizer


@keras_transfer_export("keras_transfer.optimizers.DiscriminativeLR")
class DiscriminativeLR(keras.optimizers.Optimizer):
    """Wraps any optimizer and gives each variable its own learning-rate factor.

    Discriminative learning rates (Howard & Ruder, 2018) train the early,
    general layers of a pretrained network more gently than the late, specific
    ones and the new head. `DiscriminativeLR` wraps any Keras optimizer (`SGD`,
    `Adam`, `AdamW`, `Lion`, ...) and multiplies the UPDATE of each variable by
    its own factor: a factor of 0.1 gives one tenth of the step the wrapped
    optimizer would take (Adam included; scaling the gradient would not do
    that), and 0 leaves the variable bit-for-bit unchanged. Weight decay is
    scaled by the same factor, so a group's decay follows its rate.

    Variables are assigned factors in one of these ways:

    - `multipliers={regex: factor}` without `groups`: each regex is searched
      (`re.search`) in `variable.path`.
    - `groups=...` with `multipliers={group_name: factor}`, or a list with one
      factor per group (ordered from input to output). `groups` is the
      pretrained part of the model as the model has it (a
      `keras.applications`, keras-hub or keras-cv model, a model of your
      own, grouped in place by `keras_transfer.backbones.groups_of`), a
      `Backbone` (or any object with `.groups`, each having `.name` and
      `.variables`), or a dict `{group_name: regex or list of regexes}`
      matched against `variable.path`.
    - `groups=...` with `multipliers=slice(lo, hi)`: factors spread
      geometrically from `lo` for the first group to `hi` for the last, as
      fastai does with `lr=slice(lo, hi)`.
    - `groups=...` with `layer_decay=d` (layer-wise learning-rate decay): the
      last group gets 1.0 and each group below gets `d` times the one above.

    Variables that no rule matches (for instance the new head, outside the
    backbone's groups) get 1.0. A variable matched by two rules is an error.

    The factors live in a non-trainable optimizer variable (one entry per
    variable): `set_multipliers()` changes them during training, from a
    callback, without rebuilding or retracing anything, and they are saved
    with the optimizer in `.keras` files and checkpoints.

    The base learning rate is the wrapped optimizer's: a `LearningRateSchedule`
    works, and `keras.callbacks.LearningRateScheduler` or `ReduceLROnPlateau`
    move the base rate while the ratios between groups stay.

    How the update is scaled: for optimizers whose step is proportional to the
    learning rate (SGD, Adam, AdamW, Adamax, Nadam, RMSprop, Adagrad,
    Adadelta, Lion, Lamb) the wrapped optimizer receives `learning_rate *
    factor` for each variable, which costs one multiply per variable. For any
    other optimizer the variable's change is computed and scaled afterwards.

    When `groups` is a backbone, the optimizer is built on every trainable-kind
    variable of the backbone even if it is frozen at `compile()` time, so
    unfreezing later (followed by `model.make_train_function(force=True)`)
    needs no new optimizer.

    Keras's exponential moving average of the weights (`use_ema`) works
    through the wrapper: set it on the wrapped optimizer
    (`keras.optimizers.Adam(use_ema=True)`), or pass `use_ema`,
    `ema_momentum` and `ema_overwrite_frequency` here and they are set on the
    wrapped optimizer (and saved with it). At the end of `fit` each variable
    that trains gets its own average; frozen variables are left as they are.

    Args:
        optimizer: A `keras.optimizers.Optimizer` instance to wrap. May itself
            be a `keras.optimizers.LossScaleOptimizer`.
        multipliers: Dict, list, `slice` or `None`. The factors, as described
            above. `None` gives 1.0 everywhere (or the `layer_decay` factors).
        layer_decay: Float in (0, 1] or `None`. Layer-wise learning-rate
            decay across `groups`. Cannot be combined with `multipliers`.
        groups: A backbone, a dict `{name: regex or list of regexes}`, or
            `None`. Named groups of variables, ordered from input to output.
        name: String. Name of the optimizer.
        **kwargs: Only `use_ema`, `ema_momentum` and
            `ema_overwrite_frequency`, set on the wrapped optimizer (see
            `keras.optimizers.Optimizer`).

    Examples:

        >>> import keras_transfer
        >>> model = keras.Sequential([
        ...     keras.Input((4,)),
        ...     keras.layers.Dense(8, name="body"),
        ...     keras.layers.Dense(1, name="head"),
        ... ], name="net")
        >>> opt = keras_transfer.optimizers.DiscriminativeLR(
        ...     keras.optimizers.Adam(1e-3), multipliers={"body/": 0.1}
        ... )
        >>> model.compile(optimizer=opt, loss="mse")
        >>> _ = model.fit(np.ones((8, 4)), np.ones((8, 1)), epochs=1, verbose=0)
        >>> for path, factor in opt.get_multipliers().items():
        ...     print(path, round(factor, 2))
        net/body/kernel 0.1
        net/body/bias 0.1
        net/head/kernel 1.0
        net/head/bias 1.0
        >>> opt.set_multipliers({"body/": 0.0})  # freeze the body, no retrace
    """

    def __init__(
        self,
        optimizer,
        multipliers=None,
        layer_decay=None,
        groups=None,
        name=None,
        **kwargs,
    ):
        if not isinstance(optimizer, keras.optimizers.Optimizer):
            raise ValueError(
                "`optimizer` must be a `keras.optimizers.Optimizer` instance. "
                f"Received: optimizer={optimizer!r}"
            )
        if isinstance(_innermost(optimizer), DiscriminativeLR):
            raise ValueError(
                "`optimizer` is already a `DiscriminativeLR`; wrap the plain "
                "optimizer once. Received: optimizer=DiscriminativeLR"
            )
        if isinstance(_innermost(optimizer), keras.optimizers.MultiOptimizer):
            raise ValueError(
                "`optimizer` cannot be a `MultiOptimizer`: give one optimizer "
                "and per-variable factors instead. Received: "
                "optimizer=MultiOptimizer"
            )
        if keras.backend.backend() == "jax" and isinstance(
            optimizer, keras.optimizers.LossScaleOptimizer
        ):
            raise ValueError(
                "On the JAX backend a `LossScaleOptimizer` goes around "
                "`DiscriminativeLR`, not inside it (its loss-scale update runs "
                "only through its own `stateless_apply`): use "
                "`LossScaleOptimizer(DiscriminativeLR(optimizer, ...))`, which "
                "is also what `compile` does under a `mixed_float16` policy. "
                "Received: optimizer=LossScaleOptimizer"
            )
        ema = {k: kwargs.pop(k) for k in _EMA_ARGUMENTS if k in kwargs}
        if kwargs:
            raise ValueError(
                "`DiscriminativeLR` takes no base optimizer arguments other "
                f"than {list(_EMA_ARGUMENTS)}; set them on the wrapped "
                f"`optimizer`. Received: {sorted(kwargs)}"
            )
        _set_ema(_innermost(optimizer), ema)
        super().__init__(learning_rate=0.0, name=name)
        self.inner_optimizer = optimizer
        # Plain-Python holder: the groups hold model variables and the target
        # is the innermost optimizer; neither may be tracked as our state.
        self._untracked = types.SimpleNamespace(
            groups=self._parse_groups(groups),
            target=_innermost(optimizer),
            cache={},
            model_paths=None,
        )
        self._spec = self._parse_spec(multipliers, layer_decay, self._groups)
        self._linear = type(self._target) in _LINEAR_IN_LR

    @property
    def _groups(self):
        return self._untracked.groups

    @property
    def _target(self):
        return self._untracked.target

    # ------------------------------------------------------------------ spec
    @staticmethod
    def _parse_groups(groups):
        """Returns `None` or a list of `(name, variables or None, regexes)`."""
        if groups is None:
            return None
        if isinstance(groups, keras.layers.Layer):
            # Any Keras layer or model (a Backbone too), grouped in place.
            groups = groups_of(groups, argument="groups")
        if hasattr(groups, "groups") and not isinstance(groups, dict):
            parsed = []
            for group in groups.groups:
                candidates = []
                for layer in getattr(group, "layers", []):
                    candidates.extend(_compat.trainable_kind_variables(layer))
                parsed.append((group.name, list(group.variables), candidates))
            if not parsed:
                raise ValueError(
                    "`groups` has no groups. Received: groups with .groups=[]"
                )
            return parsed
        if isinstance(groups, dict):
            parsed = []
            for group_name, patterns in groups.items():
                if isinstance(patterns, dict) and "paths" in patterns:
                    # A backbone's groups, as saved by `get_config`.
                    parsed.append((group_name, list(patterns["paths"]), []))
                    continue
                if isinstance(patterns, str):
                    patterns = [patterns]
                if not isinstance(group_name, str) or not all(
                    isinstance(p, str) for p in patterns
                ):
                    raise ValueError(
                        "`groups` as a dict maps group names to a regex or a "
                        "list of regexes on `variable.path`. Received: "
                        f"groups={groups!r}"
                    )
                for pattern in patterns:
                    _compile(pattern, "groups")
                parsed.append((group_name, None, list(patterns)))
            return parsed
        raise ValueError(
            "`groups` must be a Keras layer or model (grouped in place, see "
            "`keras_transfer.backbones.groups_of`), a `Backbone` or other "
            "object with `.groups`, a dict `{name: regex or list of regexes}` "
            "or None. Received: "
            f"groups={groups!r}"
        )

    @staticmethod
    def _parse_spec(multipliers, layer_decay, groups):
        names = [g[0] for g in groups] if groups else []
        if layer_decay is not None:
            if multipliers is not None:
                raise ValueError(
                    "Pass either `multipliers` or `layer_decay`, not both. "
                    f"Received: multipliers={multipliers!r}, "
                    f"layer_decay={layer_decay!r}"
                )
            if (
                isinstance(layer_decay, bool)
                or not isinstance(layer_decay, numbers.Real)
                or not 0 < layer_decay <= 1
            ):
                raise ValueError(
                    "`layer_decay` must be a number in (0, 1]. Received: "
                    f"layer_decay={layer_decay!r}"
                )
            if not groups:
                raise ValueError(
                    "`layer_decay` needs `groups` (a backbone or a dict of "
                    "named groups) to know the order of layers. Received: "
                    f"layer_decay={layer_decay}, groups=None"
                )
            return ("decay", float(layer_decay))
        if multipliers is None:
            return ("dict", {})
        if isinstance(multipliers, slice) or (
            isinstance(multipliers, (list, tuple))
            and len(multipliers) == 3
            and multipliers[0] == _SPREAD_TAG
        ):
            if isinstance(multipliers, slice):
                lo, hi = multipliers.start, multipliers.stop
            else:
                lo, hi = multipliers[1], multipliers[2]
            lo = _check_multiplier(lo, "multipliers.start")
            hi = _check_multiplier(hi, "multipliers.stop")
            if lo <= 0 or hi <= 0:
                raise ValueError(
                    "`multipliers=slice(lo, hi)` spreads factors geometrically "
                    f"and needs lo > 0 and hi > 0. Received: "
                    f"multipliers=slice({lo}, {hi})"
                )
            if not groups:
                raise ValueError(
                    "`multipliers=slice(lo, hi)` needs `groups` to spread the "
                    f"factors over. Received: multipliers=slice({lo}, {hi}), "
                    "groups=None"
                )
            return ("spread", lo, hi)
        if isinstance(multipliers, (list, tuple)):
            if not groups:
                raise ValueError(
                    "`multipliers` as a list gives one factor per group and "
                    f"needs `groups`. Received: multipliers={multipliers!r}, "
                    "groups=None"
                )
            if len(multipliers) != len(names):
                raise ValueError(
                    f"`multipliers` as a list needs one factor per group "
                    f"({len(names)} groups: {names}). Received "
                    f"{len(multipliers)}: multipliers={list(multipliers)!r}"
                )
            values = [
                _check_multiplier(m, f"multipliers[{i}]")
                for i, m in enumerate(multipliers)
            ]
            return ("dict", dict(zip(names, values)))
        if isinstance(multipliers, dict):
            out = {}
            for key, value in multipliers.items():
                if not isinstance(key, str):
                    raise ValueError(
                        "`multipliers` keys must be strings (group names or "
                        f"regexes). Received key {key!r} in "
                        f"multipliers={multipliers!r}"
                    )
                out[key] = _check_multiplier(value, f"multipliers[{key!r}]")
                if groups:
                    if key not in names:
                        raise ValueError(
                            f"`multipliers` names group '{key}', which does not "
                            f"exist. Existing groups: {names}."
                        )
                else:
                    _compile(key, "multipliers")
            return ("dict", out)
        raise ValueError(
            "`multipliers` must be a dict, a list (one factor per group), a "
            f"`slice(lo, hi)` or None. Received: multipliers={multipliers!r}"
        )

    def _group_factors(self):
        """Factor of each group (in order), or `None` without groups."""
        if not self._groups:
            return None
        names = [g[0] for g in self._groups]
        n = len(names)
        kind = self._spec[0]
        if kind == "decay":
            d = self._spec[1]
            return [d ** (n - 1 - i) for i in range(n)]
        if kind == "spread":
            lo, hi = self._spec[1], self._spec[2]
            if n == 1:
                return [hi]
            return [lo * (hi / lo) ** (i / (n - 1)) for i in range(n)]
        return [self._spec[1].get(name, 1.0) for name in names]

    def _resolve(self, variables):
        """Factor of each variable in `variables` (a list of floats)."""
        paths = [v.path for v in variables]
        rules = [None] * len(variables)
        values = [1.0] * len(variables)

        def claim(i, rule, value):
            if rules[i] is not None and rules[i] != rule:
                raise ValueError(
                    f"Variable '{paths[i]}' is matched by two rules: "
                    f"{rules[i]} and {rule}. Make the rules disjoint."
                )
            rules[i] = rule
            values[i] = value

        if self._groups:
            factors = self._group_factors()
            keys = {_compat.variable_key(self, v): i for i, v in enumerate(variables)}
            for (group_name, group_vars, patterns), factor in zip(
                self._groups, factors
            ):
                rule = f"group '{group_name}'"
                if group_vars is not None:
                    for v in group_vars:
                        if isinstance(v, str):
                            hits = _path_hits(v, paths)
                        else:
                            hits = [keys.get(_compat.variable_key(self, v))]
                        for i in hits:
                            if i is not None:
                                claim(i, rule, factor)
                    continue
                for pattern in patterns:
                    compiled = _compile(pattern, "groups")
                    hits = [i for i, p in enumerate(paths) if compiled.search(p)]
                    if not hits and not self._names_model_variable(compiled):
                        raise self._no_match("groups", pattern, group_name, paths)
                    for i in hits:
                        claim(i, rule, factor)
            return values
        for pattern, factor in self._spec[1].items():
            compiled = _compile(pattern, "multipliers")
            hits = [i for i, p in enumerate(paths) if compiled.search(p)]
            if not hits and not self._names_model_variable(compiled):
                raise self._no_match("multipliers", pattern, None, paths)
            for i in hits:
                claim(i, f"regex '{pattern}'", factor)
        return values

    # ---------------------------------------------------------------- model
    def set_model(self, model):
        """Tells the optimizer which model it trains.

        A regex of `multipliers` or `groups` must match some variable: one
        that matches none is a typo and an error. With the model known, a
        regex is checked against every variable of the model, frozen ones
        included, so a rule for layers that are frozen now (and that the
        optimizer is therefore not built with) is accepted. `fit` and
        `compile` make the model known by themselves, and so do
        `GradualUnfreezing` and `fine_tune`; call this only when you build the
        optimizer by hand.

        Args:
            model: The `keras.Model` (or layer) whose variables this optimizer
                updates.
        """
        if not isinstance(model, keras.layers.Layer):
            raise ValueError(
                "`model` must be the keras.Model this optimizer trains. "
                f"Received: model={model!r}"
            )
        self._untracked.model_paths = [v.path for v in model.variables]

    def _model_paths(self):
        if self._untracked.model_paths is None:
            model = _compat.model_building(self)
            if model is not None:
                self.set_model(model)
        return self._untracked.model_paths

    def _names_model_variable(self, compiled):
        paths = self._model_paths()
        return paths is not None and any(compiled.search(p) for p in paths)

    def _no_match(self, argument, pattern, group_name, paths):
        where = f" (group '{group_name}')" if group_name else ""
        model_paths = self._untracked.model_paths
        if model_paths is not None:
            shown = model_paths[:8] + (["..."] if len(model_paths) > 8 else [])
            return ValueError(
                f"`{argument}` regex '{pattern}'{where} matches no variable of "
                f"the model ({len(model_paths)} variables, frozen ones "
                f"included, e.g. {shown}). Fix the regex: it is searched "
                "(`re.search`) in `variable.path`."
            )
        shown = paths[:8] + (["..."] if len(paths) > 8 else [])
        return ValueError(
            f"`{argument}` regex '{pattern}'{where} matches no variable the "
            f"optimizer is built with ({len(paths)} variables, e.g. {shown}). "
            "Fix the regex; if it names layers that are frozen now, call "
            "`optimizer.set_model(model)` first so that every variable of the "
            "model is checked."
        )

    # ----------------------------------------------------------------- build
    def build(self, var_list):
        if self.built:
            return
        var_list = list(var_list)
        if self._groups:
            # Build on every trainable-kind variable of a backbone too, so
            # unfreezing later needs no new optimizer.
            known = {_compat.variable_key(self, v) for v in var_list}
            for _, group_vars, candidates in self._groups:
                if group_vars is not None:
                    for v in candidates:
                        if _compat.variable_key(self, v) not in known:
                            known.add(_compat.variable_key(self, v))
                            var_list.append(v)
        values = self._resolve(var_list)

        # Keras may build inside the traced train function: the values go in
        # through the initializer (run once), never through an `assign` op.
        def initial_values(shape, dtype=None):
            return keras.ops.convert_to_tensor(values, dtype="float32")

        self._multipliers = self.add_variable(
            shape=(len(var_list),),
            initializer=initial_values,
            dtype="float32",
            aggregation="none",
            name="multipliers",
        )
        self.inner_optimizer.build(var_list)
        self._install_hooks()
        super().build(var_list)

    def _install_hooks(self):
        target = self._target
        original_update_step = target.update_step
        wrapper = self

        def update_step(gradient, variable, learning_rate):
            index = _compat.variable_index(target, variable)
            per_variable = wrapper._per_variable(learning_rate)
            if wrapper._linear:
                rate = per_variable["rates"][index]
                wrapper._decay(variable, rate)
                return original_update_step(gradient, variable, rate)
            return wrapper._scaled_update_step(
                original_update_step,
                gradient,
                variable,
                learning_rate,
                per_variable["factors"][index],
            )

        # Weight decay runs inside `update_step`, with the variable's rate.
        _compat.replace_update_step(target, update_step)
        _compat.skip_apply_weight_decay(target)

    def _per_variable(self, learning_rate):
        """Each variable's factor and rate, computed once per step.

        One read of the factors, one multiply and one unstack per step, shared
        by every variable's `update_step` (which all receive the same
        `learning_rate` tensor), instead of a gather and a multiply each.
        The cache is emptied at every `apply()`.
        """
        cache = self._untracked.cache
        if cache.get("key") is not learning_rate:
            factors = keras.ops.convert_to_tensor(self._multipliers)
            rate = keras.ops.cast(learning_rate, "float32")
            cache.clear()
            cache["key"] = learning_rate
            cache["factors"] = keras.ops.unstack(factors)
            cache["rates"] = keras.ops.unstack(rate * factors)
        return cache

    def _decay(self, variable, rate):
        target = self._target
        if target.weight_decay is None or not _compat.uses_weight_decay(
            target, variable
        ):
            return
        rate = keras.ops.cast(rate, variable.dtype)
        wd = keras.ops.cast(target.weight_decay, variable.dtype)
        target.assign(variable, variable - variable * wd * rate)

    def _scaled_update_step(self, update_step, gradient, variable, rate, factor):
        before = keras.ops.copy(keras.ops.convert_to_tensor(variable))
        self._decay(variable, rate)
        update_step(gradient, variable, rate)
        after = keras.ops.convert_to_tensor(variable)
        factor = keras.ops.cast(factor, variable.dtype)
        self._target.assign(variable, before + factor * (after - before))

    # ----------------------------------------------------------------- apply
    def apply(self, grads, trainable_variables=None):
        if not self.built:
            if trainable_variables is None:
                raise ValueError(
                    "Build the optimizer first, or pass `trainable_variables`."
                )
            with keras.name_scope(self.name):
                self.build(list(trainable_variables))
        if trainable_variables is not None:
            trainable_variables = list(trainable_variables)
            for v in trainable_variables:
                if not _compat.knows_variable(self, v):
                    raise ValueError(
                        f"Variable '{v.path}' was not trainable when the "
                        "optimizer was built, so it has no optimizer state. "
                        "Pass `groups=backbone` so `DiscriminativeLR` builds on "
                        "every backbone variable up front, or compile the "
                        "model again with a new optimizer."
                    )
        self._untracked.cache.clear()
        self.inner_optimizer.apply(grads, trainable_variables)

    def stateless_apply(self, optimizer_variables, grads, trainable_variables):
        """Stateless `apply` (the JAX trainer's), on the variables that train now.

        Keras's JAX trainer passes the values of `model.trainable_variables`,
        which are fewer than the variables this optimizer is built with while
        part of a backbone is frozen. They are matched to the model's
        trainable variables (the model whose train step is calling), and the
        state of frozen variables is left as it is.
        """
        if not self.built:
            return super().stateless_apply(
                optimizer_variables, grads, trainable_variables
            )
        model = _compat.model_building(self)
        if model is None:
            if len(trainable_variables) == len(_compat.built_variables(self)):
                return super().stateless_apply(
                    optimizer_variables, grads, trainable_variables
                )
            raise ValueError(
                "`DiscriminativeLR.stateless_apply` received "
                f"{len(trainable_variables)} trainable values for an optimizer "
                f"built with {len(_compat.built_variables(self))} variables, "
                "and no model to match them to: call it from the model's train "
                "step, or pass one value per variable the optimizer was built "
                "with."
            )
        return apply_to_variables(
            self,
            model.trainable_variables,
            optimizer_variables,
            grads,
            trainable_variables,
        )

    def scale_loss(self, loss):
        return self.inner_optimizer.scale_loss(loss)

    def finalize_variable_values(self, var_list):
        target = self._target
        if not target.use_ema:
            self.inner_optimizer.finalize_variable_values(var_list)
            return
        # The wrapped optimizer may be built on more variables than train now
        # (frozen groups of a backbone), so its averages are matched to
        # `var_list` by variable, not by position.
        for variable in var_list:
            average = _compat.moving_average_of(target, variable)
            if average is not None:
                variable.assign(average)

    @property
    def variables(self):
        return super().variables + self.inner_optimizer.variables

    @property
    def learning_rate(self):
        return self.inner_optimizer.learning_rate

    @learning_rate.setter
    def learning_rate(self, learning_rate):
        self.inner_optimizer.learning_rate = learning_rate

    @property
    def iterations(self):
        return self.inner_optimizer.iterations

    # ---------------------------------------------------------- multipliers
    def set_multipliers(self, multipliers=None, layer_decay=None):
        """Changes the factors, taking effect at the next training step.

        Takes the same forms as the constructor (`multipliers` or
        `layer_decay`, resolved against the same `groups`). Variables the new
        rules do not match go back to 1.0. Nothing is rebuilt or retraced: the
        factors are the value of an optimizer variable.

        Args:
            multipliers: Dict, list, `slice` or `None`. The new factors.
            layer_decay: Float in (0, 1] or `None`. New layer-wise decay.
        """
        spec = self._parse_spec(multipliers, layer_decay, self._groups)
        old, self._spec = self._spec, spec
        if not self.built:
            return
        try:
            values = self._resolve(_compat.built_variables(self))
        except ValueError:
            self._spec = old
            raise
        self._multipliers.assign(values)

    def get_multipliers(self):
        """Returns the current factor of each variable, keyed by `variable.path`.

        Returns:
            Dict `{variable.path: float}`, in the order the optimizer was built.
        """
        if not self.built:
            raise ValueError(
                "The optimizer is not built yet: call `optimizer.build("
                "model.trainable_variables)` or train one step first."
            )
        values = keras.ops.convert_to_numpy(self._multipliers)
        return {v.path: float(m) for v, m in zip(_compat.built_variables(self), values)}

    # --------------------------------------------------------------- config
    def _groups_config(self):
        if self._groups is None:
            return None
        out = {}
        for group_name, group_vars, patterns in self._groups:
            if group_vars is None:
                out[group_name] = list(patterns)
            elif group_vars and isinstance(group_vars[0], str):
                out[group_name] = {"paths": list(group_vars)}
            else:
                out[group_name] = {"paths": [v.path for v in group_vars]}
        return out

    def get_config(self):
        kind = self._spec[0]
        if kind == "decay":
            multipliers, layer_decay = None, self._spec[1]
        elif kind == "spread":
            multipliers, layer_decay = [_SPREAD_TAG, *self._spec[1:]], None
        else:
            multipliers, layer_decay = dict(self._spec[1]) or None, None
        return {
            "name": self.name,
            "optimizer": keras.saving.serialize_keras_object(self.inner_optimizer),
            "multipliers": multipliers,
            "layer_decay": layer_decay,
            "groups": self._groups_config(),
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        optimizer = keras.saving.deserialize_keras_object(
            config.pop("optimizer"), custom_objects=custom_objects
        )
        return cls(optimizer, **config)


def _path_hits(saved_path, paths):
    """Indices of `paths` equal to `saved_path`, else sharing a suffix with it.

    Variable paths can lose or gain their model-name prefix across a save and
    load (`net/dense/kernel` comes back as `dense/kernel`), so a saved group
    path also matches on whole trailing path components, when that is unique.
    """
    exact = [i for i, p in enumerate(paths) if p == saved_path]
    if exact:
        return exact
    suffix = [
        i
        for i, p in enumerate(paths)
        if saved_path.endswith("/" + p) or p.endswith("/" + saved_path)
    ]
    return suffix if len(suffix) == 1 else []


def _compile(pattern, argument):
    try:
        return re.compile(pattern)
    except re.error as error:
        raise ValueError(
            f"`{argument}` holds an invalid regex {pattern!r}: {error}. "
            f"Received: {argument} with key {pattern!r}"
        ) from None
