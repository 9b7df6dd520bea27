"""`merge_lora`: fold every adapter into its base weights, in place."""

import keras

from keras_transfer import _compat
from keras_transfer.api_export import keras_transfer_export
from keras_transfer.peft import _adapters, _dora_layers, _lora_layers


@keras_transfer_export("keras_transfer.peft.merge_lora")
def merge_lora(model):
    """Fold every LoRA/DoRA adapter of `model` into its base weights, in place.

    Each adapted layer gets `W + (alpha / rank) * A @ B` (for DoRA, the
    magnitude times the normalized direction) as its kernel, computed in
    float32, and loses its adapter variables: the model then has exactly the
    variables (and the layer classes) of the base architecture, and gives
    the same outputs (within float32 rounding). Quantized int8 layers
    are re-quantized with the update folded in, as Keras does when it saves.
    The merged kernels stay frozen (set `variable.trainable = True` to
    train them). The traced functions of `model` are reset; when `model` is part of
    a larger model that has already run `fit`/`predict`, compile that model
    again (or call its `make_predict_function(force=True)`).

    `keras_transfer.export` merges a copy by itself: export does not need
    this call, and leaves the model it is given untouched.

    Args:
        model: A Keras model or layer with adapters (from `enable_lora`, or
            Keras's own `layer.enable_lora`).

    Returns:
        The list of paths of the merged layers.

    Examples:

        >>> from keras_transfer.peft import enable_lora
        >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
        >>> _ = enable_lora(model, rank=2, targets=keras.layers.Dense)
        >>> x = np.random.rand(3, 8).astype("float32")
        >>> before = model.predict(x, verbose=0)
        >>> merged = merge_lora(model)
        >>> [w.path.split("/")[-1] for w in model.weights]
        ['kernel', 'bias']
        >>> bool(np.abs(model.predict(x, verbose=0) - before).max() < 1e-5)
        True
    """
    _adapters.check_model(model, "model")
    adapted = _adapters.adapted_layers(model)
    if not adapted:
        raise ValueError(
            "`model` has no LoRA or DoRA adapters to merge: call `enable_lora` "
            f"first. Received: model={model.name!r}"
        )
    for path, layer in adapted.items():
        mode = getattr(layer, "quantization_mode", None)
        if mode not in (None, "int8"):
            raise ValueError(
                f"`model` has adapters on layer '{path}', quantized as {mode}: "
                "merge_lora folds adapters into float and int8 layers only."
            )
    for layer in adapted.values():
        merge_layer(layer)
    # Traced train/test/predict functions still hold the adapter variables.
    _adapters.reset_traced_functions(model)
    return list(adapted)


def merge_layer(layer):
    """Fold the adapter of one layer into its base weight and drop it."""
    base = _adapters.base_variable(layer)
    if getattr(layer, "quantization_mode", None):
        kernel, scale = _compat.merged_quantized_kernel(layer)
        base.assign(kernel)
        if scale is not None:
            layer.kernel_scale.assign(scale)
    else:
        base.assign(keras.ops.cast(_adapters.merged_float_weight(layer), base.dtype))
    _compat.remove_variables(layer, _adapters.adapter_names(layer))
    layer.lora_enabled = False
    layer.lora_rank = None
    layer.lora_alpha = None
    for name in ("lora_dropout", "lora_factoring", "lora_seed_generator"):
        if hasattr(layer, name):
            with _compat.unlocked_state(layer):
                delattr(layer, name)
    for table in (_dora_layers.BASE_CLASSES, _lora_layers.BASE_CLASSES):
        if type(layer) in table:
            _compat.set_class(layer, table[type(layer)])
