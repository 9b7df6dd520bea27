"""adabn, tent and shot: what they change, what they leave, a synthetic shift."""

import keras
import numpy as np
import pytest

from keras_transfer.adaptation import adabn, shot, tent
from tests.testing import run_model_saving_test


def _shift_data(n=600, seed=0):
    """Three Gaussian classes in 6-D; the target is shrunk and offset per feature.

    A BN MLP trained on the source falls to about chance on the target.
    """
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=1.5, size=(3, 6))
    y = rng.integers(0, 3, n)
    x = (centers[y] + rng.normal(size=(n, 6))).astype("float32")
    yt = rng.integers(0, 3, n)
    xt = centers[yt] + rng.normal(size=(n, 6))
    xt = (xt * 0.5 + rng.normal(scale=2.0, size=6)).astype("float32")
    return x, y, xt, yt


def _features():
    return keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(16),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
        ],
        name="features",
    )


def _classifier():
    return keras.Sequential(
        [keras.Input((16,)), keras.layers.Dense(3, activation="softmax")],
        name="classifier",
    )


@pytest.fixture(scope="module")
def trained():
    """A BN MLP trained on the source: (features, classifier, model, data)."""
    keras.utils.set_random_seed(0)
    x, y, xt, yt = _shift_data()
    features, classifier = _features(), _classifier()
    model = keras.Sequential([features, classifier], name="source_model")
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=8, batch_size=32, verbose=0)
    return features, classifier, model, (x, y, xt, yt)


def _accuracy(model, x, y):
    return float(np.mean(np.argmax(model.predict(x, verbose=0), -1) == y))


def _snapshot(model):
    return [np.array(w) for w in model.get_weights()]


def _same(a, b):
    return len(a) == len(b) and all(np.array_equal(u, v) for u, v in zip(a, b))


def test_each_method_improves_target_accuracy_on_a_shift(trained):
    features, classifier, model, (x, y, xt, yt) = trained
    source = _accuracy(model, x, y)
    before = _accuracy(model, xt, yt)
    assert source > 0.9 and before < 0.75, (source, before)
    after_adabn = _accuracy(adabn(model, xt), xt, yt)
    after_tent = _accuracy(tent(model, xt, epochs=2, batch_size=64), xt, yt)
    after_shot = _accuracy(
        shot(features, classifier, xt, epochs=3, batch_size=64), xt, yt
    )
    assert after_adabn > before + 0.15, (before, after_adabn)
    assert after_tent > before + 0.15, (before, after_tent)
    assert after_shot > before + 0.15, (before, after_shot)


def test_copy_leaves_the_model_bit_identical(trained):
    features, classifier, model, (_, _, xt, _) = trained
    weights = _snapshot(model)
    flags = [layer.trainable for layer in model.layers]
    adabn(model, xt)
    tent(model, xt, batch_size=64)
    shot(features, classifier, xt, epochs=1, batch_size=64)
    assert _same(weights, _snapshot(model))
    assert flags == [layer.trainable for layer in model.layers]


def test_tent_changes_only_normalization_affine_parameters(trained):
    _, _, model, (_, _, xt, _) = trained
    adapted = tent(model, xt, epochs=2, batch_size=64)
    changed = [
        variable.path.split("/")[-1]
        for variable, before, after in zip(
            adapted.weights, model.get_weights(), adapted.get_weights()
        )
        if not np.array_equal(before, after)
    ]
    # gamma and beta trained, the moving statistics re-estimated on the
    # target at the end; the Dense kernels and biases bit-identical.
    assert sorted(changed) == ["beta", "gamma", "moving_mean", "moving_variance"]
    assert all(layer.trainable for layer in adapted.layers[0].layers)


def test_shot_keeps_the_classifier_bit_identical_and_trains_features(trained):
    features, classifier, _, (_, _, xt, _) = trained
    adapted = shot(features, classifier, xt, epochs=2, batch_size=64)
    new_features, new_classifier = adapted.layers
    assert _same(classifier.get_weights(), new_classifier.get_weights())
    assert not _same(features.get_weights(), new_features.get_weights())
    assert new_features.layers[0].trainable and new_classifier.trainable


