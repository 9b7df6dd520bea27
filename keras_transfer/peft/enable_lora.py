"""`enable_lora`: low-rank adapters (LoRA or DoRA) on any Keras model."""

import numbers

import keras

from keras_transfer import _compat
from keras_transfer.api_export import keras_transfer_export
from keras_transfer.peft import _adapters, _targets
from keras_transfer.peft._dora_layers import DORA_CLASSES
from keras_transfer.peft._lora_layers import OWN_CLASSES, PROJECTION_CLASSES
from keras_transfer.peft.lora_summary import LoRASummary


@keras_transfer_export("keras_transfer.peft.enable_lora")
def enable_lora(
    model_or_layer,
    rank=8,
    alpha=None,
    targets=None,
    dropout=0.0,
    dora=False,
    *,
    train=None,
    bitfit=False,
    factoring="last_axis",
):
    """Add low-rank adapters to a Keras model or layer, in place, and freeze it.

    LoRA (Hu et al., 2021) trains a low-rank update `(alpha / rank) * A @ B`
    of each targeted weight while the pretrained weight stays frozen. This
    function adds adapters to the targeted layers of any built Keras model or
    layer (keras.applications, keras-hub, `Backbone`, your own models) using
    each layer's own `enable_lora` (Keras has it on `Dense`, `EinsumDense`,
    `Embedding` and the convolutions, quantized int8/int4 layers included),
    or, for the Keras layers that have none (`DepthwiseConv1D/2D`,
    `SeparableConv1D/2D`'s pointwise kernel, `Conv1D/2D/3DTranspose`), our
    own low-rank layer of the same class (`LoRADepthwiseConv2D`, ...), then
    freezes every other weight: only the adapters, the layers named in
    `train` and, with `bitfit=True`, biases and normalization scales train.
    The frozen weights stay frozen when a layer or group is unfrozen later
    (`Backbone.freeze_to`, `GradualUnfreezing`): that makes its adapters
    trainable. BatchNormalization layers not named in `train` are put in
    inference mode (`trainable=False`), so their moving statistics stay.

    With `dora=True`, DoRA (Liu et al., 2024): each targeted weight is
    written as a trained magnitude vector (one entry per output unit)
    times the normalized direction of `W + (alpha / rank) * A @ B`. The
    magnitude starts at the norm of `W` and `B` at zero, so the outputs of
    the model are unchanged at first, for LoRA and DoRA alike.

    Default targets (`targets=None`): for models with attention layers
    (BERT/ViT-style encoders), the query and value projections of every
    `MultiHeadAttention` and the feed-forward projections (Dense or
    EinsumDense layers named like `feedforward`, `intermediate`, `mlp`,
    `ffn`); for other models (CNNs), every 1x1 convolution and Dense layer.
    Call it on the backbone before adding the new head, or name the head in
    `train`, so that the head trains fully.

    Saving: a `.keras` file of an adapted model holds the adapters folded
    into the kernels, as Keras does for its own LoRA; `save_adapters` writes
    the adapters and trained head alone, to resume training on the
    pretrained base (`load_adapters`). See the PEFT guide.

    Nothing is changed when an argument is wrong: every check runs before
    the first adapter is added. Call it inside `strategy.scope()` for a
    model under a distribution strategy.

    Args:
        model_or_layer: A built `keras.Model` or `keras.layers.Layer`.
        rank: Positive integer. Rank of the update; at most the smaller
            side of each targeted weight.
        alpha: Positive number or `None`. The update is scaled by
            `alpha / rank`; `None` gives `alpha = rank` (a scale of 1).
        targets: `None` for the defaults above, or one or a list of: a layer
            group name (of a `Backbone`, or of any model with `.groups`: the
            default targets inside that group), a regular expression
            searched in layer paths (`"encoder/query"`; paths leave out the
            name of `model_or_layer`), a layer class, or a callable
            `layer -> bool`. Layers without LoRA support are skipped.
        dropout: Float in `[0, 1)`. LoRA dropout: dropout on the input of
            the adapter only, in training only (the base path and inference
            are unchanged; merging is unchanged). Supported on float `Dense`
            and `EinsumDense` layers (they become `LoRADense` /
            `LoRAEinsumDense`, which compute the update apart in training);
            other targeted layers are an error naming the layer. Not with
            `dora=True`.
        dora: Boolean. Use DoRA instead of LoRA (for `Dense`, `EinsumDense`
            and `Conv1D/2D/3D` layers that are not quantized).
        train: Same kinds of items as `targets`: layers whose own weights
            all stay trainable (the new head, for instance).
        bitfit: Boolean. Also train the biases of Dense, EinsumDense and
            convolution layers and the scales/offsets of Layer-, Group- and
            RMS-normalization layers (BitFit, Ben Zaken et al., 2022).
            BatchNormalization stays frozen in inference mode.
        factoring: `"last_axis"` (Keras's: A spans every axis of a kernel
            but the last, B the last) or `"matrix"`: an `EinsumDense` kernel
            is read as its input x output matrix (A spans the axes the
            layer contracts with its input, B the output axes). For a query
            projection of kernel `(384, 12, 32)` at rank 8 that is 6,144
            adapter parameters instead of 37,120. Other layers are factored
            the same either way.

    Returns:
        A `LoRASummary` (prints as a table).

    Examples:

        >>> model = keras.Sequential([
        ...     keras.Input((16,)),
        ...     keras.layers.Dense(32, activation="relu", name="body"),
        ...     keras.layers.Dense(3, name="head"),
        ... ])
        >>> x = np.random.rand(4, 16).astype("float32")
        >>> before = model.predict(x, verbose=0)
        >>> summary = enable_lora(model, rank=4, targets="body", train="head")
        >>> print(summary)
        layer  class  method  rank  alpha  params
        -----  -----  ------  ----  -----  ------
        body   Dense  LoRA       4      4     192
        1 layer adapted; trainable 291 of 835 parameters (34.85%)
        >>> bool(np.allclose(model.predict(x, verbose=0), before))
        True
        >>> sorted(v.path.split("/")[-1] for v in model.trainable_weights)
        ['bias', 'kernel', 'lora_kernel_a', 'lora_kernel_b']
    """
    _adapters.check_model(model_or_layer, "model_or_layer")
    rank = _adapters.check_rank(rank)
    alpha = _adapters.check_alpha(alpha)
    dropout = check_dropout(dropout)
    if not isinstance(dora, bool):
        raise ValueError(f"`dora` must be a boolean. Received: dora={dora!r}")
    if factoring not in _adapters.FACTORINGS:
        raise ValueError(
            f"`factoring` must be one of {list(_adapters.FACTORINGS)}. "
            f"Received: factoring={factoring!r}"
        )
    if dora and (dropout or factoring != "last_axis"):
        raise ValueError(
            "`dora=True` works with Keras's factoring and no dropout: pass "
            f"dropout=0.0 and factoring='last_axis'. Received: dropout={dropout}, "
            f"factoring={factoring!r}"
        )
    if not isinstance(bitfit, bool):
        raise ValueError(f"`bitfit` must be a boolean. Received: bitfit={bitfit!r}")

    paths = _adapters.layer_paths(model_or_layer)
    kept = set()
    if train is not None:
        kept = set(_targets.select(model_or_layer, paths, train, "train"))
    chosen = [
        p for p in _targets.select(model_or_layer, paths, targets, "targets")
        if _adapters.supports_lora(paths[p]) and p not in kept
    ]
    if not chosen:
        raise _targets.nothing_matched(model_or_layer, paths, targets, "targets")
    plan = {
        p: {"rank": rank, "alpha": alpha, "dora": dora, "dropout": dropout,
            "factoring": factoring}
        for p in chosen
    }
    check_plan(paths, plan)
    apply_plan(paths, plan)
    freeze_base(model_or_layer, paths, kept, bitfit)
    _adapters.reset_traced_functions(model_or_layer)
    return summarize(model_or_layer)


