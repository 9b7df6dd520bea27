"""SHOT: source-free adaptation of the feature extractor."""

import keras
import numpy as np
from keras import ops

from keras_transfer.adaptation import _test_time
from keras_transfer.adaptation.adabn import reestimate_batch_norm
from keras_transfer.api_export import keras_transfer_export
from keras_transfer.utils.checks import check_positive, check_positive_int


def _shot_loss(from_logits, diversity_weight, pseudo_label_weight):
    def shot_loss(pseudo_labels, y_pred):
        p = _test_time.probabilities(y_pred, from_logits)
        # Information maximization: confident per sample (low entropy) ...
        loss = _test_time.entropy(p)
        # ... and diverse over the batch (high entropy of the mean prediction).
        mean = ops.mean(p, axis=0, keepdims=True)
        loss = loss - diversity_weight * _test_time.entropy(mean)
        if pseudo_label_weight:
            labels = ops.cast(ops.reshape(pseudo_labels, (-1,)), "int32")
            one_hot = ops.one_hot(labels, ops.shape(p)[-1])
            ce = -ops.sum(one_hot * ops.log(ops.clip(p, 1e-8, 1.0)), axis=-1)
            loss = loss + pseudo_label_weight * ce
        return loss

    return shot_loss


def cluster_pseudo_labels(features, probs, rounds=1):
    """SHOT's self-supervised pseudo-labels from class centroids.

    Features are extended with a constant 1 and L2-normalized; the first
    centroids are the prediction-weighted means of the features (weighted
    k-means, one step); each sample takes the class of the nearest centroid
    by cosine distance; centroids are then recomputed from these hard
    labels (`rounds` times) and the labels reassigned.
    """
    features = np.asarray(features, "float64").reshape(len(features), -1)
    features = np.concatenate([features, np.ones((len(features), 1))], axis=1)
    features /= np.linalg.norm(features, axis=1, keepdims=True) + 1e-12
    probs = np.asarray(probs, "float64")
    centroids = probs.T @ features / (probs.sum(axis=0)[:, None] + 1e-8)
    labels = _nearest(features, centroids)
    for _ in range(rounds):
        one_hot = np.eye(probs.shape[1])[labels]
        counts = one_hot.sum(axis=0)
        centroids = one_hot.T @ features / (counts[:, None] + 1e-8)
        # A class no sample is assigned to keeps no centroid.
        valid = counts > 0
        labels = np.flatnonzero(valid)[_nearest(features, centroids[valid])]
    return labels.astype("int32")


def _nearest(features, centroids):
    norms = np.linalg.norm(centroids, axis=1, keepdims=True) + 1e-12
    return np.argmax(features @ (centroids / norms).T, axis=1)


