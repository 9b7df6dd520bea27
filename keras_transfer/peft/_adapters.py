"""What every PEFT function shares: the layer walk, adapter parts, checks."""

import math
import numbers

import keras
import numpy as np

from keras_transfer import _compat


def layer_paths(root):
    """`{path: layer}` for `root` and every layer inside it, depth first.

    A path is the chain of layer names below `root` ("encoder/query"); it
    does not contain the name of `root` itself, so a freshly built copy of a
    model (whose auto-generated name differs) has the same paths. `root`
    itself is listed under its own name. A layer reachable twice is listed
    once, under the first path.
    """
    paths = {root.name: root}
    seen = {id(root)}

    def visit(layer, prefix):
        for child in _compat.flatten_layers(
            layer, include_self=False, recursive=False
        ):
            if id(child) in seen or isinstance(child, keras.layers.InputLayer):
                continue
            seen.add(id(child))
            path = f"{prefix}/{child.name}" if prefix else child.name
            paths.setdefault(path, child)
            visit(child, path)

    visit(root, "")
    return paths


def own_variables(layer):
    """Variables created by `layer` itself, not by its sublayers."""
    children = _compat.flatten_layers(layer, include_self=False, recursive=True)
    inner = {id(v) for child in children for v in child.weights}
    return [v for v in layer.weights if id(v) not in inner]


# Keras layers without `enable_lora` that take our own LoRA (the classes in
# `_lora_layers`): the attribute of the adapted weight, and where the weight
# is split into the two sides of the update (A spans the axes before
# `split`, B the others). A depthwise kernel `(window..., channels,
# multiplier)` is factored as window x channels: factored over its last axis
# (the multiplier, mostly 1) it would allow rank 1 only.
OWN_LORA = {
    keras.layers.DepthwiseConv1D: ("kernel", -2),
    keras.layers.DepthwiseConv2D: ("kernel", -2),
    keras.layers.SeparableConv1D: ("pointwise_kernel", -1),
    keras.layers.SeparableConv2D: ("pointwise_kernel", -1),
    keras.layers.Conv1DTranspose: ("kernel", -1),
    keras.layers.Conv2DTranspose: ("kernel", -1),
    keras.layers.Conv3DTranspose: ("kernel", -1),
}
FACTORINGS = ("last_axis", "matrix")


def own_lora_entry(layer):
    """`(weight attribute, split)` when `layer` takes our own LoRA, else None."""
    for keras_class, entry in OWN_LORA.items():
        if type(layer) is keras_class or (
            getattr(type(layer), "LORA_BASE_CLASS", None) is keras_class
        ):
            return entry
    return None


def supports_lora(layer):
    """Whether `layer` has LoRA: Keras's own `enable_lora`, or ours."""
    return (
        callable(getattr(layer, "enable_lora", None))
        or own_lora_entry(layer) is not None
    )


def base_variable(layer):
    """The variable of the base weight of a LoRA layer (not the merged one)."""
    entry = own_lora_entry(layer)
    if entry is None:
        return _compat.base_weight(layer)
    try:
        return _compat.instance_attribute(layer, entry[0])
    except AttributeError:
        return getattr(layer, entry[0])


def is_adapted(layer):
    return bool(getattr(layer, "lora_enabled", False))


def is_dora(layer):
    return getattr(layer, "dora_magnitude", None) is not None


def adapter_names(layer):
    """Attribute names of the adapter variables of an adapted layer."""
    if hasattr(layer, "lora_embeddings_a"):
        names = ["lora_embeddings_a", "lora_embeddings_b"]
    else:
        names = ["lora_kernel_a", "lora_kernel_b"]
    if is_dora(layer):
        names.append("dora_magnitude")
    return names


def adapter_variables(layer):
    return [getattr(layer, name) for name in adapter_names(layer)]


def adapted_layers(root):
    """`{path: layer}` of the layers of `root` that carry adapters."""
    return {p: layer for p, layer in layer_paths(root).items() if is_adapted(layer)}


def weight_shape(layer):
    """Shape of the base weight (kernel or embeddings) of a LoRA layer."""
    if isinstance(layer, keras.layers.Embedding):
        return (int(layer.input_dim), int(layer.output_dim))
    original = getattr(layer, "original_kernel_shape", None)
    if original is not None:
        return tuple(int(d) for d in original)
    if getattr(layer, "quantization_mode", None) == "int4":
        return tuple(int(d) for d in layer.kernel.shape)  # unpacked
    return tuple(int(d) for d in base_variable(layer).shape)


def is_conv(layer):
    return hasattr(layer, "kernel_size") and hasattr(layer, "filters")