def check_dropout(dropout):
    if (
        isinstance(dropout, bool)
        or not isinstance(dropout, numbers.Real)
        or not 0.0 <= float(dropout) < 1.0
    ):
        raise ValueError(
            "`dropout` must be a number in [0, 1). Received: "
            f"dropout={dropout!r}"
        )
    return float(dropout)


def _own_class(layer, entry):
    """The class of ours that `layer` becomes for `entry`, or None (Keras's)."""
    if type(layer) in OWN_CLASSES:
        return OWN_CLASSES[type(layer)]
    if entry.get("dropout") or (
        entry.get("factoring", "last_axis") == "matrix"
        and isinstance(layer, keras.layers.EinsumDense)
    ):
        return PROJECTION_CLASSES.get(type(layer))
    return None


def check_plan(paths, plan):
    """Raise, naming the argument and layer, if any entry of `plan` cannot be done."""
    for path, entry in plan.items():
        rank, dora = entry["rank"], entry["dora"]
        layer = paths[path]
        if _adapters.is_adapted(layer):
            raise ValueError(
                f"`model_or_layer` already has adapters on layer '{path}' "
                f"(rank {layer.lora_rank}); LoRA can be enabled once per layer. "
                "Call `merge_lora` first to add new adapters on top."
            )
        if getattr(layer, "kernel_constraint", None) is not None:
            raise ValueError(
                f"Layer '{path}' has a `kernel_constraint`, which Keras's LoRA "
                "does not support: leave it out of `targets`."
            )
        factoring = entry.get("factoring", "last_axis")
        dropout = entry.get("dropout", 0.0)
        kind = type(layer).__name__
        if dropout and type(layer) not in PROJECTION_CLASSES:
            raise ValueError(
                "`dropout` is supported on layers of class Dense and EinsumDense "
                f"only; layer '{path}' is a {kind}. Leave it out of `targets`, "
                f"or pass dropout=0.0. Received: dropout={dropout}"
            )
        matrix = factoring == "matrix" and isinstance(layer, keras.layers.EinsumDense)
        if matrix and (
            type(layer) is not keras.layers.EinsumDense
            or _adapters.einsum_input_axes(layer) is None
        ):
            raise ValueError(
                "`factoring='matrix'` needs a keras.layers.EinsumDense whose "
                f"kernel starts with its input axes; layer '{path}' ({kind}, "
                f"equation {layer.equation!r}) is not one. Leave it out of "
                "`targets`, or pass factoring='last_axis'."
            )
        if (dropout or matrix) and getattr(layer, "quantization_mode", None):
            raise ValueError(
                f"`dropout` and `factoring='matrix'` need a float kernel; layer "
                f"'{path}' is quantized ({layer.quantization_mode}). Received: "
                f"dropout={dropout}, factoring={factoring!r}"
            )
        _adapters.check_rank_fits(layer, path, rank, factoring)
        if dora:
            if type(layer) not in DORA_CLASSES:
                raise ValueError(
                    f"`dora=True` supports {[c.__name__ for c in DORA_CLASSES]} "
                    f"layers; layer '{path}' is a {type(layer).__name__}. Leave "
                    "it out of `targets` or use LoRA."
                )
            if getattr(layer, "quantization_mode", None):
                raise ValueError(
                    f"`dora=True` needs a float kernel; layer '{path}' is "
                    f"quantized ({layer.quantization_mode}). Use LoRA on "
                    "quantized layers."
                )


