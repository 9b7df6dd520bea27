"""Tests for `keras_transfer.schedules`: formulas, config, use in training."""

import math

import keras
import numpy as np
import pytest

from keras_transfer.optimizers import DiscriminativeLR
from keras_transfer.schedules import OneCycle, SlantedTriangular, WarmupDecay
from tests.testing import run_model_saving_test, run_serialization_test


# Reference formulas, written from the papers / fastai's description with
# plain Python math, independently of the implementation.
def stlr_reference(t, max_lr, total, cut_frac, ratio):
    # Howard & Ruder (2018), eq. 3.
    t = min(t, total)
    cut = math.floor(total * cut_frac)
    if t < cut:
        p = t / cut
    else:
        p = 1 - (t - cut) / (cut * (1 / cut_frac - 1))
    return max_lr * (1 + p * (ratio - 1)) / ratio


def one_cycle_reference(t, max_lr, total, pct, div, final_div):
    # fastai: combined_cos(pct, lr_max / div, lr_max, lr_max / (div * final_div)),
    # each phase cosine-annealed: start + (1 + cos(pi * (1 - pos))) * (end - start) / 2
    def anneal(start, end, pos):
        return start + (1 + math.cos(math.pi * (1 - pos))) * (end - start) / 2

    t = min(t, total)
    n_up = pct * total
    if t < n_up:
        return anneal(max_lr / div, max_lr, t / n_up)
    return anneal(max_lr, max_lr / (div * final_div), (t - n_up) / (total - n_up))


def warmup_reference(t, peak, warmup, decay, shape, initial, final):
    if t < warmup:
        return initial + (peak - initial) * t / warmup
    p = min((t - warmup) / decay, 1.0)
    if shape == "cosine":
        return final + 0.5 * (peak - final) * (1 + math.cos(math.pi * p))
    return peak - (peak - final) * p


def values(schedule, steps):
    return np.array([float(schedule(np.int64(t))) for t in steps])


@pytest.mark.parametrize(
    "max_lr, total, cut_frac, ratio",
    [(0.01, 100, 0.1, 32), (1.0, 37, 0.3, 5), (3e-4, 1000, 0.05, 1.0)],
)
def test_slanted_triangular_matches_the_paper(max_lr, total, cut_frac, ratio):
    schedule = SlantedTriangular(max_lr, total, cut_frac=cut_frac, ratio=ratio)
    steps = list(range(0, total + 20, max(1, total // 40))) + [total, total + 5]
    expected = [stlr_reference(t, max_lr, total, cut_frac, ratio) for t in steps]
    np.testing.assert_allclose(values(schedule, steps), expected, rtol=1e-5)
    cut = math.floor(total * cut_frac)
    assert float(schedule(cut)) == pytest.approx(max_lr, rel=1e-6)


@pytest.mark.parametrize(
    "max_lr, total, pct, div, final_div",
    [(0.1, 100, 0.25, 25.0, 1e5), (3e-3, 57, 0.4, 10.0, 100.0), (1.0, 10, 0.1, 1, 1)],
)
def test_one_cycle_matches_fastai(max_lr, total, pct, div, final_div):
    schedule = OneCycle(max_lr, total, pct, div, final_div)
    steps = list(range(0, total + 10)) + [total * 3]
    expected = [
        one_cycle_reference(t, max_lr, total, pct, div, final_div) for t in steps
    ]
    # float32 arithmetic: absolute tolerance relative to the peak.
    np.testing.assert_allclose(
        values(schedule, steps), expected, rtol=1e-5, atol=1e-6 * max_lr
    )
    assert float(schedule(0)) == pytest.approx(max_lr / div, rel=1e-6)
    assert float(schedule(total)) == pytest.approx(max_lr / (div * final_div), rel=1e-4)


@pytest.mark.parametrize("shape", ["cosine", "linear"])
@pytest.mark.parametrize(
    "peak, warmup, decay, initial, final",
    [(1e-3, 10, 90, 0.0, 0.0), (0.5, 0, 20, 0.0, 0.05), (2.0, 7, 13, 0.1, 0.2)],
)
def test_warmup_decay_matches_the_formula(shape, peak, warmup, decay, initial, final):
    schedule = WarmupDecay(peak, warmup, decay, shape, initial, final)
    steps = list(range(0, warmup + decay + 10))
    expected = [
        warmup_reference(t, peak, warmup, decay, shape, initial, final) for t in steps
    ]
    np.testing.assert_allclose(values(schedule, steps), expected, rtol=1e-5, atol=1e-9)


def test_config_round_trip():
    for schedule in (
        SlantedTriangular(0.01, 100, cut_frac=0.2, ratio=10, name="stlr"),
        OneCycle(0.1, 50, pct_start=0.3, div_factor=10, final_div_factor=1e3),
        WarmupDecay(1e-3, 5, 50, shape="linear", initial_lr=1e-5, final_lr=1e-6),
    ):
        revived = run_serialization_test(schedule)
        steps = [0, 3, 17, 49, 120]
        np.testing.assert_allclose(values(revived, steps), values(schedule, steps))


def make_model():
    return keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(8, activation="relu", name="body"),
            keras.layers.Dense(1, name="head"),
        ],
        name="net",
    )


def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 4)).astype("float32")
    return x, (x @ np.array([[1.0], [-2.0], [0.5], [3.0]])).astype("float32")


