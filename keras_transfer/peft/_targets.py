"""Which layers get adapters: `targets` specs and the defaults per family."""

import re

import keras

from keras_transfer.backbones.groups_of import groups_of as grouping_of
from keras_transfer.peft import _adapters

# Names of the feed-forward projections of transformer blocks (keras-hub's
# `TransformerEncoder` uses `feedforward_intermediate_dense` and
# `feedforward_output_dense`; ViT-style blocks call them mlp / fc / ffn).
FEED_FORWARD = re.compile(r"feedforward|intermediate|mlp|ffn|(^|_)fc\d*($|_)")
# Inside an attention layer, the projections LoRA adapts by default (Hu et
# al., 2021 adapt the query and value projections).
ATTENTION_TARGETS = ("query", "value")

DEFAULT_RULES = {
    "transformer": (
        "attention query/value projections and feed-forward Dense/EinsumDense"
    ),
    "cnn": "1x1 convolutions (groups=1) and Dense layers",
}


def _is_projection(layer):
    return isinstance(layer, (keras.layers.Dense, keras.layers.EinsumDense))


def _is_pointwise(layer):
    return (
        isinstance(layer, keras.layers.Conv1D)
        or isinstance(layer, keras.layers.Conv2D)
        or isinstance(layer, keras.layers.Conv3D)
    ) and (
        all(int(k) == 1 for k in layer.kernel_size)
        and int(getattr(layer, "groups", 1)) == 1
        and not isinstance(layer, keras.layers.DepthwiseConv2D)
    )


def family_of(paths):
    """`"transformer"` when `paths` hold an attention layer, else `"cnn"`."""
    attention = keras.layers.MultiHeadAttention
    if any(isinstance(layer, attention) for layer in paths.values()):
        return "transformer"
    return "cnn"


def default_targets(paths, family=None):
    """`[path]` of the layers the default rule of `family` adapts."""
    family = family or family_of(paths)
    attention = [
        p for p, layer in paths.items()
        if isinstance(layer, keras.layers.MultiHeadAttention)
    ]
    out = []
    for path, layer in paths.items():
        if not _adapters.supports_lora(layer):
            continue
        name = path.rsplit("/", 1)[-1]
        if family == "transformer":
            inside = any(path.startswith(a + "/") for a in attention)
            if inside and name in ATTENTION_TARGETS and _is_projection(layer):
                out.append(path)
            elif not inside and _is_projection(layer) and FEED_FORWARD.search(name):
                out.append(path)
        elif _is_pointwise(layer) or isinstance(layer, keras.layers.Dense):
            out.append(path)
    return out


def groups_of(root):
    """The layer groups of `root` (`keras_transfer.backbones.groups_of`).

    A `Backbone` gives its own; any other Keras layer or model is grouped in
    place (its family's groups, or the generic split). A layer that cannot be
    grouped (not built) has no groups.
    """
    try:
        return list(grouping_of(root).groups)
    except ValueError:
        return []


def _below(paths, layers):
    """Paths of `layers` and of everything inside them."""
    ids = {id(layer) for layer in layers}
    tops = [p for p, layer in paths.items() if id(layer) in ids]
    return [
        p for p in paths
        if any(p == top or p.startswith(top + "/") for top in tops)
    ]


def select(root, paths, spec, argument, family=None):
    """`[path]` chosen by `spec` among `paths` (in walk order).

    `spec` is None (the family default), or one item or a list of items:
    a group name (the default targets inside that group, or every LoRA-able
    layer of the group when the default rule finds none there), a regex
    searched in layer paths, a layer class, or a callable `layer -> bool`.
    """
    if spec is None:
        return default_targets(paths, family)
    items = list(spec) if isinstance(spec, (list, tuple, set)) else [spec]
    if not items:
        raise ValueError(
            f"`{argument}` must not be empty. Received: {argument}={spec!r}"
        )
    groups = None
    chosen = set()
    for item in items:
        if isinstance(item, str):
            if groups is None:
                groups = {g.name: g for g in groups_of(root)}
            if item in groups:
                inside = _below(paths, groups[item].layers)
                defaults = set(default_targets(paths, family))
                hits = [p for p in inside if p in defaults] or inside
            else:
                try:
                    pattern = re.compile(item)
                except re.error as error:
                    raise ValueError(
                        f"`{argument}` strings must be group names or regular "
                        f"expressions. Received: {argument}={item!r} ({error})"
                    ) from error
                hits = [p for p in paths if pattern.search(p)]
        elif isinstance(item, type) and issubclass(item, keras.layers.Layer):
            hits = [p for p, layer in paths.items() if isinstance(layer, item)]
        elif callable(item):
            hits = [p for p, layer in paths.items() if item(layer)]
        else:
            raise ValueError(
                f"`{argument}` must be group names, regexes on layer paths, layer "
                f"classes or a callable `layer -> bool`. Received: "
                f"{argument}={item!r}"
            )
        chosen.update(hits)
    return [p for p in paths if p in chosen]


def nothing_matched(root, paths, spec, argument):
    adaptable = [p for p, layer in paths.items() if _adapters.supports_lora(layer)]
    names = [g.name for g in groups_of(root)]
    shown = adaptable[:20]
    more = f" (first 20 of {len(adaptable)})" if len(adaptable) > 20 else ""
    return ValueError(
        f"`{argument}` matched no layer that supports LoRA. Received: "
        f"{argument}={spec!r}. Layer groups: {names}. Layers that support "
        f"LoRA{more}: {shown}"
    )
