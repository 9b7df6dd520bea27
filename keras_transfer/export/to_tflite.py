"""`to_tflite`: a TFLite (LiteRT) flatbuffer with a parity check."""

import os
import tempfile
import warnings

import keras
import numpy as np

from keras_transfer.api_export import keras_transfer_export
from keras_transfer.export import _parity, _paths
from keras_transfer.export.export_result import ExportResult
from keras_transfer.export.parity_error import ParityError
from keras_transfer.utils.backend import require_tensorflow_backend
from keras_transfer.utils.optional import require

QUANTIZATIONS = (None, "dynamic", "float16", "int8")
SERVING_SIGNATURE = "serving_default"


@keras_transfer_export("keras_transfer.export.to_tflite")
def to_tflite(
    model,
    path,
    quantization=None,
    representative_data=None,
    overwrite=False,
    parity_inputs=None,
    evaluation_data=None,
    check_parity=True,
    parity_atol=None,
    num_parity_samples=4,
    max_calibration_samples=100,
    allow_select_tf_ops=False,
    input_signature=None,
    seed=0,
):
    """Export a Keras model as a TFLite model and check it matches the model.

    The model's forward pass is written as a SavedModel (Keras'
    `ExportArchive`) into a temporary directory and converted with
    `tf.lite.TFLiteConverter.from_saved_model`, using TFLite builtin ops only
    unless `allow_select_tf_ops=True` (select TF ops need the Flex delegate,
    which the plain LiteRT interpreter does not have). The flatbuffer has one
    signature, `"serving_default"`, with float inputs and outputs in every
    quantization mode.

    Mixed-precision models (`"mixed_float16"`, `"mixed_bfloat16"`) are
    converted from a float32 copy with the same weights, since TFLite CPU
    kernels compute in float32; the parity tolerance then follows the
    model's 16-bit compute dtype.

    As for `to_saved_model`, a model with an `inference_model()` method is
    exported through that method, and the file is written to a temporary
    sibling of `path` and only moved into place after the parity check.

    Parity: the file is loaded with the LiteRT interpreter
    (`ai_edge_litert.interpreter.Interpreter`) and its signature is run on
    `parity_inputs` (or random normal rows for float inputs). An unquantized
    export must match within `parity_atol` or `ParityError` is raised. A
    quantized export is not held to a tolerance (`parity_ok` is `None`): the
    result reports `max_abs_diff`, the argmax agreement on the parity inputs
    and, when `evaluation_data=(x, y)` is given, the accuracy of the Keras
    model and of the artifact on it and their difference.

    Args:
        model: A built `keras.Model` (functional or Sequential; subclassed
            models need `input_signature`).
        path: String or path-like. File to write the `.tflite` model to.
        quantization: `None`, `"dynamic"`, `"float16"` or `"int8"`. `None`
            keeps float32. `"dynamic"`: int8 weights, float activations.
            `"float16"`: float16 weights. `"int8"`: int8 weights and
            activations calibrated on `representative_data` (ops without an
            int8 kernel stay float), float inputs and outputs.
        representative_data: Array or structure of arrays matching the model
            inputs (rows are fed one at a time), or a callable returning an
            iterable of samples as `TFLiteConverter.representative_dataset`
            expects. Required for `"int8"`.
        overwrite: Boolean. Replace a non-empty existing `path`. Defaults to
            `False`, which refuses with a `ValueError`.
        parity_inputs: Optional array or structure of arrays: rows to compare
            on. Required when an input is not float.
        evaluation_data: Optional tuple `(x, y)` of held-out data with integer
            or one-hot labels, to report the accuracy change of a quantized
            export.
        check_parity: Boolean. Run the parity check. Defaults to `True`.
        parity_atol: Optional float. Absolute tolerance for unquantized
            exports. Defaults to `None`: 1e-4 for float32 models, and for
            mixed-precision models 1e-2 (float16) or 6e-2 (bfloat16) times
            `max(1, max |output|)`.
        num_parity_samples: Integer. Rows of random parity inputs.
        max_calibration_samples: Integer. At most this many rows of
            `representative_data` are used for int8 calibration.
        allow_select_tf_ops: Boolean. Allow TensorFlow ops without a TFLite
            builtin (the artifact then needs the Flex delegate; the parity
            check will fail with the plain LiteRT interpreter).
        input_signature: Optional `keras.InputSpec` or `tf.TensorSpec` (or a
            structure of them) of the single argument of `model.call`, for
            models without symbolic inputs (subclassed models).
        seed: Integer. Seed of the random parity inputs.

    Returns:
        An `ExportResult` with `format="tflite"`.

    Examples:

        >>> import tempfile, os
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
        >>> path = os.path.join(tempfile.mkdtemp(), "model.tflite")
        >>> result = to_tflite(model, path)
        >>> result.format, result.parity_ok, result.max_abs_diff < 1e-4
        ('tflite', True, True)
        >>> x = np.random.normal(size=(16, 4)).astype("float32")
        >>> quantized = to_tflite(model, path, quantization="int8",
        ...                       representative_data=x, overwrite=True)
        >>> quantized.quantization, quantized.parity_ok
        ('int8', None)
    """
    require_tensorflow_backend(
        "`to_tflite` (TensorFlow export)",
        "Export from TensorFlow: save the model with `model.save('model.keras')`, "
        "load it in a process with KERAS_BACKEND=tensorflow and call "
        "`keras_transfer.export.to_tflite` there (a `.keras` file loads on every "
        "backend).",
    )
    if quantization not in QUANTIZATIONS:
        raise ValueError(
            "`quantization` must be one of None, 'dynamic', 'float16', 'int8'. "
            f"Received: quantization={quantization!r}"
        )
    if quantization == "int8" and representative_data is None:
        raise ValueError(
            "`representative_data` is required for quantization='int8': the "
            "converter calibrates the activation ranges on it. Pass a few "
            "hundred typical input rows (e.g. from the training set), "
            "representative_data=x_train[:200]. Received: "
            "representative_data=None"
        )
    if evaluation_data is not None and (
        not isinstance(evaluation_data, (tuple, list)) or len(evaluation_data) != 2
    ):
        raise ValueError(
            "`evaluation_data` must be a tuple `(x, y)` of held-out inputs and "
            f"labels. Received: evaluation_data of type "
            f"{type(evaluation_data).__name__}"
        )
    if not isinstance(max_calibration_samples, int) or max_calibration_samples < 1:
        raise ValueError(
            "`max_calibration_samples` must be an integer >= 1. Received: "
            f"max_calibration_samples={max_calibration_samples!r}"
        )
    plan = _parity.prepare(
        model, path, overwrite, input_signature, check_parity, parity_atol,
        num_parity_samples, parity_inputs, seed,
    )
    exported, used_inference_model = plan.model, plan.used_inference_model
    input_signature, specs, path, inputs = (
        plan.input_signature, plan.specs, plan.path, plan.inputs
    )
    compute_dtype = _parity.compute_dtype_of(exported)

    with _paths.staged(path) as target:
        flatbuffer = _convert(
            _float32_twin(exported) if compute_dtype != "float32" else exported,
            specs,
            quantization,
            representative_data,
            max_calibration_samples,
            allow_select_tf_ops,
            input_signature,
        )
        with open(target, "wb") as f:
            f.write(flatbuffer)
        result = {"max_abs_diff": None, "parity_ok": None, "tolerance": None,
                  "argmax_agreement": None, "num_parity_samples": 0}
        if check_parity:
            runner = _Runner(target, specs)
            reference = _parity.named_outputs(plan.reference(inputs, training=False))
            diff, worst, agreement = _parity.compare(reference, runner(inputs))
            result.update(
                max_abs_diff=diff,
                argmax_agreement=agreement,
                num_parity_samples=len(keras.tree.flatten(inputs)[0]),
            )
            if quantization is None:
                tolerance = parity_atol
                if tolerance is None:
                    tolerance = _parity.default_tolerance(compute_dtype, reference)
                result.update(tolerance=tolerance, parity_ok=diff <= tolerance)
                if not diff <= tolerance:
                    raise ParityError(
                        "The TFLite export of `model` does not match the Keras "
                        f"model: largest absolute difference {diff:.3g} on "
                        f"output {worst!r} exceeds the tolerance "
                        f"{tolerance:.3g}. Nothing was written to {path!r}. "
                        "Pass `check_parity=False` to write it anyway, or a "
                        "larger `parity_atol`.",
                        result=result,
                    )
        if evaluation_data is not None:
            result.update(_evaluate(plan.reference, _Runner(target, specs),
                                    evaluation_data))
        size = os.path.getsize(target)

    return ExportResult(
        path=path,
        format="tflite",
        size_bytes=size,
        quantization=quantization,
        used_inference_model=used_inference_model,
        **result,
    )


