"""select_model, its criteria and ModelCheckpoints."""

import keras
import numpy as np
import pytest

from keras_transfer.adaptation import (
    DEV,
    SND,
    ModelCheckpoints,
    ReverseValidation,
    select_model,
)
from tests.testing import run_serialization_test


def _data(n=300, seed=0):
    """Two classes; the target is the source shifted along the boundary."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    xt = (rng.normal(size=(n, 2)) + [0.3, 1.0]).astype("float32")
    yt = (xt[:, 0] > 0).astype("int32")
    return x, y, xt, yt


def _linear(w0, w1=0.0):
    """A softmax classifier whose logit gap is `w0 * x0 + w1 * x1`."""
    model = keras.Sequential(
        [keras.Input((2,)), keras.layers.Dense(2, activation="softmax")]
    )
    kernel = np.array([[-w0, w0], [-w1, w1]], "float32") / 2
    model.set_weights([kernel, np.zeros(2, "float32")])
    return model


def _candidates():
    # Right boundary; a tilted one; the wrong feature; the boundary flipped.
    return [_linear(4.0), _linear(4.0, 3.0), _linear(0.0, 4.0), _linear(-4.0)]


@pytest.mark.parametrize("criterion", ["dev", "iwv", "reverse_validation"])
def test_criteria_rank_a_clearly_better_candidate_first(criterion):
    x, y, xt, yt = _data()
    candidates = _candidates()
    scores = select_model(
        candidates, source_validation=(x, y), target_x=xt, criterion=criterion
    )
    accuracies = [
        np.mean(np.argmax(c.predict(xt, verbose=0), -1) == yt) for c in candidates
    ]
    assert scores.shape == (4,) and np.all(np.isfinite(scores))
    assert int(np.argmax(accuracies)) == 0
    assert int(np.argmax(scores)) == 0, scores
    assert scores[0] > scores[3] and scores[1] > scores[3]


def test_snd_of_two_confident_groups_is_the_log_of_the_group_size():
    # Two tight target clusters, a sharp boundary between them: each sample's
    # neighbourhood is the other 99 samples of its group, spread evenly, so
    # SND is log(99); a boundary through one cluster spreads it out.
    rng = np.random.default_rng(0)
    xt = np.concatenate(
        [rng.normal([-2, 0], 0.05, (100, 2)), rng.normal([2, 0], 0.05, (100, 2))]
    ).astype("float32")
    between = _linear(8.0)
    scores = select_model([between], target_x=xt, criterion="snd")
    assert scores[0] == pytest.approx(np.log(99), abs=1e-3)


def test_dev_weights_follow_the_density_ratio():
    rng = np.random.default_rng(0)
    source = rng.normal(size=(2000, 1))
    target = rng.normal(loc=1.0, size=(1000, 1))
    weights = DEV(l2=0.0).density_ratios(source, target)
    # Two unit Gaussians one apart: p_t / p_s = exp(x - 0.5).
    expected = np.exp(source[:, 0] - 0.5)
    inside = np.abs(source[:, 0]) < 1.5
    np.testing.assert_allclose(weights[inside], expected[inside], rtol=0.25)
    assert abs(weights.mean() - 1.0) < 0.1


def test_dev_control_variate_matches_the_closed_form():
    class Outputs:
        source_repr = np.linspace(-1, 1, 50)[:, None]
        target_repr = np.linspace(-0.5, 1.5, 50)[:, None]
        source_y = np.zeros(50, "int64")
        source_probs = np.stack(
            [np.linspace(0.2, 0.9, 50), 1 - np.linspace(0.2, 0.9, 50)], 1
        )

    dev = DEV()
    w = dev.density_ratios(Outputs.source_repr, Outputs.target_repr)
    loss = -np.log(Outputs.source_probs[:, 0])
    weighted = w * loss
    eta = -np.cov(weighted, w)[0, 1] / np.var(w, ddof=1)
    expected = -(weighted.mean() + eta * w.mean() - eta)
    assert dev.score(Outputs) == pytest.approx(expected, rel=1e-12)
    assert DEV(control_variate=False).score(Outputs) == pytest.approx(
        -weighted.mean(), rel=1e-12
    )


def test_snd_of_tight_clusters_beats_scattered_predictions():
    class Outputs:
        target_probs = np.eye(4)[np.arange(40) % 4] * 0.97 + 0.0075

    tight = SND().score(Outputs)
    Outputs.target_probs = np.random.default_rng(0).dirichlet(np.ones(4), 40)
    assert tight > SND().score(Outputs)


def test_pairs_and_logits_are_accepted():
    x, y, xt, _ = _data()
    features = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3)])
    head = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    scores = select_model(
        [(features, head)],
        source_validation=(x, y),
        target_x=xt,
        criterion=DEV(),
        from_logits=True,
    )
    assert scores.shape == (1,) and np.isfinite(scores[0])


def test_model_checkpoints_keep_each_epoch_and_restore():
    x, y, xt, _ = _data(n=64)
    model = _linear(0.1)
    model.compile(keras.optimizers.SGD(0.5), "sparse_categorical_crossentropy")
    checkpoints = ModelCheckpoints()
    model.fit(x, y, epochs=3, batch_size=16, callbacks=[checkpoints], verbose=0)
    assert checkpoints.epochs == [1, 2, 3] and len(checkpoints) == 3
    final = model.get_weights()
    scores = select_model(checkpoints, source_validation=(x, y), target_x=xt)
    assert scores.shape == (3,)
    # Iterating put the final weights back; restore loads one checkpoint.
    assert all(np.array_equal(a, b) for a, b in zip(final, model.get_weights()))
    checkpoints.restore(0)
    assert all(
        np.array_equal(a, b)
        for a, b in zip(checkpoints.weights[0], model.get_weights())
    )
    assert not np.array_equal(checkpoints.weights[0][0], checkpoints.weights[2][0])
    # A resumed fit (initial_epoch) adds to the list; a new one clears it.
    model.fit(x, y, epochs=4, initial_epoch=3, callbacks=[checkpoints], verbose=0)
    assert checkpoints.epochs == [1, 2, 3, 4]
    model.fit(x, y, epochs=1, callbacks=[checkpoints], verbose=0)
    assert checkpoints.epochs == [1]


def test_model_checkpoints_under_mirrored_strategy(strategy):
    x, y, xt, _ = _data(n=64)
    with strategy.scope():
        model = _linear(0.1)
        model.compile(keras.optimizers.SGD(0.5), "sparse_categorical_crossentropy")
    checkpoints = ModelCheckpoints(every=2)
    model.fit(x, y, epochs=4, batch_size=16, callbacks=[checkpoints], verbose=0)
    assert checkpoints.epochs == [2, 4]
    scores = select_model(checkpoints, target_x=xt, criterion="snd")
    assert scores.shape == (2,) and np.all(np.isfinite(scores))


@pytest.mark.parametrize(
    "criterion", [DEV(control_variate=False, l2=0.1), ReverseValidation(), SND()]
)
def test_criteria_config_round_trip(criterion):
    revived = run_serialization_test(criterion)
    assert revived.get_config() == criterion.get_config()


def test_bad_input_names_the_argument():
    x, y, xt, _ = _data(n=32)
    model = _linear(1.0)
    with pytest.raises(ValueError, match="`criterion` must be one of"):
        select_model([model], source_validation=(x, y), target_x=xt, criterion="x")
    with pytest.raises(ValueError, match="`source_validation` must be a tuple"):
        select_model([model], target_x=xt, criterion="dev")
    with pytest.raises(ValueError, match="`target_x` is required"):
        select_model([model], source_validation=(x, y))
    with pytest.raises(TypeError, match="`candidates` must be a list"):
        select_model(model, target_x=xt, criterion="snd")
    with pytest.raises(TypeError, match=r"candidates\[1\]"):
        select_model([model, "model"], target_x=xt, criterion="snd")
    with pytest.raises(ValueError, match="same sample shape"):
        select_model([model], source_validation=(x, y), target_x=np.zeros((4, 3)))
    with pytest.raises(ValueError, match="`every`"):
        ModelCheckpoints(every=0)
    with pytest.raises(ValueError, match="`temperature`"):
        SND(temperature=0)
