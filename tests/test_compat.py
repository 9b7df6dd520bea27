"""Every Keras/TensorFlow internal that `keras_transfer._compat` reaches.

One check per reach runs the real internal on the installed Keras; when a
release moves it, the failure names the Keras version and the reach. A last
test keeps every other package file off Keras internals.
"""

import pathlib
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_transfer import _compat
from keras_transfer.distribute import enable_multi_worker_fit

PACKAGE = pathlib.Path(_compat.__file__).parent


def _dense_model():
    inputs = keras.Input((3,))
    x = keras.layers.Dense(4, name="body")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    outputs = keras.layers.Dense(2, name="head")(x)
    return keras.Model(inputs, outputs, name="net")


def check_flatten_layers():
    inner = _dense_model()
    outer = keras.Sequential([keras.Input((3,)), inner, keras.layers.Dense(1)])
    names = [layer.name for layer in _compat.flatten_layers(outer)]
    assert names[0] == outer.name, names
    assert {"net", "body", "bn", "head"} <= set(names), names
    assert len(names) == len(set(names)), names
    top = _compat.flatten_layers(outer, include_self=False, recursive=False)
    assert outer not in top and inner in top
    assert all(layer.name != "body" for layer in top)


def check_own_trainable_variables():
    model = _dense_model()
    model.trainable = False
    bn = model.get_layer("bn")
    own = {v.path for v in _compat.own_trainable_variables(bn)}
    assert own == {"bn/gamma", "bn/beta"}, own
    assert not bn.trainable_weights  # the public view is empty when frozen
    body = {v.path for v in _compat.own_trainable_variables(model.get_layer("body"))}
    assert body == {"body/kernel", "body/bias"}, body
    every = {v.path for v in _compat.trainable_kind_variables(model)}
    assert every == {
        "body/kernel", "body/bias", "bn/gamma", "bn/beta", "head/kernel", "head/bias"
    }, every


def check_model_building():
    from keras_transfer.optimizers import DiscriminativeLR

    model = _dense_model()
    model.get_layer("body").trainable = False
    # A regex on the frozen layer is accepted only when `build` finds the
    # model on the stack: Keras's trainer builds the optimizer from a method
    # of the model.
    optimizer = DiscriminativeLR(keras.optimizers.SGD(), multipliers={"body/": 0.5})
    model.compile(optimizer=optimizer, loss="mse")
    model.fit(np.ones((4, 3)), np.ones((4, 2)), epochs=1, verbose=0)
    assert optimizer.built
    assert _compat.model_building(optimizer) is None  # not while nothing builds


def check_track_variable():
    layer = keras.layers.Layer()
    kept = keras.Variable(np.ones(2, "float32"), trainable=True, name="kept")
    state = keras.Variable(np.zeros(2, "float32"), trainable=False, name="state")
    _compat.track_variable(layer, kept)
    _compat.track_variable(layer, state)
    assert layer.trainable_weights == [kept]
    assert layer.non_trainable_weights == [state]


def check_share_tf_variable():
    tf_variable = tf.Variable([1.0, 2.0])
    variable = keras.Variable(initializer="zeros", shape=(2,), dtype="float32")
    _compat.share_tf_variable(variable, tf_variable)
    variable.assign([5.0, 6.0])
    np.testing.assert_array_equal(tf_variable.numpy(), [5.0, 6.0])
    tf_variable.assign([7.0, 8.0])
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(variable), [7.0, 8.0])


def check_functional_nodes():
    model = _dense_model()
    assert _compat.is_functional(model)
    assert not _compat.is_functional(keras.Sequential([keras.layers.Dense(1)]))
    assert not _compat.is_functional(keras.layers.Dense(1))
    nodes = _compat.functional_nodes(model)
    assert nodes[0].is_input
    ops = [node.operation.name for node in nodes if not node.is_input]
    assert ops == ["body", "bn", "head"], ops
    # The node attributes `_graph.retrace` reads to call the layers again.
    head = nodes[-1]
    assert head.parent_nodes and head.parent_nodes[0].operation.name == "bn"
    tensor_map = {id(x): x for x in head.input_tensors}
    args, kwargs = head.arguments.fill_in(tensor_map)
    assert args[0] is head.input_tensors[0] and not kwargs
    assert head.outputs[0] is model.output


