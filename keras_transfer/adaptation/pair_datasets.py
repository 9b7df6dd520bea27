"""Pair labelled source data with unlabelled target data for `fit()`."""

import warnings

import numpy as np

from keras_transfer.api_export import keras_transfer_export


def _as_dataset(data, arg):
    import tensorflow as tf

    if isinstance(data, tf.data.Dataset):
        return data
    if isinstance(data, (tuple, list)):
        arrays = tuple(np.asarray(a) for a in data)
        lengths = {len(a) for a in arrays}
        if len(lengths) != 1:
            raise ValueError(
                f"`{arg}` arrays must have the same length. Received lengths "
                f"{[len(a) for a in arrays]}"
            )
        return tf.data.Dataset.from_tensor_slices(arrays)
    if isinstance(data, dict):
        raise ValueError(
            f"`{arg}` must be a tf.data.Dataset, an array or a tuple of arrays. "
            f"Received: {arg} of type dict"
        )
    return tf.data.Dataset.from_tensor_slices(np.asarray(data))


def _split(element, arg):
    """(x, y, w) from a dataset element: a tensor, (x,), (x, y) or (x, y, w)."""
    if isinstance(element, (tuple, list)):
        if not 1 <= len(element) <= 3:
            raise ValueError(
                f"`{arg}` elements must be x, (x, y) or (x, y, sample_weight). "
                f"Received a tuple of {len(element)}"
            )
        return tuple(element) + (None,) * (3 - len(element))
    return element, None, None


@keras_transfer_export("keras_transfer.adaptation.pair_datasets")
def pair_datasets(source, target, batch_size=32, shuffle=True, seed=None,
                  drop_remainder=True):
    """Pair labelled source batches with unlabelled target batches.

    Returns a `tf.data.Dataset` of `({"source": x_s, "target": x_t}, y_s)`
    batches for `DomainAdaptationModel.fit()`. An epoch runs through the
    longer of the two sets once; the shorter one repeats (and reshuffles).

    If the target carries labels, a warning says they are kept only for the
    `target_accuracy` metric (the batches are then
    `({"source": x_s, "target": x_t}, {"source": y_s, "target": y_t})`);
    they are never used for training.

    Args:
        source: `(x, y)` or `(x, y, sample_weight)` arrays, or an unbatched
            `tf.data.Dataset` of such tuples.
        target: Array `x`, or an unbatched `tf.data.Dataset` of `x`.
        batch_size: Int, >= 1. Samples per domain in a batch. Defaults to
            `32`.
        shuffle: Boolean. Whether to shuffle each set every epoch. Defaults to
            `True`.
        seed: Int or `None`. Shuffle seed. Defaults to `None`.
        drop_remainder: Boolean. Whether to drop the last incomplete batch
            (keeps every batch large enough for batch statistics such as
            CORAL's covariance). Defaults to `True`.

    Returns:
        A batched `tf.data.Dataset`.

    Examples:

        >>> import keras_transfer
        >>> xs, ys = np.zeros((10, 3), "float32"), np.zeros((10,), "int32")
        >>> xt = np.ones((6, 3), "float32")
        >>> data = keras_transfer.adaptation.pair_datasets((xs, ys), xt, batch_size=5)
        >>> x, y = next(iter(data))
        >>> x["source"].shape, x["target"].shape, y.shape
        (TensorShape([5, 3]), TensorShape([5, 3]), TensorShape([5]))
        >>> len(data)
        2
    """
    import tensorflow as tf

    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(
            f"`batch_size` must be a positive int. Received: batch_size={batch_size}"
        )
    src = _as_dataset(source, "source")
    tgt = _as_dataset(target, "target")
    src_spec = _split(src.element_spec, "source")
    tgt_spec = _split(tgt.element_spec, "target")
    if src_spec[1] is None:
        raise ValueError(
            "`source` must carry labels: (x, y) arrays or a dataset of (x, y). "
            "Received elements with no labels."
        )
    if src_spec[0].shape.as_list() != tgt_spec[0].shape.as_list():
        raise ValueError(
            "`source` and `target` must have the same feature shape. Received: "
            f"source element shape {src_spec[0].shape}, target element shape "
            f"{tgt_spec[0].shape}"
        )
    target_labels = tgt_spec[1] is not None
    if target_labels:
        warnings.warn(
            "pair_datasets: `target` carries labels. Unsupervised adaptation "
            "does not train on them: they are kept only for the "
            "`target_accuracy` metric.",
            stacklevel=2,
        )

    n_src = int(src.cardinality())
    n_tgt = int(tgt.cardinality())
    for arg, n in (("source", n_src), ("target", n_tgt)):
        if 0 <= n < batch_size:
            raise ValueError(
                f"`{arg}` has {n} samples, fewer than one batch "
                f"(batch_size={batch_size}): every batch would repeat them. "
                f"Use a `batch_size` of at most {n}, or more {arg} data."
            )
    if shuffle:
        buf_s = n_src if n_src > 0 else 10_000
        buf_t = n_tgt if n_tgt > 0 else 10_000
        src = src.shuffle(buf_s, seed=seed, reshuffle_each_iteration=True)
        tgt = tgt.shuffle(
            buf_t, seed=None if seed is None else seed + 1,
            reshuffle_each_iteration=True,
        )
    if n_src >= 0 and n_tgt >= 0 and n_tgt > n_src:
        src = src.repeat()
    else:
        tgt = tgt.repeat()
    src = src.batch(batch_size, drop_remainder=drop_remainder)
    tgt = tgt.batch(batch_size, drop_remainder=drop_remainder)

    def pair(s, t):
        xs, ys, ws = _split(s, "source")
        xt, yt, _ = _split(t, "target")
        x = {"source": xs, "target": xt}
        y = {"source": ys, "target": yt} if target_labels else ys
        return (x, y) if ws is None else (x, y, ws)

    paired = tf.data.Dataset.zip((src, tgt)).map(pair)
    if n_src >= 0 and n_tgt >= 0:
        longer = max(n_src, n_tgt)
        steps = longer // batch_size if drop_remainder else -(-longer // batch_size)
        paired = paired.take(steps)
    return paired.prefetch(tf.data.AUTOTUNE)
