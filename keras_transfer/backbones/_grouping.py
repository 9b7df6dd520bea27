"""Assigning a backbone's layers to ordered groups.

Groups can be given as a dict of regexes on layer names, a callable
`layer -> group name`, a list of `LayerGroup`s (or of `{"name", "layers"}`
dicts, as stored in a config), or computed: a known architecture's table
(`_families.py`) or a generic split into groups of similar parameter count.

Layers without weights that no rule names join the group of the weighted
layer before them (the first group when they come first), so a rule only has
to cover the layers that have weights.
"""

import re

import keras

from keras_transfer.backbones import _families
from keras_transfer.backbones.layer_group import LayerGroup
from keras_transfer.utils.variables import count_params


def _expanded(layer):
    """Sublayers that stand for `layer` in groups, or None to keep it whole.

    Containers whose blocks people fine-tune one by one are opened up:
    keras-hub's `ViTEncoder` holds every transformer block of a ViT.
    """
    if type(layer).__name__ == "ViTEncoder" and hasattr(layer, "encoder_layers"):
        return list(layer.encoder_layers) + [layer.dropout, layer.layer_norm]
    return None


def unit_layers(model):
    """Layers of `model` in graph order, nested models expanded, no inputs.

    A layer that is not a model stands for itself.
    """
    if not isinstance(model, keras.Model):
        return [model]
    out = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if isinstance(layer, keras.Model):
            out.extend(unit_layers(layer))
            continue
        parts = _expanded(layer)
        out.extend(parts if parts else [layer])
    return out


def resolve_groups(units, groups=None, num_groups=3, family=None):
    """`(groups, family name)` for `units` from a spec, the family table or a split.

    `groups` is a dict of regexes, a callable, a list of `LayerGroup`s (then
    `family` is kept as given, as when a config is loaded) or None (the
    family table, else `num_groups` groups of similar size).
    """
    names = [u.name for u in units]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(
            f"Layer names must be unique inside a backbone; {duplicates} "
            "occur more than once (often a nested model reusing a name of "
            "the outer model). Rename the layers and try again."
        )
    if not units:
        raise ValueError("A backbone needs at least one layer besides its inputs.")
    if groups is None:
        found = _families.detect_family(names)
        if found is not None:
            assigned = found.group_names(units)
            if assigned is not None:
                return _to_groups(units, assigned), found.name
        return split_by_params(units, num_groups), None
    if isinstance(groups, (list, tuple)):
        return groups_from_list(units, groups), family
    return groups_from_spec(units, groups), None


def layer_param_count(layer):
    return count_params(layer.weights)


def _names_by_rule(units, rule, arg_name="groups"):
    """Group name (or None) for each unit from a callable rule."""
    names = []
    for layer in units:
        name = rule(layer)
        if name is not None and not isinstance(name, str):
            raise ValueError(
                f"`{arg_name}` must map each layer to a group name (string) or "
                f"None. Received: {name!r} for layer '{layer.name}'."
            )
        names.append(name)
    return names


def _regex_rule(spec, units, arg_name="groups"):
    patterns = {}
    for group_name, regexes in spec.items():
        if not isinstance(group_name, str):
            raise ValueError(
                f"`{arg_name}` keys must be group names (strings). "
                f"Received: {group_name!r}"
            )
        if isinstance(regexes, str):
            regexes = [regexes]
        try:
            patterns[group_name] = [re.compile(r) for r in regexes]
        except (TypeError, re.error) as e:
            raise ValueError(
                f"`{arg_name}['{group_name}']` must be a regex or a list of "
                f"regexes on layer names. Received: {regexes!r} ({e})"
            ) from e
    names = []
    for layer in units:
        hits = [
            g
            for g, pats in patterns.items()
            if any(p.fullmatch(layer.name) for p in pats)
        ]
        if len(hits) > 1:
            raise ValueError(
                f"`{arg_name}` regexes overlap: layer '{layer.name}' matches the "
                f"groups {hits}. Make the patterns exclusive (they are matched "
                "with `re.fullmatch` against layer names)."
            )
        names.append(hits[0] if hits else None)
    empty = [g for g in patterns if g not in names]
    if empty:
        raise ValueError(
            f"`{arg_name}` groups {empty} match no layer. Layer names start with: "
            f"{[u.name for u in units[:8]]}..."
        )
    return names


