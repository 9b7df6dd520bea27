"""Task heads on a backbone: raw inputs in, predictions out."""

import keras

from keras_transfer.api_export import keras_transfer_export
from keras_transfer.backbones.image_preprocessing import MODES, ImagePreprocessing
from keras_transfer.backbones.preprocessed_model import PreprocessedModel
from keras_transfer.utils.optional import require

POOLINGS = ("avg", "max", "pooled")
TASKS = ("classification", "regression")


def _network(backbone):
    """The Keras model behind `backbone` (a view's layer), with known inputs."""
    backbone = getattr(backbone, "layer", backbone)  # a GroupedLayer
    if not isinstance(backbone, keras.layers.Layer):
        raise ValueError(
            "`backbone` must be a Keras model or layer (a `Backbone`, a "
            "keras.applications or keras-hub model, a model of your own). "
            f"Received: backbone={backbone!r}"
        )
    if not has_known_input(backbone):
        raise ValueError(
            f"`backbone` '{backbone.name}' has no known input (a subclassed "
            "model, or a layer never called on a `keras.Input`), so its input "
            "shape is unknown. Wrap it: Backbone.from_model(model, "
            "input_shape=...)."
        )
    return backbone


def has_known_input(layer):
    """Whether `layer` has symbolic inputs (a functional model, or called)."""
    try:
        return layer.input is not None
    except (AttributeError, ValueError):
        return False


def _is_text_backbone(backbone):
    inputs = backbone.input
    return isinstance(inputs, dict) and "token_ids" in inputs


def _pool(outputs, pooling, mask=None):
    if isinstance(outputs, dict):
        if pooling == "pooled":
            if "pooled_output" not in outputs:
                raise ValueError(
                    '`pooling="pooled"` needs a backbone with a "pooled_output"; '
                    f"this one outputs {sorted(outputs)}. Use pooling='avg'."
                )
            return outputs["pooled_output"]
        key = "sequence_output" if "sequence_output" in outputs else sorted(outputs)[0]
        outputs = outputs[key]
    elif pooling == "pooled":
        raise ValueError(
            '`pooling="pooled"` needs a backbone with a "pooled_output" '
            "(keras-hub text encoders). Use pooling='avg' or 'max'."
        )
    rank = len(outputs.shape)
    if rank == 2:
        return outputs
    if rank == 3:
        layer = (
            keras.layers.GlobalAveragePooling1D(name="pool")
            if pooling == "avg"
            else keras.layers.GlobalMaxPooling1D(name="pool")
        )
        return layer(outputs, mask=mask) if pooling == "avg" else layer(outputs)
    if rank == 4:
        layer = (
            keras.layers.GlobalAveragePooling2D(name="pool")
            if pooling == "avg"
            else keras.layers.GlobalMaxPooling2D(name="pool")
        )
        return layer(outputs)
    raise ValueError(f"Cannot pool a backbone output of shape {outputs.shape}.")


def _text_preprocessor(backbone, preprocessing, sequence_length):
    if preprocessing is None:
        return None
    if preprocessing != "auto":
        return preprocessing
    if not getattr(backbone, "preset", None):
        raise ValueError(
            '`preprocessing="auto"` needs a backbone loaded with `from_preset` '
            "for text; pass a keras-hub preprocessor instead, e.g. "
            "preprocessing=keras_hub.models.BertTextClassifierPreprocessor(...)."
        )
    keras_hub = require("keras_hub")
    return keras_hub.models.TextClassifierPreprocessor.from_preset(
        backbone.preset, sequence_length=sequence_length
    )


def feature_graph(
    backbone,
    preprocessing="auto",
    pooling="avg",
    input_shape=None,
    sequence_length=128,
):
    """Inputs, pooled features of `backbone`, and a text preprocessor or None.

    Images: resize to the backbone's input size and scale them (the
    backbone's `preprocessing` mode, or the mode given), inside the graph.
    Text (keras-hub encoders): the graph takes the token dict; the keras-hub
    preprocessor (strings -> tokens) is returned to run in front of it
    (`PreprocessedModel`). Anything else: the backbone's own inputs.
    """
    if pooling not in POOLINGS:
        raise ValueError(f"`pooling` must be one of {POOLINGS}. Received: {pooling!r}")
    backbone = _network(backbone)
    if _is_text_backbone(backbone):
        preprocessor = _text_preprocessor(backbone, preprocessing, sequence_length)
        inputs = {
            k: keras.Input(v.shape[1:], dtype=v.dtype, name=k)
            for k, v in backbone.input.items()
        }
        outputs = backbone(inputs)
        features = _pool(outputs, pooling, mask=inputs.get("padding_mask"))
        return inputs, features, preprocessor

    flat = keras.tree.flatten(backbone.input)
    if len(flat) == 1 and len(flat[0].shape) == 4:
        height, width, channels = flat[0].shape[1:]
        own = getattr(backbone, "preprocessing", None)
        mode = own if preprocessing == "auto" else preprocessing
        if mode is not None and mode not in MODES:
            raise ValueError(
                f'`preprocessing` must be "auto", None or one of {MODES} for an '
                f"image backbone. Received: preprocessing={preprocessing!r}"
            )
        if input_shape is None:
            input_shape = (height, width, channels)
        inputs = keras.Input(tuple(input_shape), name="images")
        x = inputs
        size = (height, width) if height and width else None
        needs_resize = size is not None and tuple(input_shape[:2]) != size
        if mode is not None or needs_resize or input_shape[-1] != channels:
            x = ImagePreprocessing(
                mode or "raw", image_size=size, name="image_preprocessing"
            )(x)
        return inputs, _pool(backbone(x), pooling), None

    inputs = keras.tree.map_structure(
        lambda v: keras.Input(v.shape[1:], dtype=v.dtype), backbone.input
    )
    return inputs, _pool(backbone(inputs), pooling), None