def check_producing_operation():
    unnamed, named = keras.Input((2,)), keras.Input((2,), name="pixels")
    model = keras.Model([unnamed, named], keras.layers.Add()([unnamed, named]))
    input_layers = [
        layer for layer in model.layers if isinstance(layer, keras.layers.InputLayer)
    ]
    produced = [_compat.producing_operation(x) for x in model.input]
    assert produced == input_layers, (produced, input_layers)
    assert produced[1].name == "pixels"
    assert produced[0].name != unnamed.name  # why `tensor.name` does not do


def _built_optimizer(cls=keras.optimizers.SGD, **kwargs):
    a = keras.Variable(np.ones((2, 2), "float32"), name="a")
    b = keras.Variable(np.ones(2, "float32"), name="b")
    optimizer = cls(**kwargs)
    optimizer.build([a, b])
    return optimizer, a, b


def check_variable_key():
    optimizer, a, b = _built_optimizer()
    assert _compat.variable_key(optimizer, a) == _compat.variable_key(optimizer, a)
    assert _compat.variable_key(optimizer, a) != _compat.variable_key(optimizer, b)
    # The TensorFlow backend keys the backend variable the same way.
    assert _compat.variable_key(optimizer, a.value) == _compat.variable_key(
        optimizer, a
    )


def check_built_variables():
    optimizer, a, b = _built_optimizer()
    assert _compat.built_variables(optimizer) == [a, b]


def check_knows_variable():
    optimizer, a, _ = _built_optimizer()
    other = keras.Variable(np.ones(2, "float32"))
    assert _compat.knows_variable(optimizer, a)
    assert not _compat.knows_variable(optimizer, other)


def check_check_variables_are_known():
    optimizer, a, b = _built_optimizer()
    _compat.check_variables_are_known(optimizer, [a, b])
    with pytest.raises(ValueError):
        _compat.check_variables_are_known(
            optimizer, [keras.Variable(np.ones(2, "float32"))]
        )


def check_variable_index():
    optimizer, a, b = _built_optimizer(keras.optimizers.Adam)
    assert _compat.variable_index(optimizer, a) == 0
    assert _compat.variable_index(optimizer, b) == 1
    # The position among the variables the optimizer was built with.
    built = _compat.built_variables(optimizer)
    assert built[_compat.variable_index(optimizer, b)] is b


def check_uses_weight_decay():
    optimizer = keras.optimizers.AdamW(weight_decay=0.1)
    optimizer.exclude_from_weight_decay(var_names=["bias"])
    kernel = keras.Variable(np.ones((2, 2), "float32"), name="kernel")
    bias = keras.Variable(np.ones(2, "float32"), name="bias")
    optimizer.build([kernel, bias])
    assert _compat.uses_weight_decay(optimizer, kernel)
    assert not _compat.uses_weight_decay(optimizer, bias)


def check_replace_update_step():
    optimizer, a, b = _built_optimizer(learning_rate=0.5)
    calls = []

    def update_step(gradient, variable, learning_rate):
        calls.append(_compat.variable_index(optimizer, variable))
        optimizer.assign(variable, variable + 10.0)

    _compat.replace_update_step(optimizer, update_step)
    optimizer.apply([keras.ops.ones((2, 2)), keras.ops.ones(2)], [a, b])
    assert sorted(calls) == [0, 1], calls
    np.testing.assert_allclose(keras.ops.convert_to_numpy(b), [11.0, 11.0])


def check_replace_stateless_apply():
    import inspect

    from keras.src.backend.jax import trainer as jax_trainer

    # The JAX trainer applies gradients through the instance's method (its
    # class is `JAXTrainer` in Keras 3.15 and `Trainer` in 3.16).
    trainer = getattr(jax_trainer, "JAXTrainer", None) or jax_trainer.Trainer
    source = inspect.getsource(trainer.train_step)
    assert "self.optimizer.stateless_apply(" in source, source
    optimizer, a, b = _built_optimizer(learning_rate=0.5)
    calls = []

    def stateless_apply(optimizer_variables, grads, trainable_variables):
        calls.append(len(trainable_variables))
        return list(trainable_variables), list(optimizer_variables)

    original = _compat.replace_stateless_apply(optimizer, stateless_apply)
    values = [keras.ops.convert_to_tensor(v) for v in optimizer.variables]
    optimizer.stateless_apply(values, [keras.ops.ones(2)], [b.value])
    assert calls == [1], calls
    assert callable(original)