def apply_plan(paths, plan):
    """Add the adapters of `plan` (`{path: {rank, alpha, dora, ...}}`)."""
    for path, entry in plan.items():
        layer = paths[path]
        rank, alpha = entry["rank"], entry["alpha"]
        own = _own_class(layer, entry)
        if entry["dora"]:
            _compat.set_class(layer, DORA_CLASSES[type(layer)])
        elif own is not None:
            _compat.set_class(layer, own)
            if own in PROJECTION_CLASSES.values():
                layer.lora_dropout = entry.get("dropout", 0.0)
                layer.lora_factoring = entry.get("factoring", "last_axis")
        layer.enable_lora(rank, lora_alpha=alpha if alpha is not None else rank)


def _is_norm(layer):
    return isinstance(
        layer,
        (
            keras.layers.LayerNormalization,
            keras.layers.BatchNormalization,
            keras.layers.GroupNormalization,
            keras.layers.RMSNormalization,
        ),
    )


# Layers whose saving names each variable (so their variables may be frozen
# one by one without changing what the `.keras` file holds).
_SAVED_BY_NAME = (
    keras.layers.Dense,
    keras.layers.EinsumDense,
    keras.layers.Embedding,
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.Conv3D,
)
_BITFIT_NORMS = (
    keras.layers.LayerNormalization,
    keras.layers.GroupNormalization,
    keras.layers.RMSNormalization,
)


def freeze_base(root, paths, kept, bitfit, keep_ids=()):
    """Freeze every weight of `root` but the adapters, `kept` layers, BitFit.

    Frozen weights leave their layer's trainable variables for good (see
    `_compat.freeze_variables`): unfreezing a layer or a group later
    (`Backbone.freeze_to`, `GradualUnfreezing`) makes its adapters
    trainable, never its pretrained weights.
    """
    keep = set(keep_ids)
    for path, layer in paths.items():
        if _adapters.is_adapted(layer):
            keep.update(id(v) for v in _adapters.adapter_variables(layer))
        if path in kept:
            keep.update(id(v) for v in layer.weights)
    for path, layer in paths.items():
        own = _adapters.own_variables(layer)
        layer_keep = set(keep)
        # Our own LoRA layers save by name too.
        by_name = isinstance(layer, _SAVED_BY_NAME) or _adapters.is_adapted(layer)
        if bitfit and path not in kept:
            for v in own:
                name = v.path.rsplit("/", 1)[-1]
                if (name == "bias" and by_name) or (
                    isinstance(layer, _BITFIT_NORMS) and name in ("gamma", "beta")
                ):
                    layer_keep.add(id(v))
        _compat.freeze_variables(layer, layer_keep, partial=by_name)
    # The layers themselves must be trainable for the adapters to train (a
    # frozen backbone included); the frozen weights no longer follow. Each
    # layer is set on its own: a layer frozen by itself (a pretrained file
    # saved with its lower layers frozen) is not unfrozen by its model's
    # `trainable = True` when the model's flag is already True (on the
    # TensorFlow backend, setting an attribute to the value it has is a
    # no-op that never reaches Keras's setter).
    for layer in paths.values():
        if not layer.trainable:
            layer.trainable = True
    for path, layer in paths.items():
        if isinstance(layer, keras.layers.BatchNormalization) and path not in kept:
            layer.trainable = False


def summarize(root):
    rows = []
    for path, layer in _adapters.adapted_layers(root).items():
        rows.append(
            {
                "path": path,
                "class_name": type(layer).__name__,
                "method": "DoRA" if _adapters.is_dora(layer) else "LoRA",
                "rank": int(layer.lora_rank),
                "alpha": layer.lora_alpha,
                "params": _adapters.count(_adapters.adapter_variables(layer)),
            }
        )
    return LoRASummary(
        rows,
        trainable_params=_adapters.count(root.trainable_weights),
        total_params=_adapters.count(root.weights),
    )
