"""`groups_of` and `find_backbone`: layer groups of the model the user has."""

import keras

from keras_transfer import _compat
from keras_transfer.api_export import keras_transfer_export
from keras_transfer.backbones.backbone import Backbone
from keras_transfer.backbones.grouped_layer import GroupedLayer


@keras_transfer_export("keras_transfer.backbones.groups_of", serializable=False)
def groups_of(layer, groups=None, num_groups=3, *, argument="layer"):
    """The layer groups of any Keras layer or model, in place.

    The one function behind every component that takes a backbone
    (`GradualUnfreezing`, `DiscriminativeLR(groups=...)`, `fine_tune`,
    `extract_features`, `DomainAdaptationModel`): a `keras.applications`
    model, a keras-hub or keras-cv backbone, or a functional, Sequential or
    subclassed model of the user's is grouped as it is, sharing its layers and
    variables (see `GroupedLayer`). Known architectures get their family's
    groups (stem, stage_1, ...; embeddings, layer_0, ...), anything else a
    split into `num_groups` groups of similar size.

    Args:
        layer: A `Backbone` (returned as it is, it is its own view), a
            `GroupedLayer` (returned as it is), or any built Keras layer or
            model.
        groups: Optional dict `{group: regex or list of regexes}` on layer
            names, callable `layer -> group name`, or list of `LayerGroup`s.
        num_groups: Integer. Number of groups of the generic split.
        argument: String. The caller's name for `layer`, used in errors.

    Returns:
        A `Backbone` or a `GroupedLayer`: both have `groups`, `group_names`,
        `freeze_to`, `freeze`, `unfreeze`, `trainable_group_names`,
        `group_of` and `summary_groups`.

    Examples:

        >>> base = keras.applications.MobileNetV2(
        ...     input_shape=(32, 32, 3), include_top=False, weights=None)
        >>> view = groups_of(base)
        >>> view.family, view.group_names
        ('MobileNetV2', ['stem', 'stage_1', 'stage_2', 'stage_3', 'stage_4'])
        >>> view.get_group("stem").layers[0] is base.get_layer("Conv1")
        True
    """
    if isinstance(layer, (Backbone, GroupedLayer)):
        if groups is None:
            return layer
        layer = layer.layer if isinstance(layer, GroupedLayer) else layer
        return GroupedLayer(layer, groups=groups, num_groups=num_groups)
    if not isinstance(layer, keras.layers.Layer):
        raise ValueError(
            f"`{argument}` must be a Keras layer or model (the pretrained part "
            "of the network, e.g. a keras.applications or keras-hub model), a "
            f"`Backbone` or a `GroupedLayer`. Received: {argument}={layer!r}"
        )
    if not layer.built:
        raise ValueError(
            f"`{argument}` '{layer.name}' is not built, so its variables do not "
            "exist yet: give the model a `keras.Input`, call "
            "`build(input_shape)` or call it on one batch first."
        )
    return GroupedLayer(layer, groups=groups, num_groups=num_groups)


def _children(layer):
    if isinstance(layer, keras.Model):
        return list(layer.layers)
    return _compat.flatten_layers(layer, include_self=False, recursive=False)


def _has_weights(layer):
    return any(True for _ in _compat.trainable_kind_variables(layer))


def _nested_models(layer):
    """Weighted models inside `layer`, outermost first, not inside each other."""
    found = []
    for child in _children(layer):
        if isinstance(child, keras.Model):
            if _has_weights(child):
                found.append(child)
        else:
            found.extend(_nested_models(child))
    return found


@keras_transfer_export("keras_transfer.backbones.find_backbone", serializable=False)
def find_backbone(model):
    """The pretrained part inside `model`, as layer groups.

    What `GradualUnfreezing()` and `fine_tune(model)` use when no backbone is
    named: the layer a model names as its `backbone` attribute (keras-hub
    tasks, `DomainAdaptationModel`, a subclassed model with `self.backbone`),
    else the one `Backbone` inside `model`, else the one nested model with
    weights (a `keras.applications`, keras-hub or keras-cv model called by a
    functional model, an item of a Sequential model, or a model held as an
    attribute of a subclassed one). Nested models without weights, such as a
    data-augmentation `Sequential`, are not candidates.

    Args:
        model: The `keras.Model` being trained.

    Returns:
        A `Backbone` or a `GroupedLayer` (see `groups_of`).

    Raises:
        ValueError: when there is no candidate or more than one; the message
            lists them. Pass the backbone explicitly then.

    Examples:

        >>> base = keras.Sequential(
        ...     [keras.Input((4,)), keras.layers.Dense(8)], name="base")
        >>> inputs = keras.Input((4,))
        >>> outputs = keras.layers.Dense(1, name="head")(base(inputs))
        >>> find_backbone(keras.Model(inputs, outputs)).name
        'base'
    """
    if not isinstance(model, keras.Model):
        raise ValueError(
            f"`model` must be a keras.Model. Received: model={type(model).__name__}"
        )
    named = getattr(model, "backbone", None)
    if isinstance(named, keras.layers.Layer):
        return groups_of(named, argument="model.backbone")
    backbones = [
        layer
        for layer in _compat.flatten_layers(model, include_self=False)
        if isinstance(layer, Backbone)
    ]
    if len(backbones) == 1:
        return backbones[0]
    candidates = backbones or _nested_models(model)
    if len(candidates) == 1:
        return groups_of(candidates[0])
    if not candidates:
        raise ValueError(
            f"Found no pretrained part inside the model '{model.name}': it holds "
            "no nested model with weights. Name it: pass the layer or model "
            "that holds the pretrained weights (e.g. `base_model`) as "
            "`backbone=`, or wrap the layers with `Backbone.from_model`."
        )
    listed = ", ".join(f"'{c.name}' ({type(c).__name__})" for c in candidates)
    raise ValueError(
        f"The model '{model.name}' holds {len(candidates)} candidates for the "
        f"pretrained part: {listed}. Pass the one to fine-tune as `backbone=`."
    )