def check_detached_by_trainer():
    import inspect

    from keras.src.backend.jax import trainer as jax_trainer

    try:
        from keras.src.backend.jax.core import Variable
    except ImportError:  # Keras 3.16 keeps it with the ops
        from keras.src.backend.jax.ops.core import Variable

    # The JAX trainer empties the variables as the first step of a run
    # begins (its class is `JAXTrainer` in Keras 3.15, `Trainer` in 3.16).
    trainer = getattr(jax_trainer, "JAXTrainer", None) or jax_trainer.Trainer
    purge = inspect.getsource(trainer._purge_model_variables)
    assert "v._value = None" in purge, purge
    for run in (trainer.fit, trainer.evaluate, trainer.predict):
        assert "purge_model_variables=True" in inspect.getsource(run), run
    variable = Variable(np.ones(2, "float32"))
    assert not _compat.detached_by_trainer(variable)
    variable._value = None  # what `_purge_model_variables` does
    assert _compat.detached_by_trainer(variable)
    # How `FirstStepSnapshot.restore` puts a value back: public `assign`.
    variable.assign(np.full(2, 3.0, "float32"))
    assert not _compat.detached_by_trainer(variable)
    np.testing.assert_array_equal(np.asarray(variable.value), [3.0, 3.0])
    assert not _compat.detached_by_trainer(keras.Variable(np.ones(2, "float32")))


def check_skip_apply_weight_decay():
    # Zero gradients: AdamW moves a variable by its weight decay alone.
    decayed, a, _ = _built_optimizer(
        keras.optimizers.AdamW, learning_rate=0.1, weight_decay=0.5
    )
    decayed.apply([keras.ops.zeros((2, 2)), keras.ops.zeros(2)])
    assert float(keras.ops.max(a)) < 1.0
    skipped, a, _ = _built_optimizer(
        keras.optimizers.AdamW, learning_rate=0.1, weight_decay=0.5
    )
    _compat.skip_apply_weight_decay(skipped)
    skipped.apply([keras.ops.zeros((2, 2)), keras.ops.zeros(2)])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(a), np.ones((2, 2)))


def check_concrete_function_arg_names(tmp_path):
    class Module(tf.Module):
        def __init__(self):
            super().__init__()
            self.scale = tf.Variable(2.0)

        @tf.function(
            input_signature=[tf.TensorSpec([None, 2]), tf.TensorSpec([], tf.bool)]
        )
        def __call__(self, x, training):
            return x * self.scale

    tf.saved_model.save(Module(), str(tmp_path))
    restored = tf.saved_model.load(str(tmp_path))
    (concrete,) = restored.__call__.concrete_functions
    assert _compat.concrete_function_arg_names(concrete) == ["x", "training"]
    # The public signature shows the tensor `training` by position only.
    assert "training" not in concrete.structured_input_signature[1]


def check_multi_worker_fit():
    trainer_cls, trainer_module = _compat._tensorflow_trainer()
    assert trainer_cls is not None, "no base of keras.Model builds symbolically"
    assert trainer_cls in keras.Model.__mro__
    assert hasattr(trainer_cls, "_symbolic_build")
    assert enable_multi_worker_fit() is True
    assert trainer_module.reduce_per_replica is not (
        _compat._MULTI_WORKER_PATCH["reduce"][1]
    )
    # Outside a multi-worker strategy the original reduction still runs.
    value = tf.constant([1.0, 3.0])
    strategy = tf.distribute.get_strategy()
    np.testing.assert_array_equal(
        trainer_module.reduce_per_replica(value, strategy, "auto"), value
    )


def check_deserialization_safe_mode():
    seen = []

    @keras.saving.register_keras_serializable(package="test_compat")
    class Probe(keras.layers.Layer):
        @classmethod
        def from_config(cls, config):
            seen.append(_compat.deserialization_safe_mode())
            return super().from_config(config)

    config = keras.saving.serialize_keras_object(Probe())
    assert _compat.deserialization_safe_mode() is None
    keras.saving.deserialize_keras_object(config)
    keras.saving.deserialize_keras_object(config, safe_mode=True)
    keras.saving.deserialize_keras_object(config, safe_mode=False)
    assert seen == [True, True, False]
    assert _compat.deserialization_safe_mode() is None


def check_metric_direction():
    assert _compat.metric_direction("accuracy") == "up"
    assert _compat.metric_direction("auc") == "up"
    assert _compat.metric_direction("kl_divergence") == "down"
    assert _compat.metric_direction("hinge") == "down"
    assert _compat.metric_direction("surely_no_such_metric") is None


def check_learning_rate_object():
    optimizer = keras.optimizers.Adam(1e-3)
    rate = _compat.learning_rate_object(optimizer)
    assert isinstance(rate, keras.Variable), _compat.KERAS_VERSION
    schedule = keras.optimizers.schedules.ExponentialDecay(1e-2, 10, 0.5)
    from keras_transfer.optimizers import DiscriminativeLR

    wrapped = DiscriminativeLR(keras.optimizers.SGD(schedule))
    assert _compat.learning_rate_object(wrapped) is schedule