@pytest.mark.parametrize(
    "schedule",
    [
        SlantedTriangular(0.05, 16, cut_frac=0.25, ratio=8),
        OneCycle(0.05, 16),
        WarmupDecay(0.05, 4, 12),
    ],
    ids=["stlr", "one_cycle", "warmup"],
)
def test_fit_with_discriminative_lr_follows_schedule(schedule):
    x, y = data()
    model = make_model()
    opt = DiscriminativeLR(keras.optimizers.SGD(schedule), multipliers={"body/": 0.5})
    model.compile(optimizer=opt, loss="mse")
    seen = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            # On JAX the training state is attached to the variables only
            # when a callback reads `self.model`.
            optimizer = self.model.optimizer
            seen.append(float(keras.ops.convert_to_numpy(optimizer.learning_rate)))

    history = model.fit(x, y, batch_size=8, epochs=3, verbose=0, callbacks=[Record()])
    np.testing.assert_allclose(seen, values(schedule, range(12)), rtol=1e-6)
    assert history.history["loss"][-1] < history.history["loss"][0]


def test_saving_a_model_compiled_with_a_schedule(tmp_path):
    x, y = data()
    model = make_model()
    schedule = OneCycle(0.05, 20)
    model.compile(
        optimizer=DiscriminativeLR(keras.optimizers.Adam(schedule), {"body/": 0.1}),
        loss="mse",
    )
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    loaded = run_model_saving_test(model, x, tmp_path)
    revived = loaded.optimizer.inner_optimizer._learning_rate
    assert isinstance(revived, OneCycle)
    assert revived.get_config() == schedule.get_config()
    assert float(loaded.optimizer.learning_rate) == pytest.approx(float(schedule(4)))


def test_schedule_under_strategy_matches_single_device(strategy):
    x, y = data()

    def train():
        keras.utils.set_random_seed(7)
        model = make_model()
        model.compile(
            optimizer=DiscriminativeLR(
                keras.optimizers.SGD(SlantedTriangular(0.05, 8, cut_frac=0.25)),
                multipliers={"body/": 0.3},
            ),
            loss="mse",
        )
        return model

    single = train()
    single.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    with strategy.scope():
        mirrored = train()
    mirrored.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    for a, b in zip(single.trainable_variables, mirrored.trainable_variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: SlantedTriangular(-1.0, 100), "`max_lr`.*-1.0"),
        (lambda: SlantedTriangular(0.1, 1), "`total_steps`.*1"),
        (lambda: SlantedTriangular(0.1, 100.5), "`total_steps`.*100.5"),
        (lambda: SlantedTriangular(0.1, 100, cut_frac=1.0), "`cut_frac`.*1.0"),
        (lambda: SlantedTriangular(0.1, 100, ratio=0.5), "`ratio`.*0.5"),
        (lambda: SlantedTriangular(0.1, 5, cut_frac=0.1), "`total_steps \\* cut"),
        (lambda: OneCycle(0.0, 100), "`max_lr`.*0.0"),
        (lambda: OneCycle(0.1, 100, pct_start=0.0), "`pct_start`.*0.0"),
        (lambda: OneCycle(0.1, 100, div_factor=0.5), "`div_factor`.*0.5"),
        (lambda: OneCycle(0.1, 100, final_div_factor=-2), "`final_div_factor`"),
        (lambda: WarmupDecay(0.1, -1, 10), "`warmup_steps`.*-1"),
        (lambda: WarmupDecay(0.1, 1, 0), "`decay_steps`.*0"),
        (lambda: WarmupDecay(0.1, 1, 10, shape="step"), "`shape`.*'step'"),
        (lambda: WarmupDecay(0.1, 1, 10, final_lr=-0.1), "`final_lr`.*-0.1"),
        (lambda: WarmupDecay("0.1", 1, 10), "`peak_lr`.*'0.1'"),
    ],
)
def test_bad_arguments(build, match):
    with pytest.raises(ValueError, match=match):
        build()
