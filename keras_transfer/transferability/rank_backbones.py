"""rank_backbones: score candidate pretrained models on a labelled target sample."""

import time

import keras
import numpy as np

from keras_transfer.api_export import keras_transfer_export
from keras_transfer.backbones._graph import all_layer_names, find_layer_path
from keras_transfer.backbones.backbone import Backbone
from keras_transfer.backbones.heads import has_known_input
from keras_transfer.transferability.h_score import h_score
from keras_transfer.transferability.leep import leep
from keras_transfer.transferability.logme import logme
from keras_transfer.transferability.nce import nce
from keras_transfer.transferability.transrate import transrate
from keras_transfer.utils.progress import progress_verbose

FEATURE_METRICS = ("logme", "h_score", "transrate")
OUTPUT_METRICS = ("leep", "nce")


def _h_score_regularized(features, labels):
    return h_score(features, labels, shrinkage="auto")


def _transrate_standardized(features, labels):
    scale = features.std(axis=0)
    scale[scale == 0] = 1.0
    return transrate((features - features.mean(axis=0)) / scale, labels)


def _nce_from_probabilities(probabilities, labels):
    return nce(np.argmax(probabilities, axis=-1), labels)


_SCORERS = {
    "logme": logme,
    "h_score": _h_score_regularized,
    "transrate": _transrate_standardized,
    "leep": leep,
    "nce": _nce_from_probabilities,
}


@keras_transfer_export("keras_transfer.transferability.rank_backbones")
def rank_backbones(
    candidates,
    data,
    metric="logme",
    batch_size=32,
    verbose=1,
):
    """Rank pretrained models for a target task before fine-tuning any of them.

    For each candidate, extracts features of the labelled target sample batch
    by batch (only one batch of inputs and the pooled features are held in
    memory), averages 4D feature maps over their spatial axes (and any other
    higher-rank output over all but the last axis), scores the features with
    the chosen transferability metric(s) and times it. Higher scores predict
    better fine-tuned accuracy; LogME is the default because it is fast,
    needs no hyper-parameters and is the most reliable in published
    comparisons.

    Metrics: `"logme"`, `"h_score"` (the shrinkage-regularized H-score, which
    stays sound when features outnumber samples), `"transrate"` (on
    standardised features, so that models with different feature scales are
    comparable), and, on the candidate's full output which must then be
    source-class probabilities, `"leep"` and `"nce"`; `"all"` for the three
    feature metrics; a list of these; or callables `fn(features, labels)`.

    Args:
        candidates: Dict `name -> candidate` or list of candidates (named by
            `model.name`). A candidate is a Keras model (a `Backbone`, a
            keras.applications or keras-hub model, a functional, Sequential
            or subclassed model of your own), a tuple `(model, cut)` where
            `cut` is the name of the layer whose output are the features
            (also a layer inside a nested model), or a dict with keys
            `"model"`, optional `"cut"` and optional `"preprocess"` (a
            function applied to each batch of inputs, e.g. resizing to the
            model's input size).
        data: Tuple `(x, y)` of arrays, or a `tf.data.Dataset` of batched
            `(x, y)`. Labels are class indices (or one-hot, then argmax).
        metric: String, callable, or list of them. See above.
            Default `"logme"`. The table is sorted by the first one.
        batch_size: Integer. Batch size for array inputs. Default 32.
        verbose: Integer. 1 shows a progress bar per candidate, 0 is silent.

    Returns:
        A pandas `DataFrame` (a list of dicts when pandas is not installed),
        one row per candidate, best first, with columns `"name"`, one per
        metric, `"num_features"` and `"seconds"` (feature extraction plus
        scoring).

    Examples:

        >>> rng = np.random.default_rng(0)
        >>> x = rng.normal(size=(60, 8)).astype("float32")
        >>> y = (x[:, 0] > 0).astype("int64")
        >>> informative = keras.Sequential([keras.Input((8,)), keras.layers.Dense(
        ...     4, kernel_initializer=keras.initializers.Identity())])
        >>> random = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
        >>> table = rank_backbones({"informative": informative, "random": random},
        ...                        (x, y), verbose=0)
        >>> list(table["name"])
        ['informative', 'random']
    """
    metrics = _metric_list(metric)
    entries = _candidate_list(candidates)
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(
            f"`batch_size` must be a positive integer. Received: batch_size="
            f"{batch_size}"
        )
    batches, num_batches = _batch_source(data, int(batch_size))
    rows = []
    for name, model, cut, preprocess in entries:
        start = time.perf_counter()
        features, outputs, labels = _extract(
            name, model, cut, preprocess, batches, num_batches, metrics, verbose
        )
        row = {"name": name}
        for metric_name, scorer, needs_outputs in metrics:
            inputs = outputs if needs_outputs else features
            try:
                row[metric_name] = float(scorer(inputs, labels))
            except ValueError as e:
                where = (
                    "the candidate's output (it must be source-class "
                    "probabilities for this metric)"
                    if needs_outputs
                    else "the features"
                )
                raise ValueError(
                    f"Candidate {name!r}, metric {metric_name!r} on {where}: {e}"
                ) from e
        row["num_features"] = int(features.shape[1])
        row["seconds"] = time.perf_counter() - start
        rows.append(row)
    first = metrics[0][0]
    rows.sort(key=lambda r: r[first], reverse=True)
    try:
        import pandas as pd
    except ImportError:
        return rows
    return pd.DataFrame(rows)