def check_moving_average_of():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    optimizer = keras.optimizers.SGD(0.1, use_ema=True)
    model.compile(optimizer=optimizer, loss="mse")
    model.fit(np.ones((4, 2)), np.ones((4, 1)), epochs=1, verbose=0)
    kernel = model.layers[0].kernel
    average = _compat.moving_average_of(optimizer, kernel)
    assert average is not None and tuple(average.shape) == tuple(kernel.shape)
    other = keras.Variable(np.zeros(3))
    assert _compat.moving_average_of(optimizer, other) is None


def _small_dense():
    layer = keras.layers.Dense(3)
    layer.build((None, 4))
    return layer


def check_unlocked_state():
    layer = _small_dense()
    with _compat.unlocked_state(layer):
        layer.extra = layer.add_weight(name="extra", shape=(2,), initializer="ones")
    assert "extra" in [v.name for v in layer.weights]


def check_remove_variables():
    layer = _small_dense()
    layer.enable_lora(2)
    _compat.remove_variables(layer, ["lora_kernel_a", "lora_kernel_b"])
    assert [v.name for v in layer.weights] == ["kernel", "bias"]
    assert not hasattr(layer, "lora_kernel_a")


def check_set_class():
    class Sub(keras.layers.Dense):
        pass

    layer = _small_dense()
    _compat.set_class(layer, Sub)
    assert type(layer) is Sub
    _compat.set_class(layer, keras.layers.Dense)
    assert type(layer) is keras.layers.Dense


def check_base_weight():
    layer = _small_dense()
    layer.enable_lora(2)
    layer.lora_kernel_b.assign(np.ones((2, 3)))
    base = _compat.base_weight(layer)
    assert base is not None and base.shape == (4, 3)
    assert not np.allclose(base.numpy(), layer.kernel.numpy())


def check_merged_quantized_kernel():
    layer = _small_dense()
    layer.quantize("int8")
    layer.enable_lora(2)
    kernel, scale = _compat.merged_quantized_kernel(layer)
    assert kernel.dtype == "int8" and scale is not None


def check_freeze_variables():
    norm = keras.layers.BatchNormalization()
    norm.build((None, 3))
    order = [v.name for v in norm.weights]
    frozen = _compat.freeze_variables(norm, keep_ids=set())
    assert [v.name for v in frozen] == ["gamma", "beta"]
    assert [v.name for v in norm.weights] == order  # saving order unchanged
    norm.trainable = True
    assert norm.trainable_weights == []
    layer = _small_dense()
    _compat.freeze_variables(layer, keep_ids={id(layer.bias)})
    layer.trainable = False
    layer.trainable = True
    assert [v.name for v in layer.trainable_weights] == ["bias"]
    partial = keras.layers.LayerNormalization()
    partial.build((None, 3))
    _compat.freeze_variables(partial, keep_ids={id(partial.beta)}, partial=False)
    assert partial.trainable_weights == []


def check_instance_attribute():
    # A subclass shadows the plain `kernel` attribute of a built Keras layer
    # with a property; the variable stays reachable in the instance dict.
    class Doubled(keras.layers.DepthwiseConv2D):
        kernel = property(
            lambda self: 2.0 * _compat.instance_attribute(self, "kernel"),
            lambda self, value: _compat.set_instance_attribute(self, "kernel", value),
        )

    layer = keras.layers.DepthwiseConv2D(3, use_bias=False)
    x = np.ones((1, 4, 4, 2), "float32")
    out = keras.ops.convert_to_numpy(layer(x))
    variable = layer.kernel
    _compat.set_class(layer, Doubled)
    assert _compat.instance_attribute(layer, "kernel") is variable
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x)), 2 * out, rtol=1e-5)
    fresh = Doubled(3, use_bias=False)
    fresh.build((None, 4, 4, 2))  # Keras's build assigns through the property
    assert _compat.instance_attribute(fresh, "kernel") is fresh.weights[0]


