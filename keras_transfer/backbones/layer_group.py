"""`LayerGroup`: a named, ordered slice of a backbone's layers."""

from keras_transfer.api_export import keras_transfer_export
from keras_transfer.utils.variables import count_params


@keras_transfer_export("keras_transfer.backbones.LayerGroup")
class LayerGroup:
    """A named group of consecutive layers of a `Backbone`.

    Layer groups are the unit of fine-tuning: a backbone is frozen and
    unfrozen group by group (`Backbone.freeze_to`), and learning rates are
    given per group. A group holds the layer objects of the backbone; its
    `variables` are all the weights of those layers (trainable and not), each
    listed once.

    A `LayerGroup` whose `layers` are layer *names* (strings) is unresolved:
    `Backbone` resolves the names against its own layers. That is how groups
    are stored in a backbone's config.

    Args:
        name: String. Name of the group, e.g. `"stage_3"`.
        layers: List of `keras.layers.Layer` instances (or layer names).

    Examples:

        >>> dense = keras.layers.Dense(2)
        >>> dense.build((None, 3))
        >>> group = LayerGroup("head", [dense])
        >>> group.name, [v.path for v in group.variables]
        ('head', ['dense/kernel', 'dense/bias'])
        >>> group.count_params()
        8
    """

    def __init__(self, name, layers):
        if not isinstance(name, str) or not name:
            raise ValueError(
                f"`name` must be a non-empty string. Received: name={name!r}"
            )
        layers = list(layers)
        if not layers:
            raise ValueError(
                f"`layers` of group '{name}' must not be empty. Received: layers=[]"
            )
        self.name = name
        self.layers = layers

    @property
    def resolved(self):
        """Whether `layers` holds layer objects (not names)."""
        return not any(isinstance(layer, str) for layer in self.layers)

    @property
    def layer_names(self):
        """Names of the layers of the group, in order."""
        return [
            layer if isinstance(layer, str) else layer.name for layer in self.layers
        ]

    def _check_resolved(self):
        if not self.resolved:
            raise ValueError(
                f"Group '{self.name}' holds layer names, not layers: pass it to "
                "a `Backbone` (`groups=[...]`) to resolve them."
            )

    @property
    def variables(self):
        """All weights of the group's layers (trainable and not), each once."""
        self._check_resolved()
        seen = set()
        out = []
        for layer in self.layers:
            for v in layer.weights:
                if id(v) not in seen:
                    seen.add(id(v))
                    out.append(v)
        return out

    @property
    def trainable_variables(self):
        """The group's variables that an optimizer would currently update."""
        self._check_resolved()
        ids = {id(v) for layer in self.layers for v in layer.trainable_weights}
        return [v for v in self.variables if id(v) in ids]

    @property
    def non_trainable_variables(self):
        """The group's variables that are currently frozen."""
        trainable = {id(v) for v in self.trainable_variables}
        return [v for v in self.variables if id(v) not in trainable]

    def count_params(self):
        """Number of scalars in the group's weights (trainable and not)."""
        return count_params(self.variables)

    def get_config(self):
        return {"name": self.name, "layers": self.layer_names}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"<LayerGroup '{self.name}': {len(self.layers)} layers>"