def _metric_list(metric):
    if isinstance(metric, str) and metric == "all":
        metric = list(FEATURE_METRICS)
    if isinstance(metric, str) or callable(metric):
        metric = [metric]
    if not isinstance(metric, (list, tuple)) or not metric:
        raise ValueError(
            "`metric` must be a metric name, 'all', a callable or a non-empty "
            f"list of them. Received: metric={metric!r}"
        )
    out = []
    for m in metric:
        if callable(m):
            out.append((getattr(m, "__name__", "custom"), m, False))
        elif m in _SCORERS:
            out.append((m, _SCORERS[m], m in OUTPUT_METRICS))
        else:
            raise ValueError(
                f"`metric` must be one of {sorted(_SCORERS)}, 'all' or a callable "
                f"fn(features, labels). Received: metric={m!r}"
            )
    names = [m[0] for m in out]
    if len(set(names)) != len(names):
        raise ValueError(f"`metric` names must be unique. Received: {names}")
    return out


def _candidate_list(candidates):
    if isinstance(candidates, dict):
        items = list(candidates.items())
    elif isinstance(candidates, (list, tuple)):
        items = []
        for c in candidates:
            model = c[0] if isinstance(c, tuple) else (
                c.get("model") if isinstance(c, dict) else c
            )
            items.append((getattr(model, "name", f"candidate_{len(items)}"), c))
    else:
        raise ValueError(
            "`candidates` must be a dict name -> model or a list of models. "
            f"Received: {type(candidates).__name__}"
        )
    if not items:
        raise ValueError("`candidates` is empty: pass at least one model.")
    names = [name for name, _ in items]
    if len(set(names)) != len(names):
        raise ValueError(
            f"`candidates` have duplicate names {names}: pass a dict "
            "name -> model to name them."
        )
    entries = []
    for name, c in items:
        cut, preprocess = None, None
        if isinstance(c, tuple):
            if len(c) != 2:
                raise ValueError(
                    f"`candidates[{name!r}]` as a tuple must be (model, cut). "
                    f"Received a tuple of length {len(c)}."
                )
            model, cut = c
        elif isinstance(c, dict):
            unknown = set(c) - {"model", "cut", "preprocess"}
            if "model" not in c or unknown:
                raise ValueError(
                    f"`candidates[{name!r}]` as a dict needs the key 'model' and "
                    "optionally 'cut' and 'preprocess'. Received keys: "
                    f"{sorted(c)}"
                )
            model, cut, preprocess = c["model"], c.get("cut"), c.get("preprocess")
        else:
            model = c
        model = getattr(model, "layer", model)  # a GroupedLayer's layer
        if not isinstance(model, keras.layers.Layer):
            raise ValueError(
                f"`candidates[{name!r}]` must be a Keras model or layer (a "
                "Backbone, a keras.applications or keras-hub model, a model of "
                f"your own). Received: {type(model).__name__}"
            )
        if cut is not None:
            if not has_known_input(model):
                raise ValueError(
                    f"`cut` needs a functional or Sequential model; candidate "
                    f"{name!r} is subclassed. Received: cut={cut!r}"
                )
            if find_layer_path(model, cut) is None:
                raise ValueError(
                    f"`cut` layer {cut!r} not found in candidate {name!r} (nested "
                    "models searched too). Some of its layers: "
                    f"{all_layer_names(model)[-8:]}"
                )
        if preprocess is not None and not callable(preprocess):
            raise ValueError(
                f"`preprocess` of candidate {name!r} must be callable. "
                f"Received: {preprocess!r}"
            )
        entries.append((str(name), model, cut, preprocess))
    return entries


