"""DoRA versions of the Keras layers that have `enable_lora`.

DoRA (Liu et al., 2024) writes a weight as a magnitude times a direction,
`W' = m * (W + s B A) / ||W + s B A||`, the norm taken per output unit, and
trains the magnitude `m` and the low-rank factors. Keras layers compute
their kernel in one `kernel` property (base plus LoRA update); each class
here is the Keras layer with that property followed by the normalisation
and the magnitude. An adapted layer becomes an instance of one of these
classes (`enable_lora(..., dora=True)`) and goes back to its own class when
merged (`merge_lora`).

Saving follows Keras: the layer saves its effective kernel (the direction
times the magnitude) as its kernel; loading rebuilds the adapters at zero
and the magnitude as the norm of that kernel, so the loaded layer gives the
same outputs. The classes are registered, so a `.keras` file with them loads
with `safe_mode` on and no `custom_objects` once `keras_transfer` is
imported.
"""

import keras
from keras import ops

from keras_transfer import _compat
from keras_transfer.api_export import keras_transfer_export
from keras_transfer.peft import _adapters


class _DoRA:
    """The DoRA part shared by every layer class below (a mixin)."""

    def _dora_norm(self, kernel):
        kernel = ops.cast(kernel, "float32")
        axes = _adapters.norm_axes(self)
        return ops.sqrt(ops.sum(ops.square(kernel), axis=axes, keepdims=True))

    @property
    def kernel(self):
        kernel = super().kernel
        magnitude = getattr(self, "dora_magnitude", None)
        if magnitude is None or not self.lora_enabled:
            return kernel
        direction = ops.divide(ops.cast(kernel, "float32"), self._dora_norm(kernel))
        return ops.cast(ops.multiply(direction, magnitude), self.compute_dtype)

    def enable_lora(self, rank, lora_alpha=None, **kwargs):
        super().enable_lora(rank, lora_alpha=lora_alpha, **kwargs)
        # B starts at zero, so `super().kernel` is the base kernel: the
        # magnitude starts at its norm and the layer's output is unchanged.
        norm = self._dora_norm(super().kernel)
        with _compat.unlocked_state(self):
            self.dora_magnitude = self.add_weight(
                name="dora_magnitude",
                shape=tuple(norm.shape),
                initializer="ones",
                dtype="float32",
            )
        self.dora_magnitude.assign(norm)

    def load_own_variables(self, store):
        super().load_own_variables(store)
        if getattr(self, "dora_magnitude", None) is not None:
            # The file holds the effective kernel; adapters are back at zero.
            self.dora_magnitude.assign(self._dora_norm(super().kernel))


@keras_transfer_export("keras_transfer.peft.DoRADense")
class DoRADense(_DoRA, keras.layers.Dense):
    """`keras.layers.Dense` with a DoRA kernel (made by `enable_lora`)."""


@keras_transfer_export("keras_transfer.peft.DoRAEinsumDense")
class DoRAEinsumDense(_DoRA, keras.layers.EinsumDense):
    """`keras.layers.EinsumDense` with a DoRA kernel (made by `enable_lora`)."""


@keras_transfer_export("keras_transfer.peft.DoRAConv1D")
class DoRAConv1D(_DoRA, keras.layers.Conv1D):
    """`keras.layers.Conv1D` with a DoRA kernel (made by `enable_lora`)."""


@keras_transfer_export("keras_transfer.peft.DoRAConv2D")
class DoRAConv2D(_DoRA, keras.layers.Conv2D):
    """`keras.layers.Conv2D` with a DoRA kernel (made by `enable_lora`)."""


@keras_transfer_export("keras_transfer.peft.DoRAConv3D")
class DoRAConv3D(_DoRA, keras.layers.Conv3D):
    """`keras.layers.Conv3D` with a DoRA kernel (made by `enable_lora`)."""


# Exact Keras class -> its DoRA class. Subclasses of these are not swapped:
# their own behaviour would be lost.
DORA_CLASSES = {
    keras.layers.Dense: DoRADense,
    keras.layers.EinsumDense: DoRAEinsumDense,
    keras.layers.Conv1D: DoRAConv1D,
    keras.layers.Conv2D: DoRAConv2D,
    keras.layers.Conv3D: DoRAConv3D,
}
BASE_CLASSES = {dora: base for base, dora in DORA_CLASSES.items()}
