"""Our own LoRA layers, where Keras's `layer.enable_lora` cannot do the job.

Two kinds, each a registered subclass of the Keras layer it adapts (an
adapted layer becomes an instance of it, as with DoRA, and gets its own
class back when merged):

- Keras layers without `enable_lora` (`DepthwiseConv1D/2D`,
  `SeparableConv1D/2D` (the pointwise kernel), `Conv1D/2D/3DTranspose`):
  the adapted weight becomes a property, `W + (alpha / rank) * A @ B`, read
  by the layer's own `call`. `A` and `B` split the weight's axes as
  `_adapters.OWN_LORA` says; `B` starts at zero, so the outputs at first
  are the base layer's.
- `Dense` and `EinsumDense` with LoRA dropout (Hu et al., 2021; as in HF
  PEFT: dropout on the adapter's input only, in training only) or with an
  `EinsumDense` kernel factored as its input x output matrix
  (`factoring="matrix"`). In training with dropout the layer computes
  `f(x W + dropout(x) dW + b)` (two matmuls/einsums); otherwise, and at
  inference, `f(x (W + dW) + b)` as Keras does. The merged weight is the same
  either way.

Saving follows Keras's own LoRA: the `.keras` file holds the kernel with the
update folded in, and the loaded layer has its adapters at zero (resume
training with `save_adapters` / `load_adapters`). The classes are
registered, so such a file loads with `safe_mode` on and no `custom_objects`
once `keras_transfer` is imported.
"""

import math

import keras
from keras import ops

from keras_transfer import _compat
from keras_transfer.api_export import keras_transfer_export
from keras_transfer.peft import _adapters


def _a_initializer(rows, rank):
    """He-uniform over A seen as a `rows x rank` matrix (Keras's choice)."""
    he = keras.initializers.HeUniform()

    def initialize(shape, dtype=None):
        return ops.reshape(he((rows, rank), dtype=dtype), shape)

    return initialize


def _add_factors(layer, shape, split, rank, alpha):
    """Add `lora_kernel_a` (`shape[:split] + (rank,)`) and `lora_kernel_b`."""
    with _compat.unlocked_state(layer):
        layer.lora_kernel_a = layer.add_weight(
            name="lora_kernel_a",
            shape=tuple(shape[:split]) + (rank,),
            initializer=_a_initializer(math.prod(shape[:split]), rank),
        )
        layer.lora_kernel_b = layer.add_weight(
            name="lora_kernel_b",
            shape=(rank,) + tuple(shape[split:]),
            initializer="zeros",
        )
    layer.lora_enabled = True
    layer.lora_rank = rank
    layer.lora_alpha = alpha


def _update(layer):
    """`(alpha / rank) * A @ B`, shaped like the base weight (float32)."""
    scale = layer.lora_alpha / layer.lora_rank
    return scale * ops.tensordot(layer.lora_kernel_a, layer.lora_kernel_b, axes=1)


def _check_can_enable(layer):
    if not layer.built:
        raise ValueError("Cannot enable LoRA on a layer that isn't yet built.")
    if getattr(layer, "lora_enabled", False):
        raise ValueError("LoRA is already enabled on this layer (once per layer).")


# --- Keras layers without `enable_lora` ------------------------------------


def _low_rank_weight(name):
    """A property for the weight `name`: the base variable plus the update."""

    def get(self):
        base = _compat.instance_attribute(self, name)
        if not getattr(self, "lora_enabled", False):
            return base
        return ops.cast(
            ops.add(ops.cast(base, "float32"), _update(self)), self.compute_dtype
        )

    def set(self, value):
        _compat.set_instance_attribute(self, name, value)

    return property(get, set)