@keras_transfer_export("keras_transfer.adaptation.shot")
def shot(
    features,
    classifier,
    target_x,
    epochs=10,
    batch_size=64,
    optimizer=None,
    diversity_weight=1.0,
    pseudo_label_weight=0.3,
    from_logits=False,
    copy=True,
    seed=0,
    callbacks=None,
    verbose=0,
):
    """Source-free adaptation of a feature extractor to unlabelled target data.

    Liang et al. (2020), "Do We Really Need to Access the Source Data?
    Source Hypothesis Transfer for Unsupervised Domain Adaptation" (SHOT):
    the source classifier (the hypothesis) is frozen and the feature
    extractor is trained on the target data alone, with

    - information maximization: the mean per-sample prediction entropy
      minus `diversity_weight` times the entropy of the batch's mean
      prediction (confident and diverse predictions), and
    - self-supervised pseudo-labels, weighted by `pseudo_label_weight`:
      before each epoch, class centroids are computed in feature space from
      the current predictions (prediction-weighted means of the
      L2-normalized features), each target sample takes the class of its
      nearest centroid (cosine), centroids are recomputed from those labels
      and the labels reassigned; the cross-entropy to these labels is added.

    No source data is needed. The training is `model.fit` on a thin wrapper
    `classifier(features(x))` whose classifier is frozen (`trainable=False`,
    so its BatchNorm layers, if any, stay in inference mode), one `fit` epoch
    per pseudo-labelling round over shuffled full batches. BatchNorm layers
    of `features` train in training mode (batch statistics); their moving
    statistics are re-estimated on `target_x` (as `adabn` does) before each
    pseudo-labelling round and at the end, so pseudo-labels and the returned
    model's predictions use target statistics (PyTorch's BatchNorm, with
    its momentum of 0.1, tracks them within a few steps; Keras's 0.99 would
    not). The paper's
    source-side recipe (label smoothing, weight-normalized classifier) is
    about how the source model was trained and is not part of this call.

    The way back: with `copy=True` (the default) `features` and `classifier`
    are not touched and the adapted model holds copies. With `copy=False`
    `features` is trained in place; keep `weights = features.get_weights()`
    to restore it with `features.set_weights(weights)`. The classifier is
    never changed, and layers' `trainable` flags are restored.

    Args:
        features: Keras model or layer mapping inputs to features (the part
            that is adapted).
        classifier: Keras model or layer mapping features to class
            predictions (kept fixed).
        target_x: Array of unlabelled target inputs, shape `(samples, ...)`,
            at least one batch.
        epochs: Integer. Epochs (and pseudo-labelling rounds). Defaults to
            `10`.
        batch_size: Integer. Target samples per step, at least 2. Defaults
            to `64`.
        optimizer: A Keras optimizer. Defaults to
            `keras.optimizers.SGD(1e-3, momentum=0.9, nesterov=True)`.
        diversity_weight: Float. Weight of the diversity term. Defaults to
            `1.0` (the paper's).
        pseudo_label_weight: Float. Weight of the pseudo-label cross-entropy
            (`beta` in the paper, 0 gives SHOT-IM). Defaults to `0.3` (the
            paper's).
        from_logits: Boolean. Whether `classifier` outputs logits (else
            probabilities). Defaults to `False`.
        copy: Boolean. Adapt copies (`True`, the default) or the given
            models.
        seed: Integer. Seed of the batch order. Defaults to `0`.
        callbacks: List of Keras callbacks passed to each `fit`.
        verbose: `fit`'s verbosity. Defaults to `0`.

    Returns:
        A `keras.Sequential` model `[features, classifier]` with the adapted
        features and the unchanged classifier.

    Examples:

        >>> import keras_transfer
        >>> features = keras.Sequential([keras.Input((4,)),
        ...     keras.layers.Dense(8, activation="relu")])
        >>> classifier = keras.Sequential([keras.Input((8,)),
        ...     keras.layers.Dense(3, activation="softmax")])
        >>> target = np.random.default_rng(0).normal(size=(64, 4))
        >>> adapted = keras_transfer.adaptation.shot(
        ...     features, classifier, target, epochs=2, batch_size=32)
        >>> adapted.predict(target, verbose=0).shape
        (64, 3)
        >>> [np.array_equal(a, b) for a, b in zip(classifier.get_weights(),
        ...     adapted.layers[1].get_weights())]
        [True, True]
    """
    _test_time.check_model(features, "features")
    _test_time.check_model(classifier, "classifier")
    target = _test_time.as_target_array(target_x)
    epochs = check_positive_int("epochs", epochs)
    batch_size = _test_time.check_batch_size(
        batch_size, len(target), what="batch statistics and diversity"
    )
    diversity_weight = float(
        check_positive("diversity_weight", diversity_weight, allow_zero=True)
    )
    pseudo_label_weight = float(
        check_positive("pseudo_label_weight", pseudo_label_weight, allow_zero=True)
    )
    if optimizer is not None and not isinstance(optimizer, keras.optimizers.Optimizer):
        raise TypeError(
            "`optimizer` must be a Keras optimizer instance. "
            f"Received: optimizer={optimizer!r}"
        )
    if copy:
        features = _test_time.copy_model(features, "features")
        classifier = _test_time.copy_model(classifier, "classifier")
    with _test_time.strategy_scope(features):
        adapted = keras.Sequential([features, classifier], name="shot_adapted")
        wrapper = _test_time.TargetLossModel(adapted, name="shot")
        wrapper.compile(
            optimizer=optimizer
            or keras.optimizers.SGD(1e-3, momentum=0.9, nesterov=True),
            loss=_shot_loss(from_logits, diversity_weight, pseudo_label_weight),
        )
    saved = classifier.trainable
    rng = np.random.default_rng(seed)
    try:
        classifier.trainable = False
        if not features.trainable_weights:
            raise ValueError(
                "`features` has no trainable weights: SHOT trains the feature "
                "extractor. Received: features with trainable=False or no weights."
            )
        has_batch_norm = bool(_test_time.batch_norm_layers(features))
        for epoch in range(epochs):
            if has_batch_norm:
                reestimate_batch_norm(features, target, batch_size)
            labels = np.zeros((len(target),), "int32")
            if pseudo_label_weight:
                feats = features.predict(target, batch_size=256, verbose=0)
                probs = _test_time.probabilities(
                    classifier.predict(feats, batch_size=256, verbose=0), from_logits
                )
                labels = cluster_pseudo_labels(feats, keras.ops.convert_to_numpy(probs))
            index = _test_time.epoch_batches(len(target), batch_size, rng)
            wrapper.fit(
                target[index],
                labels[index],
                batch_size=batch_size,
                epochs=epoch + 1,
                initial_epoch=epoch,
                shuffle=False,
                callbacks=callbacks,
                verbose=verbose,
            )
        if has_batch_norm:
            reestimate_batch_norm(features, target, batch_size)
    finally:
        classifier.trainable = saved
    return adapted