def build_head(
    feature_dim,
    num_classes=None,
    task=None,
    num_outputs=1,
    activation="auto",
    dropout=0.0,
    name="head",
):
    """A head model: features -> (dropout) -> dense predictions."""
    task = _check_task(task, num_classes)
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"`dropout` must be in [0, 1). Received: dropout={dropout}")
    if task == "classification":
        units = num_classes
        default = "softmax"
    else:
        if not isinstance(num_outputs, int) or num_outputs < 1:
            raise ValueError(
                f"`num_outputs` must be a positive integer. "
                f"Received: num_outputs={num_outputs!r}"
            )
        units = num_outputs
        default = None
    activation = default if activation == "auto" else activation
    features = keras.Input((feature_dim,), name="features")
    x = features
    if dropout:
        x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    outputs = keras.layers.Dense(units, activation=activation, name="predictions")(x)
    return keras.Model(features, outputs, name=name)


def _check_task(task, num_classes):
    if task is None:
        task = "classification" if num_classes is not None else "regression"
    if task not in TASKS:
        raise ValueError(f"`task` must be one of {TASKS}. Received: task={task!r}")
    if task == "classification" and (
        isinstance(num_classes, bool)
        or not isinstance(num_classes, int)
        or num_classes < 2
    ):
        raise ValueError(
            "`num_classes` must be an integer >= 2 for classification (use "
            "task='regression' or num_classes=None for regression). "
            f"Received: num_classes={num_classes!r}"
        )
    if task == "regression" and num_classes is not None:
        raise ValueError(
            "`num_classes` must be None for regression (use `num_outputs`). "
            f"Received: num_classes={num_classes!r}"
        )
    return task


@keras_transfer_export("keras_transfer.backbones.add_head")
def add_head(
    backbone,
    num_classes=None,
    task=None,
    num_outputs=1,
    pooling="avg",
    dropout=0.0,
    activation="auto",
    preprocessing="auto",
    input_shape=None,
    sequence_length=128,
    head=None,
    name=None,
):
    """Put a classification or regression head on a backbone.

    The returned `keras.Model` takes raw inputs: images (0-255, any size
    given by `input_shape`; resized and scaled as the backbone expects) or
    strings (through a keras-hub preprocessor) for keras-hub text encoders.
    The head is a nested model named `"head"` (`model.get_layer("head")`)
    on pooled features. Everything saves and loads in `.keras`.

    Args:
        backbone: A `Backbone`, or any Keras model with known inputs (a
            keras.applications or keras-hub model, a functional model of
            your own), used as it is.
        num_classes: Integer >= 2 for classification (softmax output), or
            None for regression.
        task: Optional `"classification"` or `"regression"`; inferred from
            `num_classes` when None.
        num_outputs: Integer. Outputs of a regression head.
        pooling: `"avg"` or `"max"` over the spatial/sequence axes, or
            `"pooled"` for the `pooled_output` of a text encoder.
        dropout: Float in [0, 1). Dropout before the dense layer.
        activation: `"auto"` (softmax for classification, linear for
            regression), or any Keras activation (None for logits).
        preprocessing: `"auto"` (the backbone's image scaling, or the
            keras-hub preprocessor of its preset), an `ImagePreprocessing`
            mode, a keras-hub preprocessor layer for text, or None (inputs go
            to the backbone as they are).
        input_shape: Optional tuple. Shape of the raw images, e.g.
            `(28, 28, 1)`; they are resized to the backbone's input size.
        sequence_length: Integer. Token sequence length of an automatic text
            preprocessor.
        head: Optional head `keras.Model` to use instead of building one
            (features in, predictions out).
        name: Optional string. Name of the model.

    Returns:
        A `keras.Model`; for text, a `PreprocessedModel` (the keras-hub
        preprocessor in front of the functional network).

    Examples:

        >>> from keras_transfer.backbones import Backbone
        >>> inputs = keras.Input((8, 8, 3))
        >>> x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
        >>> backbone = Backbone(inputs, x, preprocessing="tf")
        >>> model = add_head(backbone, num_classes=3, input_shape=(16, 16, 1))
        >>> tuple(model(np.zeros((2, 16, 16, 1))).shape)
        (2, 3)
    """
    inputs, features, preprocessor = feature_graph(
        backbone,
        preprocessing=preprocessing,
        pooling=pooling,
        input_shape=input_shape,
        sequence_length=sequence_length,
    )
    if head is None:
        head = build_head(
            features.shape[-1],
            num_classes=num_classes,
            task=task,
            num_outputs=num_outputs,
            activation=activation,
            dropout=dropout,
        )
    elif not isinstance(head, keras.Model):
        raise ValueError(
            f"`head` must be a keras.Model or None. Received: head={head!r}"
        )
    outputs = head(features)
    name = name or f"{backbone.name}_with_head"
    if preprocessor is None:
        return keras.Model(inputs, outputs, name=name)
    network = keras.Model(inputs, outputs, name=f"{name}_network")
    return PreprocessedModel(preprocessor, network, name=name)
