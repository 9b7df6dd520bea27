"""`load_adapters`: put saved adapters (and head) back onto a base model."""

import json
import os

import numpy as np

from keras_transfer.api_export import keras_transfer_export
from keras_transfer.peft import _adapters
from keras_transfer.peft.enable_lora import (
    apply_plan,
    check_plan,
    freeze_base,
    summarize,
)
from keras_transfer.peft.save_adapters import FORMAT


@keras_transfer_export("keras_transfer.peft.load_adapters")
def load_adapters(model, path):
    """Load a `save_adapters` file onto `model`, adding the adapters if needed.

    `model` is the base the adapters were trained on: a freshly built copy of
    the pretrained model (with or without the head), or a model that already
    has the same adapters (from `enable_lora` with the same rank, targets
    and method). Layers without adapters get them (rank, alpha and method as
    saved) and the base is frozen as `enable_lora` does; then the adapter
    and head values are assigned. Training resumes from there.

    Everything is checked before anything is changed: a layer of the file
    that `model` lacks, a base weight or head weight of another shape, or an
    adapter of another rank or method is a `ValueError` naming the layer,
    and `model` is left as it was.

    Args:
        model: A built Keras model or layer.
        path: String or path-like. A file written by `save_adapters`.

    Returns:
        A `LoRASummary` of the adapters of `model`.

    Examples:

        >>> import os, tempfile
        >>> from keras_transfer.peft import enable_lora, save_adapters
        >>> def base():
        ...     return keras.Sequential(
        ...         [keras.Input((8,)), keras.layers.Dense(4, name="proj")])
        >>> trained = base()
        >>> pretrained = trained.get_weights()
        >>> _ = enable_lora(trained, rank=2, targets="proj")
        >>> _ = trained.get_layer("proj").lora_kernel_b.assign(np.ones((2, 4)))
        >>> path = os.path.join(tempfile.mkdtemp(), "adapters.npz")
        >>> _ = save_adapters(trained, path)
        >>> fresh = base()
        >>> fresh.set_weights(pretrained)
        >>> summary = load_adapters(fresh, path)
        >>> summary.paths
        ['proj']
        >>> x = np.ones((1, 8), "float32")
        >>> expected = trained.predict(x, verbose=0)
        >>> bool(np.allclose(fresh.predict(x, verbose=0), expected))
        True
    """
    _adapters.check_model(model, "model")
    if not isinstance(path, (str, os.PathLike)) or not os.path.isfile(path):
        raise ValueError(
            f"`path` must name an adapter file written by `save_adapters`. "
            f"Received: path={path!r}"
        )
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        header = json.loads(str(arrays.pop("header")))
    except (OSError, ValueError, KeyError) as error:
        raise ValueError(
            f"`path` is not an adapter file written by `save_adapters` "
            f"({error}). Received: path={path!r}"
        ) from error
    if header.get("format") != FORMAT:
        raise ValueError(
            f"`path` is not an adapter file written by `save_adapters`. "
            f"Received: path={path!r}"
        )

    paths = _adapters.layer_paths(model)
    plan = {}
    for key, entry in header["layers"].items():
        layer = paths.get(key)
        if layer is None:
            raise ValueError(
                f"The adapter file has adapters for layer '{key}', which `model` "
                f"does not have: `model` is not the base they were trained on. "
                f"Received: path={path!r}"
            )
        if not _adapters.supports_lora(layer):
            raise ValueError(
                f"Layer '{key}' of `model` is a {type(layer).__name__}, which "
                f"cannot take the saved {entry['class_name']} adapters."
            )
        shape = list(_adapters.weight_shape(layer))
        if shape != entry["weight_shape"]:
            raise ValueError(
                f"Layer '{key}' of `model` has a weight of shape {shape}; the "
                f"adapters were trained on shape {entry['weight_shape']}: "
                "`model` is not the base they were trained on."
            )
        dora = entry["method"] == "dora"
        if _adapters.is_adapted(layer):
            if int(layer.lora_rank) != entry["rank"]:
                raise ValueError(
                    f"`rank` of the saved adapters of layer '{key}' is "
                    f"{entry['rank']}, but the layer has adapters of rank "
                    f"{layer.lora_rank}. Load onto a base without adapters, or "
                    f"call enable_lora with rank={entry['rank']}."
                )
            if _adapters.is_dora(layer) != dora:
                raise ValueError(
                    f"The saved adapters of layer '{key}' are "
                    f"{entry['method'].upper()}, the layer's are not: pass "
                    f"dora={dora} to enable_lora."
                )
            for attr in _adapters.adapter_names(layer):
                saved = arrays.get(f"layers/{key}/{attr}")
                own = tuple(getattr(layer, attr).shape)
                if saved is None or tuple(saved.shape) != own:
                    raise ValueError(
                        f"The saved adapter '{attr}' of layer '{key}' does not "
                        f"fit the layer's (shape {list(own)}): the adapters were "
                        f"made with factoring={entry.get('factoring', 'last_axis')!r}"
                        "; load onto a base without adapters."
                    )
        else:
            plan[key] = {
                "rank": entry["rank"],
                "alpha": entry["alpha"],
                "dora": dora,
                "dropout": entry.get("dropout", 0.0),
                "factoring": entry.get("factoring", "last_axis"),
            }
    check_plan(paths, plan)
    owners = {}
    for key, layer in paths.items():
        for v in _adapters.own_variables(layer):
            owners[f"{key}/{v.path.rsplit('/', 1)[-1]}"] = (key, v)
    for name, shape in header["variables"].items():
        if name not in owners:
            raise ValueError(
                f"The adapter file has a trained weight '{name}' that `model` "
                f"does not have (its head or layers differ). Received: path={path!r}"
            )
        if list(owners[name][1].shape) != list(shape):
            raise ValueError(
                f"Weight '{name}' of `model` has shape {list(owners[name][1].shape)}"
                f"; the file has shape {list(shape)}."
            )

    if plan:
        apply_plan(paths, plan)
        saved = {id(owners[name][1]) for name in header["variables"]}
        kept = {
            key for key, layer in paths.items()
            if _adapters.own_variables(layer)
            and all(id(v) in saved for v in _adapters.own_variables(layer))
        }
        freeze_base(model, paths, kept, bitfit=False, keep_ids=saved)
    for key in header["layers"]:
        layer = paths[key]
        for attr in _adapters.adapter_names(layer):
            getattr(layer, attr).assign(arrays[f"layers/{key}/{attr}"])
    for name in header["variables"]:
        owners[name][1].assign(arrays[f"variables/{name}"])
    _adapters.reset_traced_functions(model)
    return summarize(model)
