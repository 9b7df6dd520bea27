"""Each reach of `keras_transfer._compat` into Keras internals still works."""

import keras
import numpy as np

from keras_transfer import _compat


def dense():
    layer = keras.layers.Dense(3)
    layer.build((None, 4))
    return layer


def test_unlocked_state_lets_a_built_layer_add_a_variable():
    layer = dense()
    with _compat.unlocked_state(layer):
        layer.extra = layer.add_weight(name="extra", shape=(2,), initializer="ones")
    assert "extra" in [v.name for v in layer.weights]


def test_remove_variables_untracks_them():
    layer = dense()
    layer.enable_lora(2)
    _compat.remove_variables(layer, ["lora_kernel_a", "lora_kernel_b"])
    assert [v.name for v in layer.weights] == ["kernel", "bias"]
    assert not hasattr(layer, "lora_kernel_a")


def test_set_class_swaps_to_a_subclass_and_back():
    class Sub(keras.layers.Dense):
        pass

    layer = dense()
    _compat.set_class(layer, Sub)
    assert type(layer) is Sub
    _compat.set_class(layer, keras.layers.Dense)
    assert type(layer) is keras.layers.Dense


def test_base_weight_is_the_unmerged_kernel():
    layer = dense()
    layer.enable_lora(2)
    layer.lora_kernel_b.assign(np.ones((2, 3)))
    base = _compat.base_weight(layer)
    assert base is not None and base.shape == (4, 3)
    assert not np.allclose(base.numpy(), layer.kernel.numpy())


def test_merged_quantized_kernel():
    layer = dense()
    layer.quantize("int8")
    layer.enable_lora(2)
    kernel, scale = _compat.merged_quantized_kernel(layer)
    assert kernel.dtype == "int8" and scale is not None


def test_freeze_variables_survives_trainable_toggles_and_keeps_order():
    norm = keras.layers.BatchNormalization()
    norm.build((None, 3))
    order = [v.name for v in norm.weights]
    frozen = _compat.freeze_variables(norm, keep_ids=set())
    assert [v.name for v in frozen] == ["gamma", "beta"]
    assert [v.name for v in norm.weights] == order  # saving order unchanged
    norm.trainable = True
    assert norm.trainable_weights == []
    layer = dense()
    _compat.freeze_variables(layer, keep_ids={id(layer.bias)})
    layer.trainable = False
    layer.trainable = True
    assert [v.name for v in layer.trainable_weights] == ["bias"]
    partial = keras.layers.LayerNormalization()
    partial.build((None, 3))
    _compat.freeze_variables(partial, keep_ids={id(partial.beta)}, partial=False)
    assert partial.trainable_weights == []
