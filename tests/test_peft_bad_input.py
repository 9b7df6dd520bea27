"""Bad input to the PEFT functions: a clear error, and the model unchanged."""

import re

import keras
import numpy as np
import pytest

from keras_transfer.peft import enable_lora, load_adapters, merge_lora, save_adapters
from tests.testing import weights_snapshot


def mlp():
    inputs = keras.Input((6,))
    h = keras.layers.Dense(12, name="body")(inputs)
    outputs = keras.layers.Dense(3, name="head")(h)
    return keras.Model(inputs, outputs)


def state(model):
    return (
        [v.path for v in model.weights],
        [v.trainable for v in model.weights],
        weights_snapshot(model.weights),
        [type(layer) for layer in model.layers],
    )


def assert_same(model, before):
    after = state(model)
    assert after[0] == before[0] and after[1] == before[1] and after[3] == before[3]
    for path, value in before[2].items():
        np.testing.assert_array_equal(after[2][path], value)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"rank": 0}, "`rank` must be a positive integer. Received: rank=0"),
        ({"rank": -2}, "Received: rank=-2"),
        ({"rank": 2.5}, "Received: rank=2.5"),
        ({"rank": 4}, "`rank` must be at most 3 for layer 'head'"),
        ({"alpha": -1.0}, "`alpha` must be a positive number"),
        ({"targets": "nothing_like_this"}, "`targets` matched no layer"),
        ({"targets": 3}, "`targets` must be group names"),
        ({"dropout": 1.0}, "`dropout` must be a number in [0, 1)"),
        ({"dropout": -0.1}, "Received: dropout=-0.1"),
        ({"factoring": "rows"}, "`factoring` must be one of"),
        ({"dora": True, "dropout": 0.1}, "`dora=True` works with Keras's factoring"),
        ({"targets": "body", "dora": "yes"}, "`dora` must be a boolean"),
    ],
)
def test_bad_arguments_name_the_argument_and_leave_the_model(kwargs, message):
    model = mlp()
    before = state(model)
    with pytest.raises(ValueError, match=re.escape(message)):
        enable_lora(model, **kwargs)
    assert_same(model, before)


def test_nothing_matched_lists_what_exists():
    model = mlp()
    with pytest.raises(ValueError, match=r"support LoRA: \['body', 'head'\]"):
        enable_lora(model, targets="conv")


def test_enable_lora_twice_on_one_layer():
    model = mlp()
    enable_lora(model, rank=2, targets="body")
    before = state(model)
    with pytest.raises(ValueError, match="already has adapters on layer 'body'"):
        enable_lora(model, rank=2, targets=["head", "body"])
    assert_same(model, before)  # 'head' did not get adapters either


def test_dora_on_an_unsupported_layer():
    inputs = keras.Input((5,), dtype="int32")
    outputs = keras.layers.Embedding(10, 4, name="emb")(inputs)
    model = keras.Model(inputs, outputs)
    before = state(model)
    with pytest.raises(ValueError, match="`dora=True` supports .* layer 'emb'"):
        enable_lora(model, rank=2, targets="emb", dora=True)
    assert_same(model, before)


def test_unbuilt_model():
    with pytest.raises(ValueError, match="`model_or_layer` must be built"):
        enable_lora(keras.layers.Dense(3))
    with pytest.raises(ValueError, match="`model_or_layer` must be a Keras model"):
        enable_lora("model")


def test_merge_without_adapters():
    model = mlp()
    before = state(model)
    with pytest.raises(ValueError, match="`model` has no LoRA or DoRA adapters"):
        merge_lora(model)
    assert_same(model, before)


def test_load_adapters_of_another_rank(tmp_path):
    trained = mlp()
    enable_lora(trained, rank=2, targets="body")
    path = str(tmp_path / "a.npz")
    save_adapters(trained, path)
    other = mlp()
    enable_lora(other, rank=3, targets="body")
    before = state(other)
    with pytest.raises(ValueError, match="`rank` of the saved adapters of layer"):
        load_adapters(other, path)
    assert_same(other, before)


def test_load_adapters_onto_the_wrong_base(tmp_path):
    trained = mlp()
    enable_lora(trained, rank=2, targets="body", train="head")
    path = str(tmp_path / "a.npz")
    save_adapters(trained, path)
    # Missing layer.
    inputs = keras.Input((6,))
    wrong = keras.Model(inputs, keras.layers.Dense(3, name="other")(inputs))
    before = state(wrong)
    with pytest.raises(ValueError, match="layer 'body', which `model` does not have"):
        load_adapters(wrong, path)
    assert_same(wrong, before)
    # Same names, other shapes.
    inputs = keras.Input((7,))
    h = keras.layers.Dense(12, name="body")(inputs)
    wider = keras.Model(inputs, keras.layers.Dense(3, name="head")(h))
    before = state(wider)
    with pytest.raises(ValueError, match="Layer 'body' of `model` has a weight of"):
        load_adapters(wider, path)
    assert_same(wider, before)
    # Not an adapter file.
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a file")
    with pytest.raises(ValueError, match="`path` is not an adapter file"):
        load_adapters(mlp(), str(bad))


def test_dropout_and_matrix_factoring_on_unsupported_layers():
    inputs = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(4, 1, name="pw")(inputs)
    h = keras.layers.DepthwiseConv2D(3, name="dw")(h)
    model = keras.Model(inputs, h)
    before = state(model)
    for target in ("pw", "dw"):
        expected = f"`dropout` is supported on .* '{target}'"
        with pytest.raises(ValueError, match=expected):
            enable_lora(model, rank=1, targets=target, dropout=0.1)
        assert_same(model, before)
    inputs = keras.Input((4, 6))
    # The kernel's leading axis is an output axis: no input x output matrix.
    h = keras.layers.EinsumDense("abc,dc->abd", output_shape=(None, 5), name="t")(
        inputs
    )
    model = keras.Model(inputs, h)
    before = state(model)
    with pytest.raises(ValueError, match="`factoring='matrix'` needs .* 't'"):
        enable_lora(model, rank=2, targets="t", factoring="matrix")
    assert_same(model, before)


def test_depthwise_rank_is_bounded_by_its_window():
    inputs = keras.Input((8, 8, 6))
    model = keras.Model(inputs, keras.layers.DepthwiseConv2D(2, name="dw")(inputs))
    before = state(model)
    with pytest.raises(ValueError, match="`rank` must be at most 4 for layer 'dw'"):
        enable_lora(model, rank=5, targets="dw")
    assert_same(model, before)
