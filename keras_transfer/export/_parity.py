"""What to export, which inputs to compare on, and how to compare outputs.

Shared by `to_saved_model` and `to_tflite`:

- `resolve_model`: the inference-model protocol (`model.inference_model()`).
- `input_specs`: the model's inputs as `(name, shape, dtype)`, checked.
- `make_parity_inputs`: given inputs, or random normal rows for float inputs.
- `named_inputs` / `named_outputs`: match Keras structures to the names of an
  artifact's serving signature.
- `compare`: largest absolute difference and argmax agreement.
"""

import collections

import keras
import numpy as np

FLOAT32_ATOL = 1e-4
# Relative tolerances for models computing in a 16-bit float dtype: a few
# units in the last place of the compute dtype, times the output scale.
_MIXED_RTOL = {"float16": 1e-2, "bfloat16": 6e-2}
UNKNOWN_DIM_SIZE = 16


def resolve_model(model):
    """Return `(model_to_export, used_inference_model)`."""
    if not isinstance(model, keras.Model):
        raise ValueError(
            "`model` must be a `keras.Model`. Received: "
            f"model={model!r} of type {type(model).__name__}"
        )
    inference_model = getattr(model, "inference_model", None)
    if callable(inference_model):
        exported = inference_model()
        if not isinstance(exported, keras.Model):
            raise ValueError(
                "`model.inference_model()` must return a `keras.Model` (the "
                "model without its training-only parts). Received: "
                f"{exported!r} of type {type(exported).__name__}"
            )
        return exported, True
    return model, False


def input_structure(model, input_signature=None):
    """The model's input structure: `model.input`, or `input_signature`."""
    if input_signature is not None:
        return normalize_input_signature(input_signature)[0]
    inputs = getattr(model, "inputs", None)
    if not inputs:
        raise ValueError(
            f"`model` ({model.name!r}, {type(model).__name__}) has no symbolic "
            "inputs, so its input shapes are unknown. Export a functional or "
            "Sequential model (built with `keras.Input`), or pass "
            "`input_signature` (a structure of `keras.InputSpec` or "
            "`tf.TensorSpec`)."
        )
    try:
        return model.input
    except AttributeError:
        # A Sequential model has `inputs` but no `input` node.
        return inputs[0] if len(inputs) == 1 else list(inputs)


def normalize_input_signature(input_signature):
    """`input_signature` as Keras' exporters take it: one entry per argument."""
    if input_signature is None:
        return None
    if not isinstance(input_signature, (list, tuple)):
        input_signature = [input_signature]
    if len(input_signature) != 1:
        raise ValueError(
            "`input_signature` must be a list with one entry: the spec (or "
            "structure of specs) of the single argument of `model.call`. "
            f"Received {len(input_signature)} entries."
        )
    return list(input_signature)


def input_specs(model, input_signature=None):
    """Flat list of `(name, shape, dtype)` of the model's inputs, checked."""
    structure = input_structure(model, input_signature)
    specs = []
    for i, leaf in enumerate(keras.tree.flatten(structure)):
        name, shape, dtype = _describe(leaf)
        name = name or f"input_{i}"
        if shape is None:
            raise ValueError(
                f"`model` input {name!r} has unknown rank (shape=None). An "
                "exported artifact needs inputs of known rank: give this input "
                "a shape, e.g. `keras.Input(shape=(None, 3))` (use `None` for "
                "sizes that vary)."
            )
        specs.append((name, tuple(shape), dtype))
    return specs


def _describe(leaf):
    shape = getattr(leaf, "shape", None)
    if shape is not None and not isinstance(shape, tuple):
        # tf.TensorShape
        shape = None if shape.rank is None else tuple(shape.as_list())
    dtype = getattr(leaf, "dtype", None)
    dtype = getattr(dtype, "name", dtype)
    return getattr(leaf, "name", None), shape, keras.backend.standardize_dtype(
        dtype or "float32"
    )


def make_parity_inputs(model, specs, parity_inputs, num_samples, seed,
                       input_signature=None):
    """Inputs in the model's structure, as numpy arrays."""
    structure = input_structure(model, input_signature)
    if parity_inputs is not None:
        arrays = keras.tree.map_structure(np.asarray, parity_inputs)
        flat = keras.tree.flatten(arrays)
        if len(flat) != len(specs):
            raise ValueError(
                f"`parity_inputs` must match the {len(specs)} input(s) of "
                f"`model` ({[s[0] for s in specs]}). Received "
                f"{len(flat)} array(s)."
            )
        return arrays
    not_float = [(n, d) for n, _, d in specs if "float" not in d]
    if not_float:
        raise ValueError(
            "`parity_inputs` is required for this model: random parity inputs "
            "are only generated for float inputs, and `model` has inputs "
            f"{', '.join(f'{n!r} of dtype {d}' for n, d in not_float)}. Pass "
            "`parity_inputs` (a few real rows, in the model's input structure), "
            "or `check_parity=False` to skip the check."
        )
    rng = np.random.default_rng(seed)
    flat = []
    for _, shape, dtype in specs:
        row_shape = tuple(UNKNOWN_DIM_SIZE if d is None else d for d in shape[1:])
        values = rng.standard_normal((num_samples,) + row_shape)
        flat.append(values.astype("float32" if dtype == "bfloat16" else dtype))
    return keras.tree.pack_sequence_as(structure, flat)


def named_inputs(specs, arrays, artifact_names):
    """Map the flat Keras inputs to the artifact's signature input names."""
    flat = keras.tree.flatten(arrays)
    artifact_names = list(artifact_names)
    if len(flat) == 1 and len(artifact_names) == 1:
        return {artifact_names[0]: flat[0]}
    names = [name for name, _, _ in specs]
    if sorted(names) == sorted(artifact_names):
        return dict(zip(names, flat))
    raise RuntimeError(
        f"Cannot match the inputs of `model` {names} to the inputs of the "
        f"exported signature {artifact_names}. Give the model's inputs unique "
        "names (`keras.Input(..., name=...)`)."
    )


