"""`ExportResult`: what an export wrote and how closely it matches the model."""

from keras_transfer.api_export import keras_transfer_export

_FIELDS = (
    "path",
    "format",
    "size_bytes",
    "max_abs_diff",
    "parity_ok",
    "tolerance",
    "quantization",
    "num_parity_samples",
    "argmax_agreement",
    "keras_accuracy",
    "artifact_accuracy",
    "accuracy_change",
    "used_inference_model",
)


@keras_transfer_export("keras_transfer.export.ExportResult")
class ExportResult:
    """The outcome of `to_saved_model` or `to_tflite`.

    Every export runs the same inputs through the Keras model and through the
    written artifact (loaded back the way a user would load it) and records how
    far apart the outputs are. Float exports must agree within `tolerance`;
    quantized TFLite exports have no tolerance (`parity_ok` is `None`) and
    report the argmax agreement and, when evaluation data was given, the
    accuracy of both sides.

    Args:
        path: String. Where the artifact was written.
        format: String. `"tf_saved_model"` or `"tflite"`.
        size_bytes: Integer. Size of the artifact on disk (all files of a
            SavedModel directory).
        max_abs_diff: Float. Largest absolute difference between the Keras
            outputs and the artifact outputs over all parity inputs and all
            outputs. `None` when the parity check was switched off.
        parity_ok: Boolean or `None`. Whether `max_abs_diff <= tolerance`.
            `None` for quantized exports and when the check was switched off.
        tolerance: Float or `None`. The absolute tolerance that applied.
        quantization: String or `None`. The TFLite quantization mode.
        num_parity_samples: Integer. How many input rows were compared.
        argmax_agreement: Float or `None`. Fraction of parity rows whose argmax
            over the last axis of the first output is the same on both sides.
        keras_accuracy: Float or `None`. Accuracy of the Keras model on the
            evaluation data.
        artifact_accuracy: Float or `None`. Accuracy of the artifact on the
            evaluation data.
        accuracy_change: Float or `None`. `artifact_accuracy - keras_accuracy`.
        used_inference_model: Boolean. Whether the model's `inference_model()`
            was exported instead of the model itself.

    Examples:

        >>> result = ExportResult(path="/tmp/m", format="tf_saved_model",
        ...                       size_bytes=1024, max_abs_diff=0.0, parity_ok=True,
        ...                       tolerance=1e-4)
        >>> result.parity_ok
        True
        >>> ExportResult.from_config(result.get_config()) == result
        True
    """

    def __init__(
        self,
        path: str,
        format: str,
        size_bytes: int,
        max_abs_diff: float | None = None,
        parity_ok: bool | None = None,
        tolerance: float | None = None,
        quantization: str | None = None,
        num_parity_samples: int = 0,
        argmax_agreement: float | None = None,
        keras_accuracy: float | None = None,
        artifact_accuracy: float | None = None,
        accuracy_change: float | None = None,
        used_inference_model: bool = False,
    ):
        self.path = str(path)
        self.format = format
        self.size_bytes = int(size_bytes)
        self.max_abs_diff = _float_or_none(max_abs_diff)
        self.parity_ok = None if parity_ok is None else bool(parity_ok)
        self.tolerance = _float_or_none(tolerance)
        self.quantization = quantization
        self.num_parity_samples = int(num_parity_samples)
        self.argmax_agreement = _float_or_none(argmax_agreement)
        self.keras_accuracy = _float_or_none(keras_accuracy)
        self.artifact_accuracy = _float_or_none(artifact_accuracy)
        self.accuracy_change = _float_or_none(accuracy_change)
        self.used_inference_model = bool(used_inference_model)

    def get_config(self):
        return {name: getattr(self, name) for name in _FIELDS}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __eq__(self, other):
        return isinstance(other, ExportResult) and (
            self.get_config() == other.get_config()
        )

    def __repr__(self):
        parts = [f"{name}={getattr(self, name)!r}" for name in _FIELDS]
        return f"ExportResult({', '.join(parts)})"


def _float_or_none(value):
    return None if value is None else float(value)
