"""Tests for `keras_transfer.lr_find` and `LRFinderResult`."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_transfer import _compat, lr_find
from keras_transfer.lr_finder import LRFinderResult
from keras_transfer.optimizers import DiscriminativeLR
from tests.testing import run_model_saving_test, run_serialization_test


def make_model(name="net"):
    return keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(16, activation="relu", name="body"),
            keras.layers.BatchNormalization(name="bn"),
            keras.layers.Dropout(0.2, name="drop"),
            keras.layers.Dense(3, name="head"),
        ],
        name=name,
    )


def data(n=64):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 6)).astype("float32")
    y = (x[:, 0] > 0).astype("int64") + (x[:, 1] > 0).astype("int64")
    return x, y


LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def state(model):
    """Every variable of the model and its optimizer, by position."""
    variables = list(model.variables) + list(model.optimizer.variables)
    return [np.array(keras.ops.convert_to_numpy(v)) for v in variables]


def assert_same(before, after):
    assert len(before) == len(after)
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)


def trained(optimizer):
    model = make_model()
    model.compile(optimizer=optimizer, loss=LOSS, metrics=["accuracy"])
    x, y = data()
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    return model


def test_model_left_bit_identical():
    model = trained(keras.optimizers.Adam(1e-3))
    before = state(model)
    history = model.history
    flags = [layer.trainable for layer in model.layers]
    iterations = int(model.optimizer.iterations)
    result = lr_find(model, data(), steps=20, batch_size=16, verbose=0)
    assert result.steps >= 10
    assert_same(before, state(model))
    assert int(model.optimizer.iterations) == iterations
    assert float(model.optimizer.learning_rate) == np.float32(1e-3)
    assert model.history is history
    assert [layer.trainable for layer in model.layers] == flags


def test_training_after_the_test_is_the_training_without_it():
    """With a deterministic fit, lr_find leaves no trace on what follows."""
    x, y = data()
    runs = []
    for with_finder in (False, True):
        keras.utils.set_random_seed(7)
        model = keras.Sequential(
            [keras.Input((6,)), keras.layers.Dense(8), keras.layers.Dense(3)]
        )
        model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=LOSS)
        model.fit(x, y, epochs=1, batch_size=16, shuffle=False, verbose=0)
        if with_finder:
            lr_find(model, (x, y), steps=15, batch_size=16, verbose=0)
        model.fit(x, y, epochs=2, batch_size=16, shuffle=False, verbose=0)
        runs.append(model.get_weights())
    assert_same(runs[0], runs[1])


def test_schedule_object_is_restored_and_used():
    schedule = keras.optimizers.schedules.ExponentialDecay(1e-2, 10, 0.5)
    model = trained(keras.optimizers.SGD(schedule))
    before = state(model)
    result = lr_find(model, data(), steps=12, batch_size=16, verbose=0)
    assert result.losses[0] != result.losses[-1]
    assert _compat.learning_rate_object(model.optimizer) is schedule
    assert_same(before, state(model))
    # The next fit traces again with the schedule, not the test's rate.
    x, y = data()
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    step = int(model.optimizer.iterations)
    np.testing.assert_allclose(
        float(model.optimizer.learning_rate), float(schedule(step)), rtol=1e-6
    )


def test_rates_rise_exponentially_and_losses_are_per_batch():
    model = trained(keras.optimizers.SGD(0.01))
    result = lr_find(
        model, data(), start=1e-5, end=1e-1, steps=10, stop_factor=None, verbose=0
    )
    np.testing.assert_allclose(result.learning_rates, np.geomspace(1e-5, 1e-1, 10))
    assert result.steps == 10 and not result.diverged
    assert len(set(np.round(result.losses, 6))) > 5  # not a running mean


def test_stops_when_the_loss_diverges():
    x = np.random.default_rng(1).normal(size=(64, 4)).astype("float32")
    y = x @ np.ones((4, 1), "float32")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    result = lr_find(model, (x, y), start=1e-4, end=1e4, steps=80, verbose=0)
    assert result.diverged
    assert result.steps < 80
    assert result.suggestion() < 1.0


def test_tf_data_and_unbuilt_model():
    x, y = data()
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    model = keras.Sequential([keras.layers.Dense(8), keras.layers.Dense(3)])
    model.compile(optimizer="adam", loss=LOSS)
    result = lr_find(model, dataset, steps=20, verbose=0)  # 4 batches, repeated
    assert result.steps >= 10
    assert model.built
    assert int(model.optimizer.iterations) == 0
    with pytest.raises(ValueError, match="batch_size"):
        lr_find(model, dataset, batch_size=8, verbose=0)


def test_discriminative_lr_scans_the_base_rate_with_ratios_kept():
    x, y = data(16)

    def scan(multipliers):
        keras.utils.set_random_seed(3)
        model = keras.Sequential(
            [
                keras.Input((6,)),
                keras.layers.Dense(8, name="body"),
                keras.layers.Dense(3, name="head"),
            ]
        )
        optimizer = DiscriminativeLR(keras.optimizers.SGD(0.05), multipliers)
        model.compile(optimizer=optimizer, loss=LOSS)
        model.fit(x, y, epochs=1, batch_size=16, verbose=0)
        factors = optimizer.get_multipliers()
        before = state(model)
        # One batch of the same 16 samples at every step.
        result = lr_find(model, (x, y), 1e-3, 1.0, steps=10, batch_size=16, verbose=0)
        assert optimizer.get_multipliers() == factors
        assert_same(before, state(model))
        return result.losses

    frozen = scan({"body/": 0.0, "head/": 0.0})
    np.testing.assert_allclose(frozen, frozen[0], rtol=1e-5)  # factor 0 holds
    moving = scan({"body/": 0.1, "head/": 1.0})
    assert np.ptp(moving) > 1e-3


def test_under_mirrored_strategy(strategy):
    with strategy.scope():
        model = make_model()
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=LOSS)
    x, y = data()
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    before = state(model)
    result = lr_find(model, (x, y), steps=12, batch_size=16, verbose=0)
    assert result.steps >= 10 and np.all(np.isfinite(result.losses[:5]))
    assert_same(before, state(model))


def test_saving_after_the_test(tmp_path):
    model = trained(keras.optimizers.Adam(1e-3))
    lr_find(model, data(), steps=10, batch_size=16, verbose=0)
    run_model_saving_test(model, data()[0][:4], tmp_path)


def test_progress_lines_when_not_a_terminal(capsys):
    model = trained(keras.optimizers.SGD(0.01))
    lr_find(model, data(), steps=20, stop_factor=None, verbose=1)
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "lr_find" in ln]
    assert len(lines) == 10
    assert lines[-1].startswith("lr_find step 20/20")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"start": 1.0, "end": 1.0}, "`start` must be smaller than `end`"),
        ({"start": 0.0}, "`start` must be a positive float"),
        ({"end": -1.0}, "`end` must be a positive float"),
        ({"steps": 9}, "`steps` must be >= 10"),
        ({"steps": 20.0}, "`steps` must be an integer"),
        ({"smoothing": 1.0}, "`smoothing`"),
        ({"stop_factor": 1.0}, "`stop_factor`"),
    ],
)
def test_bad_arguments_leave_the_model_untouched(kwargs, match):
    model = trained(keras.optimizers.Adam(1e-3))
    before = state(model)
    with pytest.raises(ValueError, match=match):
        lr_find(model, data(), verbose=0, **kwargs)
    assert_same(before, state(model))


def test_model_not_compiled():
    model = make_model()
    before = model.get_weights()
    with pytest.raises(ValueError, match="`model` must be compiled"):
        lr_find(model, data(), verbose=0)
    assert_same(before, model.get_weights())


# ------------------------------------------------------------------ result
def curve():
    rates = np.geomspace(1e-5, 1.0, 50)
    losses = np.r_[
        np.full(10, 2.0), np.linspace(2.0, 0.2, 30), np.geomspace(0.3, 9, 10)
    ]
    return LRFinderResult(rates, losses, smoothing=0.0)


def test_suggestions():
    result = curve()
    rates = result.learning_rates
    assert result.suggestion("minimum") == pytest.approx(rates[39] / 10)
    assert rates[10] <= result.suggestion("steepest") <= rates[39]
    # fastai's valley: halfway along the longest descent.
    assert result.suggestion("valley") == pytest.approx(rates[24])
    with pytest.raises(ValueError, match="`method` must be one of"):
        result.suggestion("median")


def test_minimum_divisor():
    result = curve()
    rates = result.learning_rates
    assert result.suggestion("minimum", divisor=3) == pytest.approx(rates[39] / 3)
    assert result.suggestion("minimum", divisor=10) == result.suggestion("minimum")
    for bad in (1, 0.5, 0, -3, float("inf"), float("nan"), True, "3"):
        with pytest.raises(ValueError, match="`divisor` must be a finite number > 1"):
            result.suggestion("minimum", divisor=bad)
    with pytest.raises(ValueError, match='`divisor` applies to method="minimum"'):
        result.suggestion("valley", divisor=3)


def test_smoothed_losses_are_debiased():
    result = LRFinderResult([1e-3, 1e-2, 1e-1], [2.0, 2.0, 2.0], smoothing=0.9)
    np.testing.assert_allclose(result.smoothed_losses, 2.0)


def test_plot_writes_a_png(tmp_path):
    path = tmp_path / "lr.png"
    ax = curve().plot(str(path))
    assert ax.get_xscale() == "log"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_marks_the_divided_minimum():
    result = curve()
    ax = result.plot(method="minimum", divisor=3)
    marked = ax.collections[0].get_offsets()[0][0]
    assert marked == pytest.approx(result.suggestion("minimum", divisor=3))
    assert "minimum / 3" in ax.get_legend_handles_labels()[1][-1]


def test_result_config_round_trip():
    revived = run_serialization_test(curve())
    np.testing.assert_array_equal(revived.losses, curve().losses)
