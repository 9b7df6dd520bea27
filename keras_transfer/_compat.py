"""The one place that reaches into Keras or TensorFlow internals.

Every use of a private Keras/TensorFlow attribute, of `keras.src`, or a
method replaced on an instance lives here, behind a small function with a
docstring that says why no public API does the job. Each reach has a test in
`tests/test_compat.py` that fails with the Keras version and the reach named
when a Keras release moves it.
"""

import keras

KERAS_VERSION = keras.version()


class CompatibilityError(RuntimeError):
    """A Keras or TensorFlow internal this package relies on has moved."""


def _moved(reach, error):
    return CompatibilityError(
        f"keras-transfer relies on `{reach}`, which this Keras "
        f"({KERAS_VERSION}) no longer provides ({error}). Please report it "
        "with your Keras version."
    )


def flatten_layers(layer, include_self=True, recursive=True):
    """`layer` and every layer it tracks, depth first, each once.

    Keras has no public recursive walk over a layer's sublayers
    (`Model.layers` lists the top level only); `Layer._flatten_layers` is the
    walk Keras itself uses for `trainable_weights`.
    """
    try:
        walk = layer._flatten_layers
    except AttributeError as error:
        raise _moved("Layer._flatten_layers", error) from error
    return list(walk(include_self=include_self, recursive=recursive))


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
    merge itself when it saves (`_get_kernel_with_merged_lora`); no public
    method returns it.
    """
    try:
        merge = layer._get_kernel_with_merged_lora
    except AttributeError as error:
        raise _moved("Layer._get_kernel_with_merged_lora", error) from error
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
