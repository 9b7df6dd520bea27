"""Feature extraction with a frozen backbone, and training a head on it.

With the backbone frozen, its pooled features do not change from epoch to
epoch: computing them once and training the head on the cached features
gives the same head as training the whole model, at the cost of one pass
over the data instead of one per epoch.
"""

import keras
import numpy as np

from keras_transfer.api_export import keras_transfer_export
from keras_transfer.backbones.heads import (
    _check_task,
    add_head,
    build_head,
    feature_graph,
    has_known_input,
)
from keras_transfer.backbones.preprocessed_model import (
    PreprocessedModel,
    _strings_as_tensor,
)
from keras_transfer.utils.progress import progress_verbose


def _is_empty(data):
    if isinstance(data, dict):
        data = next(iter(data.values()), [])
    try:
        return len(data) == 0
    except TypeError:  # a tf.data.Dataset of unknown length
        return False


@keras_transfer_export("keras_transfer.backbones.feature_extractor")
def feature_extractor(
    backbone, preprocessing="auto", pooling="avg", input_shape=None, sequence_length=128
):
    """A model from raw inputs to the pooled features `add_head` puts a head on.

    Args:
        backbone: A `Backbone`, or any Keras model with known inputs.
        preprocessing: As in `add_head`.
        pooling: As in `add_head`.
        input_shape: As in `add_head`.
        sequence_length: As in `add_head`.

    Returns:
        A `keras.Model`.
    """
    inputs, features, preprocessor = feature_graph(
        backbone,
        preprocessing=preprocessing,
        pooling=pooling,
        input_shape=input_shape,
        sequence_length=sequence_length,
    )
    network = keras.Model(inputs, features, name=f"{backbone.name}_features")
    if preprocessor is None:
        return network
    return PreprocessedModel(preprocessor, network, name=f"{backbone.name}_features")


