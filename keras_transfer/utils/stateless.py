"""An optimizer step on the variables that train now, for stateless trainers.

The JAX trainer of Keras applies gradients with
`optimizer.stateless_apply(optimizer_values, grads, trainable_values)`, where
`trainable_values` are the values of `model.trainable_variables` at the time
the train function is traced. Keras's own `stateless_apply` requires them to
be exactly the variables the optimizer was built with. An optimizer built
over every variable that will ever train (`DiscriminativeLR(groups=...)`,
the optimizer `GradualUnfreezing` prepares) sees fewer while part of the
backbone is frozen: `apply_to_variables` maps the values it receives to the
model's trainable variables, runs the optimizer's ordinary `apply` on them
inside a `keras.StatelessScope`, and returns the new values in the order
the trainer expects. The optimizer state of frozen variables is left as it
is, as `apply(grads, variables)` leaves it on TensorFlow.
"""

import keras

from keras_transfer import _compat


def apply_to_variables(
    optimizer, variables, optimizer_values, grads, trainable_values
):
    """`optimizer.stateless_apply`, for `variables` (a subset of those it knows).

    Args:
        optimizer: A built `keras.optimizers.Optimizer`.
        variables: The `keras.Variable`s that `trainable_values` and `grads`
            stand for, in the same order (the model's trainable variables).
        optimizer_values: Values of `optimizer.variables`, in order.
        grads: One gradient per variable.
        trainable_values: One value per variable.

    Returns:
        `(new trainable values, new optimizer values)`, as `stateless_apply`.
    """
    variables = list(variables)
    if len(trainable_values) != len(variables):
        raise ValueError(
            f"`{type(optimizer).__name__}.stateless_apply` received "
            f"{len(trainable_values)} trainable values, but the model trains "
            f"{len(variables)} variables now. Rebuild the train function "
            "after changing `trainable` (`model.make_train_function(force=True)`)."
        )
    own = list(optimizer.variables)
    if len(optimizer_values) != len(own):
        raise ValueError(
            f"`{type(optimizer).__name__}.stateless_apply` received "
            f"{len(optimizer_values)} optimizer values for {len(own)} optimizer "
            "variables."
        )
    _check_moving_average(optimizer, variables)
    mapping = list(zip(variables, trainable_values)) + list(zip(own, optimizer_values))
    with keras.StatelessScope(state_mapping=mapping) as scope:
        optimizer.apply(grads, variables)
    return (
        [scope.get_current_value(v) for v in variables],
        [scope.get_current_value(v) for v in own],
    )


def _check_moving_average(optimizer, variables):
    """Keras's JAX EMA step reads every built variable: frozen ones too."""
    inner = optimizer
    while hasattr(inner, "inner_optimizer"):
        inner = inner.inner_optimizer
    if not getattr(inner, "use_ema", False):
        return
    ids = {id(v) for v in variables}
    missing = [v for v in _compat.built_variables(inner) if id(v) not in ids]
    if missing:
        raise ValueError(
            "`use_ema=True` with variables that are frozen now is not "
            f"supported on the {keras.backend.backend()!r} backend: Keras's "
            "JAX optimizer averages every variable it was built with at each "
            f"step, and {len(missing)} of them are frozen "
            f"(e.g. '{missing[0].path}'). Train without `use_ema`, or with "
            "every variable the optimizer was built with trainable, or use the "
            "TensorFlow backend."
        )
