"""rank_backbones: feature extraction, pooling, metrics, table, bad input."""

import sys

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from keras_transfer.transferability import h_score, logme, rank_backbones, transrate


def target(n=60, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(3), n // 3)
    x = rng.normal(size=(n, 6, 6, 2)).astype("float32")
    x[..., 0] += 1.5 * y[:, None, None]  # class signal in channel 0
    return x, y.astype("int64")


def conv_model(name, seed, informative):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((6, 6, 2))
    init = (
        keras.initializers.Constant(np.eye(2).reshape(1, 1, 2, 2))
        if informative
        else "glorot_uniform"
    )
    maps = keras.layers.Conv2D(2, 1, kernel_initializer=init, name="maps")(inputs)
    noise = keras.layers.Conv2D(4, 3, padding="same", name="noise")(inputs)
    both = keras.layers.Concatenate(name="features")(
        [maps if informative else noise, noise]
    )
    pooled = keras.layers.GlobalAveragePooling2D()(both)
    probs = keras.layers.Dense(5, activation="softmax", name="head")(pooled)
    return keras.Model(inputs, probs, name=name)


def test_ranks_informative_model_first_and_matches_direct_scores():
    x, y = target()
    good = conv_model("good", 1, informative=True)
    bad = conv_model("bad", 2, informative=False)
    table = rank_backbones(
        {"bad": (bad, "features"), "good": (good, "features")},
        (x, y), metric="all", batch_size=7, verbose=0,
    )
    assert isinstance(table, pd.DataFrame)
    assert list(table["name"]) == ["good", "bad"]
    assert list(table.columns) == [
        "name", "logme", "h_score", "transrate", "num_features", "seconds",
    ]
    assert (table["seconds"] > 0).all()
    assert list(table["num_features"]) == [6, 8]
    # Features are the spatial mean of the cut layer's 4D maps.
    maps = keras.Model(good.input, good.get_layer("features").output)(x)
    pooled = np.asarray(maps).mean(axis=(1, 2))
    row = table.iloc[0]
    assert row["logme"] == pytest.approx(logme(pooled, y), rel=1e-5)
    assert row["h_score"] == pytest.approx(
        h_score(pooled, y, shrinkage="auto"), rel=1e-4
    )
    standardized = (pooled - pooled.mean(0)) / pooled.std(0)
    assert row["transrate"] == pytest.approx(transrate(standardized, y), rel=1e-4)


def test_dataset_list_output_metrics_and_callables():
    x, y = target()
    good = conv_model("good", 1, informative=True)
    bad = conv_model("bad", 2, informative=False)
    ds = tf.data.Dataset.from_tensor_slices((x, keras.utils.to_categorical(y)))

    def class_gap(features, labels):
        gap = features[labels == 2, 0].mean() - features[labels == 0, 0].mean()
        return float(abs(gap))

    table = rank_backbones(
        [good, {"model": bad, "cut": "features", "preprocess": lambda b: b * 1.0}],
        ds.batch(16),
        metric=["leep", "nce", class_gap],
        verbose=0,
    )
    assert set(table["name"]) == {"good", "bad"}
    assert list(table.columns)[:4] == ["name", "leep", "nce", "class_gap"]
    assert (table["leep"] <= 0).all() and (table["nce"] <= 0).all()
    assert table["leep"].is_monotonic_decreasing


def test_progress_bar_and_memory_bounded_batches(capsys):
    x, y = target(30)
    seen = []

    def preprocess(batch):
        seen.append(len(batch))
        return batch

    model = conv_model("m", 1, informative=True)
    rank_backbones(
        {"m": {"model": model, "cut": "maps", "preprocess": preprocess}},
        (x, y), batch_size=8, verbose=1,
    )
    assert seen == [8, 8, 8, 6]  # never more than one batch at a time
    assert "Candidate m" in capsys.readouterr().out


def test_list_of_dicts_without_pandas(monkeypatch):
    x, y = target(30)
    monkeypatch.setitem(sys.modules, "pandas", None)
    rows = rank_backbones(
        {"a": (conv_model("a", 1, True), "features"),
         "b": (conv_model("b", 2, False), "features")},
        (x, y), verbose=0,
    )
    assert isinstance(rows, list) and rows[0]["name"] == "a"
    assert rows[0]["logme"] > rows[1]["logme"]


def test_bad_input():
    x, y = target(30)
    model = conv_model("m", 1, True)
    with pytest.raises(ValueError, match="`metric` must be one of"):
        rank_backbones({"m": model}, (x, y), metric="accuracy", verbose=0)
    with pytest.raises(ValueError, match="`metric` must be a metric name"):
        rank_backbones({"m": model}, (x, y), metric=[], verbose=0)
    with pytest.raises(ValueError, match="`cut` layer 'nope' not found"):
        rank_backbones({"m": (model, "nope")}, (x, y), verbose=0)
    with pytest.raises(ValueError, match="`candidates` is empty"):
        rank_backbones({}, (x, y), verbose=0)
    with pytest.raises(ValueError, match="must be a Keras model or layer"):
        rank_backbones({"m": "mobilenet"}, (x, y), verbose=0)
    with pytest.raises(ValueError, match="duplicate names"):
        rank_backbones([model, model], (x, y), verbose=0)
    with pytest.raises(ValueError, match="same number of samples"):
        rank_backbones({"m": model}, (x, y[:-1]), verbose=0)
    with pytest.raises(ValueError, match="`data` must be a tuple"):
        rank_backbones({"m": model}, x, verbose=0)
    with pytest.raises(ValueError, match="`batch_size`"):
        rank_backbones({"m": model}, (x, y), batch_size=0, verbose=0)
    with pytest.raises(ValueError, match="needs the key 'model'"):
        rank_backbones({"m": {"cut": "maps"}}, (x, y), verbose=0)
    logits = keras.Sequential([keras.Input((6, 6, 2)), keras.layers.Flatten(),
                               keras.layers.Dense(3)], name="logits")
    with pytest.raises(ValueError, match="Candidate 'l', metric 'leep'.*probabilities"):
        rank_backbones({"l": logits}, (x, y), metric="leep", verbose=0)
    with pytest.raises(ValueError, match="at least 2 classes"):
        rank_backbones({"m": model}, (x, np.zeros(30, dtype=int)), verbose=0)


class _Terminal:
    """A stand-in for a terminal: collects writes, says it is a tty."""

    def __init__(self):
        self.text = ""

    def write(self, text):
        self.text += text

    def flush(self):
        pass

    def isatty(self):
        return True


def test_progress_is_plain_lines_when_output_is_not_a_terminal(capsys, monkeypatch):
    x, y = target(30)
    good = conv_model("good", 1, informative=True)
    rank_backbones({"good": (good, "features")}, (x, y), batch_size=7, verbose=1)
    out = capsys.readouterr().out
    assert "Candidate good: extracting features" in out
    # One plain progress line per candidate, no redraws or colour codes.
    assert "5/5" in out
    for control in ("\x1b", "\r", "\b"):
        assert control not in out, repr(out)
    # On a terminal, Keras's redrawing bar is kept.
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    rank_backbones({"good": (good, "features")}, (x, y), batch_size=7, verbose=1)
    monkeypatch.undo()
    assert "\x1b" in terminal.text or "\r" in terminal.text
