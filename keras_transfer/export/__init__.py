"""Export to SavedModel and TFLite with a parity check.

- `to_saved_model(model, path)`: a TensorFlow SavedModel.
- `to_tflite(model, path, quantization=None)`: a TFLite (LiteRT) flatbuffer,
  float32 or quantized (`"dynamic"`, `"float16"`, `"int8"`).
- `ExportResult`: what was written and how closely it matches the model.
- `ParityError`: raised when a float export does not match the model.

A model with an `inference_model()` method is exported through it, so
training-only parts (domain discriminators, gradient reversal) stay out of
the artifact.
"""

from keras_transfer.export.export_result import ExportResult
from keras_transfer.export.parity_error import ParityError
from keras_transfer.export.to_saved_model import to_saved_model
from keras_transfer.export.to_tflite import to_tflite

__all__ = ["ExportResult", "ParityError", "to_saved_model", "to_tflite"]
