"""Tests for `keras_transfer.averaging`: interpolate, choose_alpha, soup,
recompute_batch_norm."""

import keras
import numpy as np
import pytest

from keras_transfer.averaging import (
    choose_alpha,
    interpolate,
    recompute_batch_norm,
    soup,
)
from tests.testing import run_model_saving_test


def make_model(units=8):
    return keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(units, activation="relu"),
            keras.layers.BatchNormalization(),
            keras.layers.Dense(3),
        ]
    )


def data(n=96, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype("float32")
    y = np.argmax(x[:, :3], axis=-1).astype("int64")
    return x, y


def fitted(seed, epochs=5, model=None):
    keras.utils.set_random_seed(seed)
    model = model or make_model()
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(*data(), epochs=epochs, batch_size=16, verbose=0)
    return model


def same(a, b):
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


# ------------------------------------------------------------- interpolate
def test_interpolate_is_exact_at_the_ends_and_linear_between():
    model = make_model()
    start = [np.random.rand(*w.shape).astype(w.dtype) for w in model.get_weights()]
    end = [np.random.rand(*w.shape).astype(w.dtype) for w in model.get_weights()]
    assert interpolate(model, start, end, 0.0) is model
    assert same(model.get_weights(), start)
    interpolate(model, start, end, 1)
    assert same(model.get_weights(), end)
    interpolate(model, start, end, 0.3)
    for w, a, b in zip(model.get_weights(), start, end):
        np.testing.assert_allclose(w, 0.7 * a + 0.3 * b, rtol=1e-6)


@pytest.mark.parametrize("alpha", [-0.1, 1.5, True, "half", None])
def test_interpolate_alpha_outside_range(alpha):
    model = make_model()
    before = model.get_weights()
    with pytest.raises(ValueError, match="`alpha` must be a float in \\[0, 1\\]"):
        interpolate(model, before, before, alpha)
    assert same(before, model.get_weights())


def test_interpolate_weights_that_do_not_fit():
    model = make_model()
    before = model.get_weights()
    with pytest.raises(ValueError, match="`end_weights` must hold one array"):
        interpolate(model, before, before[:-1], 0.5)
    wrong = [np.zeros((5, 8))] + before[1:]
    with pytest.raises(ValueError, match=r"`start_weights\[0\]` has shape \(5, 8\)"):
        interpolate(model, wrong, before, 0.5)
    assert same(before, model.get_weights())


def test_interpolated_model_fits_and_saves(tmp_path):
    start = make_model().get_weights()
    model = fitted(0)
    interpolate(model, start, model.get_weights(), 0.5)
    model.fit(*data(), epochs=1, batch_size=16, verbose=0)
    run_model_saving_test(model, data()[0][:4], tmp_path)


# ------------------------------------------------------------ choose_alpha
def test_choose_alpha_keeps_the_best_on_validation():
    keras.utils.set_random_seed(0)
    model = make_model()
    start = model.get_weights()
    end = fitted(0, epochs=20).get_weights()
    best, scores = choose_alpha(model, start, end, data(seed=1))
    assert sorted(scores) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert scores[best] == max(scores.values())
    assert scores[1.0] > scores[0.0]
    expected = make_model()
    interpolate(expected, start, end, best)
    assert same(model.get_weights(), expected.get_weights())


def test_choose_alpha_custom_score_and_bad_alphas():
    model = make_model()
    start, end = model.get_weights(), [w + 1 for w in model.get_weights()]
    best, scores = choose_alpha(
        model,
        start,
        end,
        None,
        alphas=[0.0, 0.4, 1.0],
        score=lambda m, _: -abs(float(m.get_weights()[-1][0]) - 0.4),
    )
    assert best == 0.4
    with pytest.raises(ValueError, match="`alphas` must be a float in"):
        choose_alpha(model, start, end, data(), alphas=[0.5, 2.0])
    with pytest.raises(ValueError, match="`score` must be a function"):
        choose_alpha(model, start, end, data(), score="accuracy")


# ------------------------------------------------------------------- soup
def test_uniform_soup_is_the_mean_and_leaves_members_alone():
    members = [fitted(seed, epochs=2) for seed in range(3)]
    before = [m.get_weights() for m in members]
    souped = soup(members)
    assert souped not in members
    for i, w in enumerate(souped.get_weights()):
        np.testing.assert_allclose(
            w, np.mean([b[i] for b in before], axis=0), 1e-5, 1e-7
        )
    assert all(same(b, m.get_weights()) for b, m in zip(before, members))
    assert souped.soup_members == [0, 1, 2]
    # Compiled like the first member: it can fit at once.
    souped.fit(*data(), epochs=1, batch_size=16, verbose=0)


def test_greedy_soup_from_keras_files_is_no_worse_than_the_best(tmp_path):
    members = [fitted(seed, epochs=8) for seed in range(3)]
    broken = fitted(9, epochs=1)
    broken.set_weights([w * -3.0 for w in broken.get_weights()])
    paths = []
    for i, model in enumerate(members + [broken]):
        paths.append(str(tmp_path / f"m{i}.keras"))
        model.save(paths[-1])
    validation = data(seed=2)
    souped = soup(paths, validation_data=validation, method="greedy")
    assert 3 not in souped.soup_members
    best_single = max(
        float(
            np.mean(np.argmax(m.predict(validation[0], verbose=0), -1) == validation[1])
        )
        for m in members
    )
    accuracy = np.mean(
        np.argmax(souped.predict(validation[0], verbose=0), -1) == validation[1]
    )
    assert accuracy >= best_single
    run_model_saving_test(souped, validation[0][:4], tmp_path)


def test_soup_of_different_architectures():
    first, second = make_model(8), make_model(6)
    before = [first.get_weights(), second.get_weights()]
    with pytest.raises(ValueError, match=r"`models\[1\]` differs from the first"):
        soup([first, second])
    with pytest.raises(ValueError, match=r"`models\[1\]` has 2 weights"):
        soup([first, keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])])
    assert same(before[0], first.get_weights()) and same(
        before[1], second.get_weights()
    )