CHECKS = {
    "Layer._flatten_layers": check_flatten_layers,
    "Layer._trainable_variables": check_own_trainable_variables,
    "Layer._track_variable": check_track_variable,
    "Variable._value": check_share_tf_variable,
    "Functional._nodes_by_depth": check_functional_nodes,
    "KerasTensor._keras_history": check_producing_operation,
    "Optimizer._var_key": check_variable_key,
    "Optimizer._trainable_variables": check_built_variables,
    "Optimizer._trainable_variables_indices": check_knows_variable,
    "Optimizer._get_variable_index": check_variable_index,
    "Optimizer._check_variables_are_known": check_check_variables_are_known,
    "Optimizer._use_weight_decay": check_uses_weight_decay,
    "Optimizer._apply_weight_decay": check_skip_apply_weight_decay,
    "Optimizer.update_step (replaced on an instance)": check_replace_update_step,
    "Optimizer.stateless_apply (replaced on an instance, JAX trainer)": (
        check_replace_stateless_apply
    ),
    "Trainer builds the optimizer from its own method (call stack)": (
        check_model_building
    ),
    "ConcreteFunction._arg_keywords": check_concrete_function_arg_names,
    "TensorFlow trainer: _maybe_symbolic_build, reduce_per_replica": (
        check_multi_worker_fit
    ),
    "keras.src.saving.serialization_lib.in_safe_mode": (
        check_deserialization_safe_mode
    ),
    "Metric._direction": check_metric_direction,
    "Optimizer._learning_rate": check_learning_rate_object,
    "Optimizer._model_variables_moving_average": check_moving_average_of,
    "Layer._tracker (unlocked to add a variable)": check_unlocked_state,
    "Layer._trainable_variables and _non_trainable_variables (variables removed)": (
        check_remove_variables
    ),
    "Layer.__class__ (replaced by a subclass)": check_set_class,
    "Layer._get_kernel_with_merged_lora": check_merged_quantized_kernel,
    "Layer._kernel / Embedding._embeddings": check_base_weight,
    "Layer._trainable_variables and _non_trainable_variables (variables moved)": (
        check_freeze_variables
    ),
    "Layer.__dict__ (a weight attribute shadowed by a property)": (
        check_instance_attribute
    ),
    "Variable._value (None while the JAX trainer holds the state)": (
        check_detached_by_trainer
    ),
}


def test_every_reach_has_a_check():
    assert sorted(CHECKS) == sorted(_compat.REACHES)


@pytest.mark.parametrize("reach", sorted(CHECKS))
def test_reach_still_works(reach, tmp_path):
    check = CHECKS[reach]
    args = (tmp_path,) if "tmp_path" in check.__code__.co_varnames else ()
    try:
        check(*args)
    except Exception as error:  # AssertionError included
        pytest.fail(
            f"Keras {keras.version()} (TensorFlow {tf.__version__}): the "
            f"internal `{reach}` that keras_transfer._compat relies on has "
            f"moved or changed: {type(error).__name__}: {error}"
        )


def test_a_missing_internal_is_a_compatibility_error():
    with pytest.raises(_compat.CompatibilityError) as info:
        _compat.flatten_layers(object())
    message = str(info.value)
    assert "Layer._flatten_layers" in message and keras.version() in message


# Private Keras/TensorFlow names: only `_compat.py` may use them.
_PRIVATE = (
    "_flatten_layers",
    "_trainable_variables",
    "_non_trainable_variables",
    "_track_variable",
    "_nodes_by_depth",
    "_inputs_struct",
    "_outputs_struct",
    "_keras_history",
    "_var_key",
    "_get_variable_index",
    "_use_weight_decay",
    "_check_variables_are_known",
    "_trainable_variables_indices",
    "_apply_weight_decay",
    "_compute_loss",
    "_loss_tracker",
    "_maybe_symbolic_build",
    "_symbolic_build",
    "_distribute_strategy",
    "_in_multi_worker_mode",
    "_arg_keywords",
    "_is_graph_network",
    "_value",
    "_variables",
    "_momentums",
    "_learning_rate",
    "_layers",
)
_FORBIDDEN = re.compile(
    r"keras\.src\b|from keras import src\b|tensorflow\.python\b"
    r"|\.(?:" + "|".join(_PRIVATE) + r")\b"
    r"|[\"'](?:" + "|".join(_PRIVATE) + r")[\"']"
    r"|\.update_step\s*="
)
# Attributes of our own classes that share a name with a Keras internal.
_OWN = re.compile(r"self\._layers\b")


def test_only_compat_reaches_into_keras_internals():
    offending = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "_compat.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = _OWN.sub("", line.split("#", 1)[0])
            if _FORBIDDEN.search(code):
                offending.append(f"{path.relative_to(PACKAGE)}:{number}: {line}")
    assert not offending, (
        "Keras/TensorFlow internals used outside keras_transfer/_compat.py "
        "(add a function there instead):\n" + "\n".join(offending)
    )
