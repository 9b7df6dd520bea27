"""`to_saved_model`: a TensorFlow SavedModel with a parity check."""

import keras

from keras_transfer.api_export import keras_transfer_export
from keras_transfer.export import _parity, _paths
from keras_transfer.export.export_result import ExportResult
from keras_transfer.export.parity_error import ParityError
from keras_transfer.utils.backend import require_tensorflow_backend

SERVING_SIGNATURE = "serving_default"


@keras_transfer_export("keras_transfer.export.to_saved_model")
def to_saved_model(
    model,
    path,
    overwrite=False,
    parity_inputs=None,
    check_parity=True,
    parity_atol=None,
    num_parity_samples=4,
    input_signature=None,
    seed=0,
):
    """Export a Keras model as a SavedModel and check it matches the model.

    The SavedModel holds the forward pass only (Keras' `model.export(...,
    format="tf_saved_model")`), served under the `"serving_default"`
    signature and the `serve()` endpoint; loading it needs neither Keras nor
    the package. Custom layers, including layers that wrap a TF-Hub model or
    another SavedModel (`keras_transfer.layers.HubLayer`,
    `keras.layers.TFSMLayer`), are traced like built-in ones.

    Training-only parts stay out of the artifact: when `model` has a method
    `inference_model()` (as `keras_transfer.adaptation` models do; it returns
    the plain functional model without discriminator or gradient reversal),
    that model is exported instead.

    After writing, the artifact is loaded with `tf.saved_model.load` and its
    serving signature is run on `parity_inputs` (or, for float inputs, on
    random normal rows); the largest absolute difference to the Keras model
    must be within `parity_atol`, else `ParityError` is raised and nothing is
    written to `path`.

    The artifact is written to a temporary sibling of `path` first and only
    moved into place after the parity check passed: a failed export never
    destroys a previous artifact at `path`.

    Args:
        model: A built `keras.Model` (functional or Sequential; subclassed
            models need `input_signature`).
        path: String or path-like. Directory to write the SavedModel to.
        overwrite: Boolean. Replace a non-empty existing `path`. Defaults to
            `False`, which refuses with a `ValueError`.
        parity_inputs: Optional array, or structure of arrays matching the
            model inputs: a few rows to compare on. Required when an input is
            not float (token ids, strings). Defaults to `None` (random normal
            rows; unknown non-batch sizes become 16).
        check_parity: Boolean. Run the parity check. Defaults to `True`.
        parity_atol: Optional float. Absolute tolerance of the check. Defaults
            to `None`: 1e-4 for float32 models, and for mixed-precision models
            1e-2 (float16) or 6e-2 (bfloat16) times `max(1, max |output|)`.
        num_parity_samples: Integer. Rows of random parity inputs. Defaults
            to 4.
        input_signature: Optional `keras.InputSpec` or `tf.TensorSpec` (or a
            structure of them) of the single argument of `model.call`, for
            models without symbolic inputs (subclassed models).
        seed: Integer. Seed of the random parity inputs.

    Returns:
        An `ExportResult` with `format="tf_saved_model"`, the size on disk
        and the parity figures.

    Examples:

        >>> import tempfile, os
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
        >>> path = os.path.join(tempfile.mkdtemp(), "model")
        >>> result = to_saved_model(model, path)
        >>> result.parity_ok, result.max_abs_diff < 1e-4
        (True, True)
        >>> reloaded = tf.saved_model.load(path)
        >>> serve = reloaded.signatures["serving_default"]
        >>> names = serve.structured_input_signature[1]
        >>> tuple(serve(**{k: tf.zeros((1, 4)) for k in names})["output_0"].shape)
        (1, 2)
    """
    require_tensorflow_backend(
        "`to_saved_model` (TensorFlow export)",
        "Export from TensorFlow: save the model with `model.save('model.keras')`, "
        "load it in a process with KERAS_BACKEND=tensorflow and call "
        "`keras_transfer.export.to_saved_model` there (a `.keras` file loads on every "
        "backend).",
    )
    plan = _parity.prepare(
        model, path, overwrite, input_signature, check_parity, parity_atol,
        num_parity_samples, parity_inputs, seed,
    )
    exported, used_inference_model = plan.model, plan.used_inference_model
    input_signature, specs, path, inputs = (
        plan.input_signature, plan.specs, plan.path, plan.inputs
    )

    with _paths.staged(path) as target:
        exported.export(
            target,
            format="tf_saved_model",
            verbose=False,
            input_signature=input_signature,
        )
        result = {"max_abs_diff": None, "parity_ok": None, "tolerance": None,
                  "argmax_agreement": None, "num_parity_samples": 0}
        if check_parity:
            reference = _parity.named_outputs(plan.reference(inputs, training=False))
            artifact = _run_saved_model(target, specs, inputs)
            diff, worst, agreement = _parity.compare(reference, artifact)
            tolerance = parity_atol
            if tolerance is None:
                tolerance = _parity.default_tolerance(
                    _parity.compute_dtype_of(exported), reference
                )
            result.update(
                max_abs_diff=diff,
                parity_ok=diff <= tolerance,
                tolerance=tolerance,
                argmax_agreement=agreement,
                num_parity_samples=len(keras.tree.flatten(inputs)[0]),
            )
            if not diff <= tolerance:
                raise ParityError(
                    f"The SavedModel export of `model` does not match the "
                    f"Keras model: largest absolute difference {diff:.3g} on "
                    f"output {worst!r} exceeds the tolerance {tolerance:.3g}. "
                    f"Nothing was written to {path!r}. Pass "
                    "`check_parity=False` to write it anyway, or a larger "
                    "`parity_atol`.",
                    result=result,
                )
        size = _paths.artifact_size(target)

    return ExportResult(
        path=path,
        format="tf_saved_model",
        size_bytes=size,
        used_inference_model=used_inference_model,
        **result,
    )


def _run_saved_model(path, specs, inputs):
    """Outputs of the SavedModel's serving signature, as float32 numpy."""
    import tensorflow as tf

    loaded = tf.saved_model.load(path)
    signature = loaded.signatures[SERVING_SIGNATURE]
    names = list(signature.structured_input_signature[1])
    feeds = _parity.named_inputs(specs, inputs, names)
    dtypes = {
        name: spec.dtype
        for name, spec in signature.structured_input_signature[1].items()
    }
    outputs = signature(
        **{name: tf.constant(value, dtype=dtypes[name]) for name, value in
           feeds.items()}
    )
    return {
        name: tf.cast(value, tf.float32).numpy() for name, value in outputs.items()
    }