def test_soup_bad_arguments():
    model = make_model()
    with pytest.raises(ValueError, match="`validation_data` is needed"):
        soup([model, model], method="greedy")
    with pytest.raises(ValueError, match="`method` must be one of"):
        soup([model], method="mean")
    with pytest.raises(ValueError, match="`models` must be a non-empty list"):
        soup([])
    with pytest.raises(ValueError, match=r"`models\[1\]` is a path that does not"):
        soup([model, "missing.keras"])


def test_soup_under_mirrored_strategy(strategy):
    with strategy.scope():
        members = [make_model() for _ in range(2)]
    souped = soup(members, validation_data=data(), method="greedy")
    assert len(souped.get_weights()) == len(members[0].get_weights())


# ---------------------------------------------------- recompute_batch_norm
def test_recompute_batch_norm_gives_the_mean_of_batch_statistics():
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(4), keras.layers.BatchNormalization()]
    )
    bn = model.layers[1]
    x = data(64)[0] * 3.0 + 1.0
    assert recompute_batch_norm(model, (x, None), batch_size=16) == 1
    h = model.layers[0](x).numpy()
    np.testing.assert_allclose(bn.moving_mean.numpy(), h.mean(0), rtol=1e-4, atol=1e-5)
    batch_vars = np.mean([h[i : i + 16].var(0) for i in range(0, 64, 16)], axis=0)
    np.testing.assert_allclose(bn.moving_variance.numpy(), batch_vars, rtol=1e-4)
    assert bn.momentum == 0.99


def test_recompute_batch_norm_leaves_frozen_layers():
    model = make_model()
    model.layers[1].trainable = False
    before = model.get_weights()
    assert recompute_batch_norm(model, data()[0]) == 0
    assert same(before, model.get_weights())
    with pytest.raises(ValueError, match="`steps` must be an integer"):
        recompute_batch_norm(model, data()[0], steps=0)