def named_outputs(outputs):
    """Keras outputs keyed the way the exported signature names them."""
    if isinstance(outputs, dict):
        return {
            str(k): _to_numpy(v) for k, v in zip(sorted(outputs), _sorted(outputs))
        }
    return {f"output_{i}": _to_numpy(v) for i, v in enumerate(keras.tree.flatten(
        outputs))}


def _sorted(d):
    return [d[k] for k in sorted(d)]


def _to_numpy(x):
    x = keras.ops.convert_to_numpy(keras.ops.cast(x, "float32"))
    return np.asarray(x)


def match_outputs(reference, artifact):
    """Pair up outputs by name; a single output pairs with a single output."""
    if len(reference) == 1 and len(artifact) == 1:
        (ref_name,) = reference
        (art_name,) = artifact
        return [(ref_name, reference[ref_name], artifact[art_name])]
    if sorted(reference) != sorted(artifact):
        raise RuntimeError(
            f"The exported signature has outputs {sorted(artifact)}, the Keras "
            f"model has outputs {sorted(reference)}."
        )
    return [(name, reference[name], artifact[name]) for name in sorted(reference)]


def compare(reference, artifact):
    """`(max_abs_diff, worst_output_name, argmax_agreement)`."""
    pairs = match_outputs(reference, artifact)
    worst, worst_name = 0.0, pairs[0][0]
    for name, ref, art in pairs:
        art = np.asarray(art, dtype="float32")
        if ref.shape != art.shape:
            raise RuntimeError(
                f"Output {name!r} of the artifact has shape {art.shape}, the "
                f"Keras model gives {ref.shape}."
            )
        diff = float(np.max(np.abs(ref - art))) if ref.size else 0.0
        if not np.isfinite(diff) or diff > worst:
            worst, worst_name = diff, name
    _, ref, art = pairs[0]
    agreement = None
    if ref.ndim >= 2 and ref.shape[-1] > 1:
        agreement = float(np.mean(np.argmax(ref, -1) == np.argmax(art, -1)))
    return worst, worst_name, agreement


def compute_dtype_of(model):
    """The lowest-precision float compute dtype used by any layer."""
    dtypes = set()
    for layer in _all_layers(model):
        dtype = getattr(layer, "compute_dtype", None)
        if dtype:
            dtypes.add(keras.backend.standardize_dtype(dtype))
    for low in ("bfloat16", "float16"):
        if low in dtypes:
            return low
    return "float32"


def _all_layers(model):
    seen = []
    stack = [model]
    while stack:
        layer = stack.pop()
        if any(layer is s for s in seen):
            continue
        seen.append(layer)
        stack.extend(getattr(layer, "layers", []) or [])
    return seen


def default_tolerance(compute_dtype, reference):
    """1e-4 for float32 models; scaled relative tolerance for 16-bit ones."""
    if compute_dtype not in _MIXED_RTOL:
        return FLOAT32_ATOL
    scale = max(1.0, max(float(np.max(np.abs(v))) for v in reference.values()))
    return _MIXED_RTOL[compute_dtype] * scale


def accuracy(predictions, y):
    """Argmax accuracy of `predictions` against labels or one-hot `y`."""
    predictions = np.asarray(predictions)
    y = np.asarray(y)
    if predictions.ndim >= 2 and predictions.shape[-1] > 1:
        predicted = np.argmax(predictions, -1)
    else:
        predicted = (predictions.reshape(len(predictions)) > 0.5).astype("int64")
    if y.ndim >= 2 and y.shape[-1] > 1:
        y = np.argmax(y, -1)
    return float(np.mean(predicted == y.reshape(len(y))))


def check_common(check_parity, parity_atol, num_parity_samples):
    if parity_atol is not None and not parity_atol >= 0:
        raise ValueError(
            f"`parity_atol` must be a float >= 0 or None. Received: "
            f"parity_atol={parity_atol!r}"
        )
    if not isinstance(num_parity_samples, int) or num_parity_samples < 1:
        raise ValueError(
            "`num_parity_samples` must be an integer >= 1. Received: "
            f"num_parity_samples={num_parity_samples!r}"
        )


ExportPlan = collections.namedtuple(
    "ExportPlan",
    [
        "model", "used_inference_model", "input_signature", "specs", "path",
        "inputs", "reference",
    ],
)


def prepare(
    model, path, overwrite, input_signature, check_parity, parity_atol,
    num_parity_samples, parity_inputs, seed,
):
    """Validate the arguments every exporter shares; pick the parity inputs.

    Nothing is written here: a bad argument fails before any file is touched.
    """
    from keras_transfer.export import _paths
    from keras_transfer.peft._merged_copy import merged_copy

    exported, used_inference_model = resolve_model(model)
    # LoRA/DoRA adapters are merged in a copy, so the artifact has exactly the
    # base architecture's weights; parity is checked against the adapted model.
    reference = exported
    exported = merged_copy(exported)
    input_signature = normalize_input_signature(input_signature)
    specs = input_specs(exported, input_signature)
    path = _paths.check_path(path, overwrite)
    check_common(check_parity, parity_atol, num_parity_samples)
    inputs = None
    if check_parity:
        inputs = make_parity_inputs(
            exported, specs, parity_inputs, num_parity_samples, seed,
            input_signature,
        )
    return ExportPlan(exported, used_inference_model, input_signature, specs, path,
                      inputs, reference)