def _fill_weightless(units, names, arg_name="groups", where="groups"):
    """Give unnamed weightless layers their predecessor's group; check coverage."""
    missing = [u.name for u, n in zip(units, names) if n is None and u.weights]
    if missing:
        shown = missing[:10]
        more = f" (and {len(missing) - 10} more)" if len(missing) > 10 else ""
        raise ValueError(
            f"`{arg_name}` is incomplete: the layers {shown}{more} have weights but "
            f"belong to no group in {where}. Every layer with weights must match "
            "exactly one group."
        )
    out = list(names)
    current = next((n for n in out if n is not None), None)
    for i, n in enumerate(out):
        if n is None:
            out[i] = current
        else:
            current = n
    return out


def _to_groups(units, names):
    order = []
    members = {}
    for layer, name in zip(units, names):
        if name not in members:
            members[name] = []
            order.append(name)
        members[name].append(layer)
    return [LayerGroup(name, members[name]) for name in order]


def groups_from_spec(units, spec, arg_name="groups"):
    """Resolve a user group spec (dict of regexes or callable) to `LayerGroup`s."""
    if callable(spec) and not isinstance(spec, dict):
        names = _names_by_rule(units, spec, arg_name)
    elif isinstance(spec, dict):
        if not spec:
            raise ValueError(
                f"`{arg_name}` must not be empty. Received: {arg_name}={{}}"
            )
        names = _regex_rule(spec, units, arg_name)
    else:
        raise ValueError(
            f"`{arg_name}` must be a dict (group name -> regex or list of regexes "
            "on layer names), a callable (layer -> group name), a list of "
            f"`LayerGroup`s, or None. Received: {arg_name}={spec!r}"
        )
    if all(n is None for n in names):
        raise ValueError(f"`{arg_name}` assigns no layer to any group.")
    return _to_groups(units, _fill_weightless(units, names, arg_name))


def groups_from_list(units, groups, arg_name="groups"):
    """Resolve a list of `LayerGroup`s / `{"name", "layers"}` dicts."""
    by_name = {}
    for layer in units:
        by_name[layer.name] = layer
    assigned = {}
    resolved = []
    for g in groups:
        if isinstance(g, dict):
            g = LayerGroup.from_config(g)
        if not isinstance(g, LayerGroup):
            raise ValueError(
                f"`{arg_name}` list items must be `LayerGroup`s or dicts with "
                f"'name' and 'layers'. Received: {g!r}"
            )
        layers = []
        for layer in g.layers:
            name = layer if isinstance(layer, str) else layer.name
            if name not in by_name or (
                not isinstance(layer, str) and by_name[name] is not layer
            ):
                raise ValueError(
                    f"`{arg_name}`: group '{g.name}' names layer '{name}', which "
                    "is not a layer of this backbone."
                )
            if name in assigned:
                raise ValueError(
                    f"`{arg_name}` overlap: layer '{name}' is in groups "
                    f"'{assigned[name]}' and '{g.name}'."
                )
            assigned[name] = g.name
            layers.append(by_name[name])
        resolved.append(LayerGroup(g.name, layers))
    names = [assigned.get(u.name) for u in units]
    _fill_weightless(units, names, arg_name)
    # Weightless layers left out of the listed groups stay out: the list is
    # taken as given (it is how a config stores groups).
    position = {id(u): i for i, u in enumerate(units)}
    resolved.sort(key=lambda g: min(position[id(layer)] for layer in g.layers))
    seen = set()
    for g in resolved:
        if g.name in seen:
            raise ValueError(f"`{arg_name}`: the group name '{g.name}' is used twice.")
        seen.add(g.name)
    return resolved


def split_by_params(units, num_groups, prefix="group"):
    """Split `units` into `num_groups` consecutive groups of similar size."""
    if not isinstance(num_groups, int) or num_groups < 1:
        raise ValueError(
            f"`num_groups` must be an integer >= 1. Received: num_groups={num_groups}"
        )
    counts = [layer_param_count(u) for u in units]
    weighted = [i for i, c in enumerate(counts) if c]
    if not weighted:
        return _to_groups(units, [f"{prefix}_0"] * len(units))
    n = min(num_groups, len(weighted))
    total = sum(counts)
    cumulative = []
    running = 0
    for i in weighted:
        running += counts[i]
        cumulative.append(running)
    # bounds[k]: number of weighted layers in groups 0..k, chosen so that the
    # cumulative size is closest to (k + 1) / n of the total.
    bounds = []
    previous = 0
    m = len(weighted)
    for k in range(1, n):
        target = k * total / n
        candidates = range(previous + 1, m - (n - k) + 1)
        b = min(candidates, key=lambda j: abs(cumulative[j - 1] - target))
        bounds.append(b)
        previous = b
    names = [None] * len(units)
    for j, i in enumerate(weighted):
        names[i] = f"{prefix}_{sum(1 for b in bounds if b <= j)}"
    return _to_groups(units, _fill_weightless(units, names))
