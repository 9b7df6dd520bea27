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


def supports_lora(layer):
    """Whether `layer` has Keras's own `enable_lora` and is built."""
    return callable(getattr(layer, "enable_lora", None))


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
    return tuple(int(d) for d in _compat.base_weight(layer).shape)


def is_conv(layer):
    return hasattr(layer, "kernel_size") and hasattr(layer, "filters")


def lora_dims(layer):
    """`(rows of A, columns of B)`: the two sides of Keras's low-rank update.

    Keras factors a kernel over its last axis: A spans every other axis
    (`kernel.shape[:-1] + (rank,)`), B is `(rank, kernel.shape[-1])`.
    """
    shape = weight_shape(layer)
    return math.prod(shape[:-1]), shape[-1]


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
    base = keras.ops.convert_to_numpy(_compat.base_weight(layer)).astype("float32")
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


def check_rank_fits(layer, path, rank):
    rows, cols = lora_dims(layer)
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
