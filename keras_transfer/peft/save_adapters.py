"""`save_adapters`: write only the adapters and trained head of a model."""

import json
import os

import keras
import numpy as np

from keras_transfer.api_export import keras_transfer_export
from keras_transfer.peft import _adapters

FORMAT = "keras_transfer.peft.adapters"
VERSION = 1


@keras_transfer_export("keras_transfer.peft.save_adapters")
def save_adapters(model, path):
    """Write the adapters of `model` and its other trainable weights to `path`.

    The file (a NumPy `.npz` archive with a JSON header) holds, for every
    adapted layer, its LoRA factors (and DoRA magnitude), rank, alpha and
    base weight shape, and the value of every other trainable weight (the
    new head, BitFit biases): what training changed, and nothing of the
    frozen pretrained weights, so it is a small fraction of the model.
    Layers are keyed by their path below `model` (names of the nested layers,
    without the name of `model`), so the file loads onto a freshly built
    copy of the base (`load_adapters`).

    Args:
        model: A Keras model or layer with adapters.
        path: String or path-like. File to write (replaced if it exists).

    Returns:
        The size of the file in bytes.

    Examples:

        >>> import os, tempfile
        >>> from keras_transfer.peft import enable_lora
        >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
        >>> _ = enable_lora(model, rank=2, targets=keras.layers.Dense)
        >>> path = os.path.join(tempfile.mkdtemp(), "adapters.npz")
        >>> save_adapters(model, path) > 0
        True
    """
    _adapters.check_model(model, "model")
    adapted = _adapters.adapted_layers(model)
    if not adapted:
        raise ValueError(
            "`model` has no LoRA or DoRA adapters to save: call `enable_lora` "
            f"first. Received: model={model.name!r}"
        )
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(
            f"`path` must be a string or path-like. Received: path={path!r}"
        )
    arrays = {}
    header = {"format": FORMAT, "version": VERSION, "layers": {}, "variables": {}}
    adapter_ids = set()
    for key, layer in adapted.items():
        header["layers"][key] = {
            "class_name": type(layer).__name__,
            "method": "dora" if _adapters.is_dora(layer) else "lora",
            "rank": int(layer.lora_rank),
            "alpha": layer.lora_alpha,
            "weight_shape": list(_adapters.weight_shape(layer)),
            "dropout": float(getattr(layer, "lora_dropout", 0.0)),
            "factoring": getattr(layer, "lora_factoring", "last_axis"),
        }
        names = _adapters.adapter_names(layer)
        for name, v in zip(names, _adapters.adapter_variables(layer)):
            arrays[f"layers/{key}/{name}"] = keras.ops.convert_to_numpy(v)
            adapter_ids.add(id(v))
    trainable = {id(v) for v in model.trainable_weights} - adapter_ids
    for key, layer in _adapters.layer_paths(model).items():
        for v in _adapters.own_variables(layer):
            if id(v) in trainable:
                name = f"{key}/{v.path.rsplit('/', 1)[-1]}"
                header["variables"][name] = list(v.shape)
                arrays[f"variables/{name}"] = keras.ops.convert_to_numpy(v)
                trainable.discard(id(v))
    arrays["header"] = np.array(json.dumps(header))
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return os.path.getsize(path)
