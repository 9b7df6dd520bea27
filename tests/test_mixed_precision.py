"""Mixed-precision models export with parity; their variables stay float32."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

from keras_transfer.export import to_saved_model, to_tflite


@pytest.fixture(params=["mixed_float16", "mixed_bfloat16"])
def policy(request):
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(request.param)
    try:
        yield request.param
    finally:
        keras.mixed_precision.set_global_policy(previous)


def mixed_model():
    x = keras.Input((12,), name="x")
    h = keras.layers.Dense(32, activation="relu")(x)
    h = keras.layers.BatchNormalization()(h)
    return keras.Model(x, keras.layers.Dense(5)(h))


def fitted_mixed_model():
    model = mixed_model()
    x = np.random.normal(size=(32, 12)).astype("float32")
    y = np.random.randint(0, 5, size=(32,))
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    return model, x


def test_saved_model_keeps_compute_dtype_and_float32_variables(tmp_path, policy):
    model, x = fitted_mixed_model()
    compute = policy.split("_")[1]
    assert model.layers[1].compute_dtype == compute
    assert all(v.dtype == "float32" for v in model.variables)
    path = str(tmp_path / "sm")
    result = to_saved_model(model, path, parity_inputs=x[:4])
    assert result.parity_ok
    # Same graph in the same dtype (fused differently when traced): within a
    # few units in the last place of the 16-bit compute dtype.
    reference = np.asarray(model(x[:4], training=False), dtype="float32")
    ulp = {"float16": 2.0**-10, "bfloat16": 2.0**-7}[compute]
    ulp *= 2.0 ** np.ceil(np.log2(max(1.0, float(np.abs(reference).max()))))
    assert result.tolerance > 1e-4 and result.max_abs_diff <= 2 * ulp, (
        result.max_abs_diff, ulp)
    loaded = tf.saved_model.load(path)
    assert loaded.variables and all(v.dtype == tf.float32 for v in loaded.variables)
    outputs = loaded.signatures["serving_default"](x=tf.constant(x))["output_0"]
    assert outputs.dtype == compute
    # The global policy was not changed by the export.
    assert keras.mixed_precision.global_policy().name == policy


def test_tflite_converts_a_float32_twin_within_dtype_tolerance(tmp_path, policy):
    model, x = fitted_mixed_model()
    path = str(tmp_path / "m.tflite")
    result = to_tflite(model, path, parity_inputs=x[:8])
    assert result.parity_ok and result.argmax_agreement >= 0.75
    reference = np.asarray(model.predict(x, verbose=0), dtype="float32")
    scale = max(1.0, float(np.abs(reference).max()))
    assert result.tolerance == pytest.approx(
        {"mixed_float16": 1e-2, "mixed_bfloat16": 6e-2}[policy] * scale, rel=0.5
    )
    interpreter = Interpreter(model_path=path)
    runner = interpreter.get_signature_runner("serving_default")
    exported = runner(x=x)["output_0"]
    assert exported.dtype == np.float32
    assert np.max(np.abs(exported - reference)) <= result.tolerance
    assert keras.mixed_precision.global_policy().name == policy
    assert all(v.dtype == "float32" for v in model.variables)


def test_a_wrong_tolerance_is_caught(tmp_path, policy):
    # A 16-bit model compared with a float32 artifact is not within 1e-7:
    # the check uses the tolerance it is given.
    model, x = fitted_mixed_model()
    from keras_transfer.export import ParityError

    with pytest.raises(ParityError):
        to_tflite(model, str(tmp_path / "m.tflite"), parity_inputs=x[:8],
                  parity_atol=1e-7)


class UnregisteredForMixedTest(keras.layers.Layer):
    """Test helper: a custom layer that is NOT registered for serialization."""

    def call(self, x):
        return x * 2.0


def test_unrebuildable_mixed_model_gets_a_clear_tflite_error(tmp_path, policy):
    x = keras.Input((4,), name="x")
    model = keras.Model(x, keras.layers.Dense(2)(UnregisteredForMixedTest()(x)))
    with pytest.raises(ValueError, match="`model` computes in a 16-bit float"):
        to_tflite(model, str(tmp_path / "m.tflite"))
    assert list(tmp_path.iterdir()) == []
    # The SavedModel export does not need the float32 copy.
    assert to_saved_model(model, str(tmp_path / "sm")).parity_ok