class _OwnLoRA:
    """LoRA for a Keras layer class that has no `enable_lora` (a mixin)."""

    def __init__(self, *args, lora_rank=None, lora_alpha=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lora_rank = lora_rank
        self.lora_alpha = lora_alpha if lora_alpha is not None else lora_rank
        self.lora_enabled = False

    def build(self, input_shape):
        super().build(input_shape)
        self.built = True
        if getattr(self, "lora_rank", None) and not self.lora_enabled:
            self.enable_lora(self.lora_rank, lora_alpha=self.lora_alpha)

    def enable_lora(self, rank, lora_alpha=None):
        """Add LoRA factors of rank `rank` to the adapted weight; freeze it."""
        _check_can_enable(self)
        base = _adapters.base_variable(self)
        _add_factors(
            self,
            tuple(base.shape),
            _adapters.lora_split(self),
            rank,
            lora_alpha if lora_alpha is not None else rank,
        )
        base.trainable = False

    def _base_variables(self):
        adapters = {id(self.lora_kernel_a), id(self.lora_kernel_b)}
        return [v for v in self.weights if id(v) not in adapters]

    def save_own_variables(self, store):
        if not self.built:
            return
        if not getattr(self, "lora_enabled", False):
            return super().save_own_variables(store)
        base = _adapters.base_variable(self)
        name = _adapters.own_lora_entry(self)[0]
        for v in self._base_variables():
            store[v.name] = getattr(self, name) if v is base else v

    def load_own_variables(self, store):
        if not getattr(self, "lora_enabled", False):
            return super().load_own_variables(store)
        for v in self._base_variables():
            v.assign(store[v.name])
        self.lora_kernel_a.assign(ops.zeros(self.lora_kernel_a.shape))
        self.lora_kernel_b.assign(ops.zeros(self.lora_kernel_b.shape))

    def get_config(self):
        config = super().get_config()
        if getattr(self, "lora_rank", None):
            config.update(lora_rank=self.lora_rank, lora_alpha=self.lora_alpha)
        return config


@keras_transfer_export("keras_transfer.peft.LoRADepthwiseConv1D")
class LoRADepthwiseConv1D(_OwnLoRA, keras.layers.DepthwiseConv1D):
    """`keras.layers.DepthwiseConv1D` with LoRA (made by `enable_lora`)."""

    LORA_BASE_CLASS = keras.layers.DepthwiseConv1D
    kernel = _low_rank_weight("kernel")


@keras_transfer_export("keras_transfer.peft.LoRADepthwiseConv2D")
class LoRADepthwiseConv2D(_OwnLoRA, keras.layers.DepthwiseConv2D):
    """`keras.layers.DepthwiseConv2D` with LoRA (made by `enable_lora`).

    The kernel `(window..., channels, multiplier)` is factored as
    window x (channels, multiplier): the rank is at most the window size.

    Examples:

        >>> from keras_transfer.peft import enable_lora
        >>> inputs = keras.Input((8, 8, 4))
        >>> outputs = keras.layers.DepthwiseConv2D(3, name="dw")(inputs)
        >>> model = keras.Model(inputs, outputs)
        >>> print(enable_lora(model, rank=2, targets="dw").layers[0]["class_name"])
        LoRADepthwiseConv2D
        >>> layer = model.get_layer("dw")
        >>> tuple(layer.lora_kernel_a.shape), tuple(layer.lora_kernel_b.shape)
        ((3, 3, 2), (2, 4, 1))
    """

    LORA_BASE_CLASS = keras.layers.DepthwiseConv2D
    kernel = _low_rank_weight("kernel")


@keras_transfer_export("keras_transfer.peft.LoRASeparableConv1D")
class LoRASeparableConv1D(_OwnLoRA, keras.layers.SeparableConv1D):
    """`keras.layers.SeparableConv1D` with LoRA on its pointwise kernel."""

    LORA_BASE_CLASS = keras.layers.SeparableConv1D
    pointwise_kernel = _low_rank_weight("pointwise_kernel")


@keras_transfer_export("keras_transfer.peft.LoRASeparableConv2D")
class LoRASeparableConv2D(_OwnLoRA, keras.layers.SeparableConv2D):
    """`keras.layers.SeparableConv2D` with LoRA on its pointwise kernel."""

    LORA_BASE_CLASS = keras.layers.SeparableConv2D
    pointwise_kernel = _low_rank_weight("pointwise_kernel")


@keras_transfer_export("keras_transfer.peft.LoRAConv1DTranspose")
class LoRAConv1DTranspose(_OwnLoRA, keras.layers.Conv1DTranspose):
    """`keras.layers.Conv1DTranspose` with LoRA (made by `enable_lora`)."""

    LORA_BASE_CLASS = keras.layers.Conv1DTranspose
    kernel = _low_rank_weight("kernel")


@keras_transfer_export("keras_transfer.peft.LoRAConv2DTranspose")
class LoRAConv2DTranspose(_OwnLoRA, keras.layers.Conv2DTranspose):
    """`keras.layers.Conv2DTranspose` with LoRA (made by `enable_lora`)."""

    LORA_BASE_CLASS = keras.layers.Conv2DTranspose
    kernel = _low_rank_weight("kernel")


@keras_transfer_export("keras_transfer.peft.LoRAConv3DTranspose")
class LoRAConv3DTranspose(_OwnLoRA, keras.layers.Conv3DTranspose):
    """`keras.layers.Conv3DTranspose` with LoRA (made by `enable_lora`)."""

    LORA_BASE_CLASS = keras.layers.Conv3DTranspose
    kernel = _low_rank_weight("kernel")


# --- Dense / EinsumDense: dropout, input x output factoring -----------------


class _ProjectionLoRA:
    """LoRA dropout and matrix factoring for Dense/EinsumDense (a mixin)."""

    def __init__(
        self, *args, lora_dropout=0.0, lora_factoring="last_axis", **kwargs
    ):
        super().__init__(*args, **kwargs)
        self.lora_dropout = lora_dropout
        self.lora_factoring = lora_factoring

    def enable_lora(self, rank, lora_alpha=None, **kwargs):
        """Add LoRA factors (Keras's, or split input x output); freeze the kernel."""
        if lora_alpha is None:
            lora_alpha = getattr(self, "lora_alpha", None) or rank
        if getattr(self, "lora_factoring", "last_axis") == "last_axis":
            super().enable_lora(rank, lora_alpha=lora_alpha, **kwargs)
        else:
            _check_can_enable(self)
            base = _compat.base_weight(self)
            _add_factors(
                self, tuple(base.shape), _adapters.lora_split(self), rank, lora_alpha
            )
            base.trainable = False
        if getattr(self, "lora_dropout", 0.0):
            with _compat.unlocked_state(self):
                self.lora_seed_generator = keras.random.SeedGenerator()

    @property
    def kernel(self):
        if getattr(self, "lora_enabled", False) and (
            getattr(self, "lora_factoring", "last_axis") == "matrix"
        ):
            base = ops.cast(_compat.base_weight(self), "float32")
            return ops.cast(ops.add(base, _update(self)), self.compute_dtype)
        return super().kernel

    def call(self, inputs, training=None):
        rate = getattr(self, "lora_dropout", 0.0)
        if not (training and rate and getattr(self, "lora_enabled", False)):
            return super().call(inputs, training=training)
        base = ops.cast(_compat.base_weight(self), self.compute_dtype)
        update = ops.cast(_update(self), self.compute_dtype)
        dropped = keras.random.dropout(
            inputs, rate, seed=self.lora_seed_generator
        )
        x = ops.add(self._project(inputs, base), self._project(dropped, update))
        if self.bias is not None:
            x = ops.add(x, self.bias)
        if self.activation is not None:
            x = self.activation(x)
        return x

    def get_config(self):
        config = super().get_config()
        config.update(
            lora_dropout=getattr(self, "lora_dropout", 0.0),
            lora_factoring=getattr(self, "lora_factoring", "last_axis"),
        )
        return config


@keras_transfer_export("keras_transfer.peft.LoRADense")
class LoRADense(_ProjectionLoRA, keras.layers.Dense):
    """`keras.layers.Dense` with LoRA dropout (made by `enable_lora`)."""

    def _project(self, inputs, kernel):
        return ops.matmul(inputs, kernel)


@keras_transfer_export("keras_transfer.peft.LoRAEinsumDense")
class LoRAEinsumDense(_ProjectionLoRA, keras.layers.EinsumDense):
    """`keras.layers.EinsumDense` with LoRA dropout and/or matrix factoring.

    Examples:

        >>> from keras_transfer.peft import enable_lora
        >>> inputs = keras.Input((5, 384))
        >>> query = keras.layers.EinsumDense(
        ...     "abc,cde->abde", output_shape=(None, 12, 32), name="query")
        >>> model = keras.Model(inputs, query(inputs))
        >>> summary = enable_lora(
        ...     model, rank=8, targets="query", factoring="matrix", dropout=0.1)
        >>> summary.layers[0]["params"], tuple(query.lora_kernel_a.shape)
        (6144, (384, 8))
    """

    def _project(self, inputs, kernel):
        return ops.einsum(self.equation, inputs, kernel)


# Exact Keras class -> our class with no `enable_lora` of its own.
OWN_CLASSES = {
    keras.layers.DepthwiseConv1D: LoRADepthwiseConv1D,
    keras.layers.DepthwiseConv2D: LoRADepthwiseConv2D,
    keras.layers.SeparableConv1D: LoRASeparableConv1D,
    keras.layers.SeparableConv2D: LoRASeparableConv2D,
    keras.layers.Conv1DTranspose: LoRAConv1DTranspose,
    keras.layers.Conv2DTranspose: LoRAConv2DTranspose,
    keras.layers.Conv3DTranspose: LoRAConv3DTranspose,
}
# Exact Keras class -> our class for dropout / matrix factoring.
PROJECTION_CLASSES = {
    keras.layers.Dense: LoRADense,
    keras.layers.EinsumDense: LoRAEinsumDense,
}
BASE_CLASSES = {
    ours: base
    for table in (OWN_CLASSES, PROJECTION_CLASSES)
    for base, ours in table.items()
}