def test_in_place_adaptation_and_the_way_back(trained):
    features, classifier, model, (_, _, xt, _) = trained
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    saved = clone.get_weights()
    assert adabn(clone, xt, copy=False) is clone
    assert not _same(saved, clone.get_weights())
    clone.set_weights(saved)
    assert _same(saved, clone.get_weights())
    assert tent(clone, xt, batch_size=64, copy=False) is clone
    assert not _same(saved, clone.get_weights())
    clone.set_weights(saved)
    assert _same(saved, _snapshot(model))
    f_saved = features.get_weights()
    adapted = shot(features, classifier, xt, epochs=1, batch_size=64, copy=False)
    assert adapted.layers[0] is features
    assert not _same(f_saved, features.get_weights())
    features.set_weights(f_saved)
    assert _same(f_saved, features.get_weights())


def test_adabn_matches_target_moments_of_the_first_layer(trained):
    _, _, model, (_, _, xt, _) = trained
    adapted = adabn(model, xt, batch_size=100)
    dense, bn = adapted.layers[0].layers[:2]
    pre = xt @ dense.kernel.numpy() + dense.bias.numpy()
    np.testing.assert_allclose(
        bn.moving_mean.numpy(), pre.mean(0), rtol=1e-4, atol=1e-4
    )
    np.testing.assert_allclose(
        bn.moving_variance.numpy(), pre.var(0), rtol=1e-3, atol=1e-3
    )


def test_adapted_models_save_and_load(trained, tmp_path):
    features, classifier, model, (_, _, xt, _) = trained
    for i, adapted in enumerate(
        [
            adabn(model, xt),
            tent(model, xt, batch_size=64),
            shot(features, classifier, xt, epochs=1, batch_size=64),
        ]
    ):
        folder = tmp_path / str(i)
        folder.mkdir()
        run_model_saving_test(adapted, xt[:16], folder)


def test_under_mirrored_strategy(strategy):
    x, y, xt, yt = _shift_data(n=256)
    with strategy.scope():
        features, classifier = _features(), _classifier()
        model = keras.Sequential([features, classifier])
        model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=3, batch_size=32, verbose=0)
    before = _accuracy(model, xt, yt)
    saved = _snapshot(model)
    adapted_bn = adabn(model, xt)
    adapted_tent = tent(model, xt, batch_size=64, epochs=2)
    adapted_shot = shot(features, classifier, xt, epochs=2, batch_size=64)
    for adapted in (adapted_bn, adapted_tent, adapted_shot):
        assert adapted.distribute_strategy is strategy
        assert _accuracy(adapted, xt, yt) > before + 0.1
    assert _same(saved, _snapshot(model))
    # The BN statistics are the same on both replicas.
    bn = adapted_bn.layers[0].layers[1]
    values = strategy.experimental_local_results(bn.moving_mean.value)
    assert len(values) == 2
    np.testing.assert_array_equal(np.asarray(values[0]), np.asarray(values[1]))


def test_tent_on_a_model_without_normalization_layers_names_the_model():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="`model` has no normalization layers"):
        tent(model, np.zeros((8, 3)), batch_size=4)
    with pytest.raises(ValueError, match="`model` has no BatchNormalization"):
        adabn(model, np.zeros((8, 3)))


def test_target_smaller_than_a_batch_names_the_arguments(trained):
    features, classifier, model, _ = trained
    small = np.zeros((10, 6), "float32")
    weights = _snapshot(model)
    with pytest.raises(ValueError, match="`target_x` has 10 samples.*`batch_size`"):
        tent(model, small, batch_size=32)
    with pytest.raises(ValueError, match="`target_x` has 10 samples.*`batch_size`"):
        shot(features, classifier, small, batch_size=32)
    with pytest.raises(ValueError, match="`target_x` must hold at least 2"):
        adabn(model, small[:1])
    assert _same(weights, _snapshot(model))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda m, f, c, x: tent(m, x, epochs=0, batch_size=8), "`epochs`"),
        (lambda m, f, c, x: tent(m, x, batch_size=1), "`batch_size`"),
        (lambda m, f, c, x: tent(m, x, batch_size=8, optimizer="adam"), "`optimizer`"),
        (lambda m, f, c, x: tent("model", x), "`model`"),
        (lambda m, f, c, x: adabn(m, None), "`target_x`"),
        (lambda m, f, c, x: shot(f, "head", x, batch_size=8), "`classifier`"),
        (
            lambda m, f, c, x: shot(f, c, x, batch_size=8, diversity_weight=-1),
            "`diversity_weight`",
        ),
        (
            lambda m, f, c, x: shot(f, c, x, batch_size=8, pseudo_label_weight="a"),
            "`pseudo_label_weight`",
        ),
    ],
)
def test_bad_arguments_are_named(trained, call, match):
    features, classifier, model, (_, _, xt, _) = trained
    with pytest.raises((ValueError, TypeError), match=match):
        call(model, features, classifier, xt[:32])