@keras_transfer_export("keras_transfer.backbones.extract_features")
def extract_features(
    backbone,
    data,
    batch_size=32,
    verbose=1,
    preprocessing="auto",
    pooling="avg",
    input_shape=None,
    sequence_length=128,
):
    """Compute the pooled features of a (frozen) backbone once over a data set.

    Args:
        backbone: The pretrained part: a `Backbone`, any Keras model or
            layer called on a `keras.Input` (a keras.applications or
            keras-hub model, a model of your own; pooled as `add_head`
            pools), or a feature model from `feature_extractor`. A
            subclassed model runs as it is, its output averaged over all
            but the first and last axes.
        data: NumPy array (or dict of arrays), list of strings, or a
            `tf.data.Dataset` of batches (`x` or `(x, y)` elements).
        batch_size: Integer. Batch size for arrays.
        verbose: 0, 1 or 2. Progress of `predict`: 1 is a bar on a
            terminal and one plain line when the output is a file or log.
        preprocessing: As in `add_head` (ignored for a feature model).
        pooling: As in `add_head` (ignored for a feature model).
        input_shape: As in `add_head` (ignored for a feature model).
        sequence_length: As in `add_head` (ignored for a feature model).

    Returns:
        A NumPy array of shape `(num_samples, feature_dim)`.

    Examples:

        >>> from keras_transfer.backbones import Backbone
        >>> inputs = keras.Input((8, 8, 3))
        >>> backbone = Backbone(inputs, keras.layers.Conv2D(4, 3)(inputs))
        >>> extract_features(backbone, np.zeros((5, 8, 8, 3)), batch_size=2,
        ...                  verbose=0).shape
        (5, 4)
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(
            f"`batch_size` must be a positive integer. Received: {batch_size!r}"
        )
    network = getattr(backbone, "layer", backbone)  # a GroupedLayer's layer
    if not isinstance(network, keras.layers.Layer):
        raise ValueError(
            "`backbone` must be a Keras model or layer (a `Backbone`, a "
            "keras.applications or keras-hub model, a model of your own) or a "
            "feature model from `feature_extractor`. "
            f"Received: backbone={type(backbone).__name__}"
        )
    if isinstance(network, PreprocessedModel) or not has_known_input(network):
        # A feature model already, or a subclassed model: run it as it is.
        model = network
    else:
        model = feature_extractor(
            network,
            preprocessing=preprocessing,
            pooling=pooling,
            input_shape=input_shape,
            sequence_length=sequence_length,
        )
    data = _strings_as_tensor(data)
    if _is_empty(data):
        raise ValueError("`data` is empty: there is nothing to extract features from.")
    # One `predict` pass: one traced function for every batch, Keras's
    # progress bar, and tf.distribute support.
    features = model.predict(
        data, batch_size=batch_size, verbose=progress_verbose(verbose)
    )
    features = keras.ops.convert_to_numpy(features)
    if features.ndim > 2:  # the output of a model run as it is
        features = features.mean(axis=tuple(range(1, features.ndim - 1)))
    return features


@keras_transfer_export("keras_transfer.backbones.fit_head_on_features")
def fit_head_on_features(
    backbone,
    x,
    y,
    num_classes=None,
    task=None,
    epochs=20,
    batch_size=32,
    optimizer=None,
    learning_rate=1e-3,
    dropout=0.0,
    validation_data=None,
    verbose=1,
    preprocessing="auto",
    pooling="avg",
    input_shape=None,
    sequence_length=128,
    features=None,
):
    """Train a head on cached features of a frozen backbone; return the full model.

    The backbone runs once over `x` (`extract_features`, with a progress
    bar); the head then trains on the cached features for `epochs` epochs
    without calling the backbone. The trained head is attached to the
    backbone (`add_head(..., head=head)`), so the returned model maps raw
    inputs to predictions equal to `head(features)`.

    Args:
        backbone: A `Backbone`, or any Keras model with known inputs (a
            keras.applications or keras-hub model); used frozen: its
            weights are not changed.
        x: Training inputs (see `extract_features`).
        y: Training targets (integer labels for classification).
        num_classes: Integer >= 2 for classification; None for regression.
        task: Optional `"classification"` or `"regression"`.
        epochs: Integer. Epochs of head training.
        batch_size: Integer. Batch size for features and head training.
        optimizer: Optional Keras optimizer (default Adam(`learning_rate`)).
        learning_rate: Float. Learning rate of the default optimizer.
        dropout: Float in [0, 1). Dropout in the head.
        validation_data: Optional `(x_val, y_val)`; features are extracted
            once for them too.
        verbose: 0, 1 or 2. Verbosity of extraction and `fit`.
        preprocessing: As in `add_head`.
        pooling: As in `add_head`.
        input_shape: As in `add_head`.
        sequence_length: As in `add_head`.
        features: Optional precomputed features of `x` (skips extraction).

    Returns:
        The full `keras.Model` (raw inputs -> predictions), compiled with the
        head's loss and metrics; its `history` attribute holds the head's
        training `History`.
    """
    task = _check_task(task, num_classes)
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"`epochs` must be a positive integer. Received: {epochs!r}")
    extractor = feature_extractor(
        backbone,
        preprocessing=preprocessing,
        pooling=pooling,
        input_shape=input_shape,
        sequence_length=sequence_length,
    )
    if features is None:
        features = extract_features(
            extractor, x, batch_size=batch_size, verbose=1 if verbose else 0
        )
    y = np.asarray(y)
    if len(features) != len(y):
        raise ValueError(
            f"`x` and `y` must have the same length. Received: {len(features)} "
            f"inputs and {len(y)} targets."
        )
    val = None
    if validation_data is not None:
        x_val, y_val = validation_data
        val = (
            extract_features(
                extractor, x_val, batch_size=batch_size, verbose=1 if verbose else 0
            ),
            np.asarray(y_val),
        )
    head = build_head(
        features.shape[-1], num_classes=num_classes, task=task, dropout=dropout
    )
    if task == "classification":
        loss, metrics = "sparse_categorical_crossentropy", ["accuracy"]
    else:
        loss, metrics = "mean_squared_error", ["mean_absolute_error"]
    head.compile(
        optimizer=optimizer or keras.optimizers.Adam(learning_rate),
        loss=loss,
        metrics=metrics,
    )
    history = head.fit(
        features,
        y,
        batch_size=batch_size,
        epochs=epochs,
        validation_data=val,
        verbose=progress_verbose(verbose),
    )
    model = add_head(
        backbone,
        head=head,
        preprocessing=preprocessing,
        pooling=pooling,
        input_shape=input_shape,
        sequence_length=sequence_length,
    )
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate), loss=loss, metrics=metrics
    )
    model.history = history
    return model