def _convert(model, specs, quantization, representative_data,
             max_calibration_samples, allow_select_tf_ops, input_signature):
    import tensorflow as tf

    with tempfile.TemporaryDirectory() as saved_model_dir:
        model.export(
            saved_model_dir,
            format="tf_saved_model",
            verbose=False,
            input_signature=input_signature,
        )
        converter = tf.lite.TFLiteConverter.from_saved_model(
            saved_model_dir, signature_keys=[SERVING_SIGNATURE]
        )
        ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if quantization == "dynamic":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        elif quantization == "float16":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_types = [tf.float16]
        elif quantization == "int8":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            loaded = tf.saved_model.load(saved_model_dir)
            names = list(
                loaded.signatures[SERVING_SIGNATURE].structured_input_signature[1]
            )
            converter.representative_dataset = _representative_dataset(
                representative_data, specs, names, max_calibration_samples
            )
            ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
        if allow_select_tf_ops:
            ops.append(tf.lite.OpsSet.SELECT_TF_OPS)
        converter.target_spec.supported_ops = ops
        converter.experimental_enable_resource_variables = True
        with warnings.catch_warnings():
            # int8 calibration runs TF's own (deprecated) tf.lite.Interpreter.
            warnings.filterwarnings(
                "ignore", message=".*tf.lite.Interpreter is deprecated"
            )
            return converter.convert()