def _batch_source(data, batch_size):
    """A function returning an iterator of (x, y) numpy batches, and its length."""
    if hasattr(data, "element_spec"):
        cardinality = int(data.cardinality())
        total = cardinality if cardinality > 0 else None

        def batches():
            yield from data.as_numpy_iterator()

        return batches, total
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise ValueError(
            "`data` must be a tuple (x, y) of arrays or a tf.data.Dataset of "
            f"(x, y) batches. Received: {type(data).__name__}"
            + (f" of length {len(data)}" if isinstance(data, (tuple, list)) else "")
        )
    x, y = data
    n = len(x)
    if len(y) != n:
        raise ValueError(
            "`data` inputs and labels must have the same number of samples. "
            f"Received: {n} inputs and {len(y)} labels."
        )

    def batches():
        for i in range(0, n, batch_size):
            yield x[i : i + batch_size], np.asarray(y[i : i + batch_size])

    return batches, -(-n // batch_size)


def _pool(features):
    features = np.asarray(features)
    if features.ndim > 2:
        features = features.mean(axis=tuple(range(1, features.ndim - 1)))
    return features.reshape(features.shape[0], -1)


def _extractor(model, cut, want_outputs):
    """A callable batch -> [features] (+ [model outputs] when wanted)."""
    if not has_known_input(model):  # subclassed: run it as it is
        return model
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    if cut is None:
        return keras.Model(inputs, model.outputs[0])
    if any(layer.name == cut for layer in model.layers):
        outputs = [model.get_layer(cut).output]
        if want_outputs:
            outputs.append(model.outputs[0])
        return keras.Model(inputs, outputs)
    # A layer inside a nested model: a re-traced graph up to it.
    features = Backbone.from_model(model, cut=cut)
    if not want_outputs:
        return features
    full = keras.tree.flatten(model(features.inputs))[0]
    return keras.Model(features.inputs, [features.outputs[0], full])


def _extract(name, model, cut, preprocess, batches, num_batches, metrics, verbose):
    want_outputs = any(needs for _, _, needs in metrics)
    extractor = _extractor(model, cut, want_outputs)
    bar = (
        keras.utils.Progbar(
            num_batches, unit_name="batch", verbose=progress_verbose(1)
        )
        if verbose
        else None
    )
    if verbose:
        print(f"Candidate {name}: extracting features")
    feats, probs, labels = [], [], []
    for step, (x, y) in enumerate(batches()):
        if preprocess is not None:
            x = preprocess(x)
        result = extractor.predict_on_batch(x)
        result = result if isinstance(result, (list, tuple)) else [result]
        feats.append(_pool(keras.ops.convert_to_numpy(result[0])))
        if want_outputs:
            probs.append(_pool(keras.ops.convert_to_numpy(result[-1])))
        y = np.asarray(y)
        labels.append(np.argmax(y, axis=-1) if y.ndim == 2 and y.shape[1] > 1 else y)
        if bar is not None:
            bar.update(step + 1)
    if not feats:
        raise ValueError("`data` is empty: it yielded no batches.")
    features = np.concatenate(feats)
    out = np.concatenate(probs) if want_outputs else None
    return features, out, np.concatenate(labels).reshape(-1)