def einsum_input_axes(layer):
    """Leading kernel axes an `EinsumDense` contracts with its input, or None.

    `None` when the contracted axes are not exactly the leading ones (the
    kernel cannot then be read as an input x output matrix).
    """
    inputs, rest = layer.equation.replace(" ", "").split(",")
    kernel, output = rest.split("->")
    contracted = [c in inputs and c not in output for c in kernel]
    n = contracted.index(False) if False in contracted else len(kernel)
    if any(contracted[n:]) or any(c in inputs for c in kernel[n:]) or n == 0:
        return None
    return n


def lora_split(layer, factoring=None):
    """Number of leading weight axes spanned by A (B spans the others).

    Keras factors a kernel over its last axis: A spans every other axis
    (`kernel.shape[:-1] + (rank,)`), B is `(rank, kernel.shape[-1])`. Our
    own LoRA layers have their split in `OWN_LORA`; `factoring="matrix"`
    splits an `EinsumDense` kernel between its input and output axes.
    """
    ndim = len(weight_shape(layer))
    entry = own_lora_entry(layer)
    if entry is not None:
        return ndim + entry[1]
    factoring = factoring or getattr(layer, "lora_factoring", "last_axis")
    if factoring == "matrix" and isinstance(layer, keras.layers.EinsumDense):
        return einsum_input_axes(layer)
    return ndim - 1


def lora_dims(layer, factoring=None):
    """`(rows of A, columns of B)`: the two sides of the low-rank update."""
    shape = weight_shape(layer)
    split = lora_split(layer, factoring)
    return math.prod(shape[:split]), math.prod(shape[split:])


def norm_axes(layer):
    """Axes of the kernel that DoRA's norm runs over: the input axes.

    Dense: the input axis; convolutions: the window and input channels;
    EinsumDense: the kernel axes its equation contracts with the input.
    The magnitude has one entry per output unit (every other axis).
    """
    rank = len(weight_shape(layer))
    equation = getattr(layer, "equation", None)
    if equation:
        inputs, rest = equation.replace(" ", "").split(",")
        kernel, output = rest.split("->")
        return tuple(
            i for i, c in enumerate(kernel) if c in inputs and c not in output
        )
    if is_conv(layer):
        return tuple(range(rank - 1))
    return (0,)


def scale_of(layer):
    return float(layer.lora_alpha) / float(layer.lora_rank)


def merged_float_weight(layer):
    """Base weight with the adapter folded in, computed in float32 (numpy)."""
    base = keras.ops.convert_to_numpy(base_variable(layer)).astype("float32")
    names = adapter_names(layer)
    a = keras.ops.convert_to_numpy(getattr(layer, names[0])).astype("float32")
    b = keras.ops.convert_to_numpy(getattr(layer, names[1])).astype("float32")
    update = np.tensordot(a, b, axes=([a.ndim - 1], [0]))
    merged = base + scale_of(layer) * update.reshape(base.shape)
    if is_dora(layer):
        magnitude = keras.ops.convert_to_numpy(layer.dora_magnitude)
        norm = np.sqrt(np.sum(np.square(merged), axis=norm_axes(layer), keepdims=True))
        merged = merged * (magnitude / norm)
    return merged


def check_rank(rank, name="rank"):
    if (
        isinstance(rank, bool)
        or not isinstance(rank, numbers.Integral)
        or rank < 1
    ):
        raise ValueError(
            f"`{name}` must be a positive integer. Received: {name}={rank!r}"
        )
    return int(rank)


def check_alpha(alpha):
    if alpha is None:
        return None
    if (
        isinstance(alpha, bool)
        or not isinstance(alpha, numbers.Real)
        or not math.isfinite(float(alpha))
        or alpha <= 0
    ):
        raise ValueError(
            "`alpha` must be a positive number or None (None gives alpha=rank, "
            f"a scale of 1). Received: alpha={alpha!r}"
        )
    return float(alpha) if not float(alpha).is_integer() else int(alpha)


def check_rank_fits(layer, path, rank, factoring=None):
    rows, cols = lora_dims(layer, factoring)
    if rank > min(rows, cols):
        raise ValueError(
            f"`rank` must be at most {min(rows, cols)} for layer '{path}' "
            f"({type(layer).__name__}, update of shape {rows}x{cols}). "
            f"Received: rank={rank}"
        )


def check_model(model, name="model"):
    if not isinstance(model, keras.layers.Layer):
        raise ValueError(
            f"`{name}` must be a Keras model or layer. Received: {name}={model!r}"
        )
    if not model.built:
        raise ValueError(
            f"`{name}` must be built (call it once, or build it) before adapters "
            f"can be added or loaded. Received: an unbuilt {type(model).__name__}"
        )


def count(variables):
    return int(sum(math.prod(v.shape) for v in variables))


def reset_traced_functions(model):
    """Drop the traced train/test/predict functions of `model` (if any).

    They read the layers' weights as they were when traced: a predict
    function traced before adapters were added or merged would ignore them.
    """
    for name in ("train_function", "test_function", "predict_function"):
        if getattr(model, name, None) is not None:
            setattr(model, name, None)