def _representative_dataset(data, specs, names, max_samples):
    if callable(data):
        return data
    arrays = [np.asarray(a) for a in keras.tree.flatten(data)]
    if len(arrays) != len(specs):
        raise ValueError(
            f"`representative_data` must match the {len(specs)} input(s) of "
            f"`model` ({[s[0] for s in specs]}). Received {len(arrays)} "
            "array(s)."
        )
    count = min(len(arrays[0]), max_samples)
    dtypes = [dtype if dtype != "bfloat16" else "float32" for _, _, dtype in specs]

    def generate():
        for i in range(count):
            rows = [a[i : i + 1].astype(d) for a, d in zip(arrays, dtypes)]
            yield _parity.named_inputs(specs, rows, names)

    return generate


class _Runner:
    """Runs a `.tflite` file's serving signature with the LiteRT interpreter."""

    def __init__(self, path, specs):
        interpreter_module = require(
            "ai_edge_litert.interpreter", "running TFLite models with LiteRT"
        )
        self.interpreter = interpreter_module.Interpreter(model_path=path)
        signature = self.interpreter.get_signature_list()[SERVING_SIGNATURE]
        self.names = list(signature["inputs"])
        self.runner = self.interpreter.get_signature_runner(SERVING_SIGNATURE)
        details = self.runner.get_input_details()
        self.dtypes = {name: details[name]["dtype"] for name in self.names}
        self.specs = specs

    def __call__(self, inputs):
        feeds = _parity.named_inputs(self.specs, inputs, self.names)
        outputs = self.runner(
            **{k: np.asarray(v, dtype=self.dtypes[k]) for k, v in feeds.items()}
        )
        return {k: np.asarray(v, dtype="float32") for k, v in outputs.items()}


def _evaluate(model, runner, evaluation_data, batch_size=64):
    x, y = evaluation_data
    keras_predictions = model.predict(x, batch_size=batch_size, verbose=0)
    keras_first = _parity.named_outputs(keras_predictions)
    first_name = sorted(keras_first)[0] if len(keras_first) > 1 else None
    flat = keras.tree.flatten(x)
    structure = x
    n = len(flat[0])
    chunks = []
    for start in range(0, n, batch_size):
        piece = keras.tree.pack_sequence_as(
            structure, [np.asarray(a)[start : start + batch_size] for a in flat]
        )
        outputs = runner(piece)
        key = first_name if first_name in outputs else sorted(outputs)[0]
        chunks.append(outputs[key])
    artifact_predictions = np.concatenate(chunks)
    reference = keras_first[first_name or sorted(keras_first)[0]]
    keras_accuracy = _parity.accuracy(reference, y)
    artifact_accuracy = _parity.accuracy(artifact_predictions, y)
    return {
        "keras_accuracy": keras_accuracy,
        "artifact_accuracy": artifact_accuracy,
        "accuracy_change": artifact_accuracy - keras_accuracy,
    }


def _float32_twin(model):
    """A float32 copy of a mixed-precision model, with the same weights."""
    serialized = keras.saving.serialize_keras_object(model)
    serialized = _float32_policies(serialized)
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    try:
        twin = keras.saving.deserialize_keras_object(serialized)
    except Exception as e:
        raise ValueError(
            "`model` computes in a 16-bit float dtype, and TFLite needs a "
            "float32 copy of it, but the model could not be rebuilt from its "
            f"config ({type(e).__name__}: {e}). Register its custom layers "
            "(`keras.saving.register_keras_serializable`), or build the model "
            "under the 'float32' policy and load the weights into it."
        ) from e
    finally:
        keras.mixed_precision.set_global_policy(previous)
    twin.set_weights(model.get_weights())
    return twin


def _float32_policies(node):
    if isinstance(node, dict):
        if node.get("class_name") in ("DTypePolicy", "FloatDTypePolicy"):
            name = node.get("config", {}).get("name", "")
            if name.startswith("mixed_"):
                return {**node, "config": {**node["config"], "name": "float32"}}
        return {k: _float32_policies(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_float32_policies(v) for v in node]
    return node
