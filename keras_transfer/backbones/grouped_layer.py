"""`GroupedLayer`: any Keras layer or model seen as ordered layer groups."""

import keras

from keras_transfer import _compat
from keras_transfer.api_export import keras_transfer_export
from keras_transfer.backbones import _grouping
from keras_transfer.utils.variables import count_params


def _is_batch_norm(layer):
    return isinstance(layer, keras.layers.BatchNormalization)


@keras_transfer_export("keras_transfer.backbones.GroupedLayer", serializable=False)
class GroupedLayer:
    """Ordered, named layer groups of a Keras layer or model, in place.

    A view, not a copy: the groups hold the very layers of `layer`, so
    freezing a group freezes the layers the user's model calls, and a
    learning-rate factor of a group applies to the user's own variables.
    Nothing is rebuilt and nothing needs re-wiring. This is how
    `GradualUnfreezing`, `DiscriminativeLR(groups=...)` and `fine_tune` see a
    `keras.applications` model, a keras-hub or keras-cv backbone, or a
    functional, Sequential or subclassed model of the user's:
    `keras_transfer.backbones.groups_of(layer)` returns this view (a
    `Backbone` is its own view).

    Groups are found as for `Backbone`: from `groups` (a dict of regexes on
    layer names, a callable `layer -> group name`, or a list of
    `LayerGroup`s), else from the table of known architectures (recognised
    from layer names), else by a split into `num_groups` consecutive groups
    of similar parameter count. Nested models are opened up, so their layers
    are grouped one by one. A layer that is not a model is one group.

    Freezing follows the same explicit policy as `Backbone`: `freeze_to(n)`
    first makes `layer` itself trainable (so a `base_model.trainable = False`
    set before does not keep every group frozen), then freezes all but the
    top `n` groups. `freeze_bn=True` keeps every BatchNorm layer
    non-trainable, which in Keras also means inference mode (moving
    statistics kept); a `training=False` in the user's call does not do that
    during `fit` when the nested model is trainable (keras-team/keras#20285).

    Args:
        layer: A `keras.layers.Layer` or `keras.Model`, built.
        groups: Optional dict, callable or list of `LayerGroup`s.
        num_groups: Integer. Number of groups of the generic split.

    Examples:

        >>> base = keras.Sequential([
        ...     keras.Input((4,)),
        ...     keras.layers.Dense(8, name="d1"),
        ...     keras.layers.Dense(8, name="d2"),
        ... ], name="base")
        >>> view = GroupedLayer(base, groups={"low": "d1", "high": "d2"})
        >>> view.group_names
        ['low', 'high']
        >>> base.trainable = False
        >>> view.freeze_to(1)
        >>> view.trainable_group_names, base.get_layer("d2").trainable
        (['high'], True)
    """

    def __init__(self, layer, groups=None, num_groups=3):
        if not isinstance(layer, keras.layers.Layer):
            raise ValueError(
                "`layer` must be a Keras layer or model. "
                f"Received: layer={type(layer).__name__}"
            )
        units = _grouping.unit_layers(layer)
        resolved, family = _grouping.resolve_groups(units, groups, num_groups)
        self._setup(layer, resolved, family)

    @classmethod
    def _of_groups(cls, layer, groups, family):
        """A view over already resolved groups (a `Backbone`'s own)."""
        view = cls.__new__(cls)
        view._setup(layer, groups, family)
        return view

    def _setup(self, layer, groups, family):
        self.layer = layer
        self._groups = tuple(groups)
        self._family = family
        self._by_id = None
        self._by_path = None

    # -- groups ---------------------------------------------------------------
    @property
    def name(self):
        """Name of the viewed layer."""
        return self.layer.name

    @property
    def groups(self):
        """List of `LayerGroup`s, ordered from input to output."""
        return list(self._groups)

    @property
    def group_names(self):
        """Names of the groups, ordered from input to output."""
        return [g.name for g in self._groups]

    @property
    def family(self):
        """Name of the recognised architecture (e.g. `"ResNet"`), or None."""
        return self._family

    @property
    def variables(self):
        """Every variable of the viewed layer."""
        return list(self.layer.variables)

    def get_group(self, name):
        """The `LayerGroup` called `name`."""
        for g in self._groups:
            if g.name == name:
                return g
        raise ValueError(
            f"`name` must be one of the groups {self.group_names}. "
            f"Received: name={name!r}"
        )

    def group_of(self, variable):
        """Name of the group that owns `variable` (or its path), or None."""
        if self._by_id is None:
            by_id, by_path = {}, {}
            for g in self._groups:
                for v in g.variables:
                    by_id.setdefault(id(v), g.name)
                    by_path.setdefault(v.path, g.name)
            self._by_id, self._by_path = by_id, by_path
        if isinstance(variable, str):
            return self._by_path.get(variable)
        found = self._by_id.get(id(variable))
        if found is None:
            found = self._by_path.get(getattr(variable, "path", None))
        return found

    # -- freezing -------------------------------------------------------------
    def freeze(self, train_bn=False):
        """Freeze every group (optionally keeping BatchNorm layers trainable).

        Args:
            train_bn: Boolean. Keep BatchNorm layers trainable (fastai).
        """
        self.freeze_to(0, train_bn=train_bn)

    def unfreeze(self, freeze_bn=False):
        """Make every group trainable.

        Args:
            freeze_bn: Boolean. Keep every BatchNorm layer non-trainable, so it
                runs in inference mode with its pretrained statistics.
        """
        self.freeze_to(len(self._groups), freeze_bn=freeze_bn)

    def freeze_to(self, n, train_bn=False, freeze_bn=False):
        """Make the top `n` groups trainable and freeze the others.

        Args:
            n: Integer. With `n >= 0`, the last `n` groups are trainable
                (`0`: all frozen). With `n < 0`, all groups but the first
                `|n|` are trainable.
            train_bn: Boolean. BatchNorm layers of frozen groups stay
                trainable.
            freeze_bn: Boolean. Every BatchNorm layer is non-trainable
                (inference mode), also in trainable groups.

        Changing `trainable` after `compile` takes effect once the train
        function is rebuilt (`model.make_train_function(force=True)`).
        """
        count = len(self._groups)
        if isinstance(n, bool) or not isinstance(n, int) or not -count <= n <= count:
            raise ValueError(
                f"`n` must be an integer in [-{count}, {count}] ('{self.name}' "
                f"has {count} groups: {self.group_names}). Received: n={n!r}"
            )
        if train_bn and freeze_bn:
            raise ValueError(
                "`train_bn` and `freeze_bn` cannot both be True. "
                "Received: train_bn=True, freeze_bn=True"
            )
        frozen = count - n if n >= 0 else -n
        self.layer.trainable = True
        for index, group in enumerate(self._groups):
            on = index >= frozen
            for layer in group.layers:
                layer.trainable = on
                if train_bn or freeze_bn:
                    for sub in _compat.flatten_layers(layer):
                        if _is_batch_norm(sub):
                            sub.trainable = bool(train_bn)

    @property
    def trainable_group_names(self):
        """Names of the groups whose (non-BatchNorm) weights are trainable."""
        if not self.layer.trainable:
            return []
        out = []
        for group in self._groups:
            trainable_ids = {id(v) for v in group.trainable_variables}
            bn_ids = {
                id(v)
                for layer in group.layers
                for sub in _compat.flatten_layers(layer)
                if _is_batch_norm(sub)
                for v in sub.weights
            }
            main = [v for v in group.variables if id(v) not in bn_ids]
            pool = main or group.variables
            if any(id(v) in trainable_ids for v in pool):
                out.append(group.name)
        return out

    def summary_groups(self, print_fn=None, title=None):
        """Print a table of the groups: layers, parameters, trainable.

        Args:
            print_fn: Optional callable taking a string (default `print`).
            title: Optional first line (default names the layer and family).
        """
        print_fn = print_fn or print
        rows = [("Group", "Layers", "First -> last layer", "Parameters", "Trainable")]
        total = 0
        total_trainable = 0
        for group in self._groups:
            params = group.count_params()
            trainable_params = count_params(group.trainable_variables)
            total += params
            total_trainable += trainable_params
            span = f"{group.layers[0].name} -> {group.layers[-1].name}"
            rows.append(
                (
                    group.name,
                    str(len(group.layers)),
                    span,
                    f"{params:,}",
                    f"{trainable_params:,}",
                )
            )
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        line = "  ".join("-" * w for w in widths)
        if title is None:
            title = f"Groups of '{self.name}'"
        if self.family:
            title += f" ({self.family})"
        lines = [title, line]
        for i, row in enumerate(rows):
            cells = [
                row[c].rjust(widths[c]) if c in (1, 3, 4) else row[c].ljust(widths[c])
                for c in range(len(row))
            ]
            lines.append("  ".join(cells).rstrip())
            if i == 0:
                lines.append(line)
        lines.append(line)
        lines.append(f"Total parameters: {total:,} (trainable: {total_trainable:,})")
        print_fn("\n".join(lines))

    def __repr__(self):
        family = f" ({self.family})" if self.family else ""
        return (
            f"<GroupedLayer '{self.name}'{family}: {len(self._groups)} groups "
            f"{self.group_names}>"
        )
