"""Tests for `keras_transfer.export.ExportResult`."""

import keras
import pytest

from keras_transfer.export import ExportResult, ParityError
from tests.testing import run_serialization_test


def make_result(**overrides):
    fields = dict(
        path="/tmp/model.tflite",
        format="tflite",
        size_bytes=2048,
        max_abs_diff=0.01,
        quantization="int8",
        num_parity_samples=4,
        argmax_agreement=1.0,
        keras_accuracy=0.9,
        artifact_accuracy=0.875,
        accuracy_change=-0.025,
    )
    return ExportResult(**{**fields, **overrides})


def test_config_round_trip():
    result = make_result()
    revived = run_serialization_test(result)
    assert revived == result and revived.quantization == "int8"
    assert revived.parity_ok is None and revived.accuracy_change == -0.025


def test_registered_under_the_package():
    serialized = keras.saving.serialize_keras_object(make_result())
    assert serialized["registered_name"] == "keras_transfer>ExportResult"


def test_values_are_plain_python():
    import numpy as np

    result = make_result(max_abs_diff=np.float32(0.5), parity_ok=np.bool_(True))
    assert type(result.max_abs_diff) is float and result.parity_ok is True
    assert "max_abs_diff=0.5" in repr(result)
    assert result != make_result()


def test_parity_error_carries_the_figures():
    with pytest.raises(ParityError, match="apart") as info:
        raise ParityError("apart", result={"max_abs_diff": 2.0})
    assert info.value.result == {"max_abs_diff": 2.0}
    assert isinstance(info.value, RuntimeError)
