"""DomainDiscriminator: Dense-ReLU-(BN)-(Dropout) blocks to one logit."""

import keras
import numpy as np
import pytest

from keras_transfer.layers import DomainDiscriminator
from tests.testing import run_model_saving_test, run_serialization_test


def _domains():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(size=(32, 4)), rng.normal(size=(32, 4)) + 1.5])
    y = np.concatenate([np.ones(32), np.zeros(32)]).astype("float32")
    return x.astype("float32"), y


def _model(**kwargs):
    return keras.Sequential([keras.Input((4,)), DomainDiscriminator(**kwargs)])


def test_structure():
    disc = DomainDiscriminator(hidden_units=(8, 6), batch_norm=True, dropout=0.5)
    out = disc(np.zeros((3, 5), "float32"))
    assert tuple(out.shape) == (3, 1)
    kinds = [type(layer).__name__ for layer in disc.hidden_layers]
    assert kinds == ["Dense", "BatchNormalization", "Dropout"] * 2
    assert [w.shape for w in disc.trainable_weights if len(w.shape) == 2] == [
        (5, 8), (8, 6), (6, 1)
    ]


@pytest.mark.parametrize("kwargs", [{}, {"batch_norm": True, "dropout": 0.2}])
def test_fit_separates_the_domains(kwargs):
    x, y = _domains()
    model = _model(hidden_units=(16,), **kwargs)
    model.compile(
        keras.optimizers.Adam(0.02),
        keras.losses.BinaryCrossentropy(from_logits=True),
        metrics=[keras.metrics.BinaryAccuracy(threshold=0.0)],
    )
    history = model.fit(x, y, batch_size=16, epochs=10, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert history.history["binary_accuracy"][-1] > 0.8


def test_serialization():
    run_serialization_test(
        DomainDiscriminator(hidden_units=(4, 2), batch_norm=True, dropout=0.1)
    )


def test_keras_saving(tmp_path):
    model = _model(hidden_units=(8,), batch_norm=True)
    model.compile("adam", keras.losses.BinaryCrossentropy(from_logits=True))
    x, y = _domains()
    model.fit(x, y, epochs=1, verbose=0)
    run_model_saving_test(model, x[:4], tmp_path)


def test_under_mirrored_strategy(strategy):
    x, y = _domains()
    keras.utils.set_random_seed(1)
    single = _model(hidden_units=(8,))
    single.compile(keras.optimizers.SGD(0.1),
                   keras.losses.BinaryCrossentropy(from_logits=True))
    single.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
    with strategy.scope():
        keras.utils.set_random_seed(1)
        mirrored = _model(hidden_units=(8,))
        mirrored.compile(keras.optimizers.SGD(0.1),
                         keras.losses.BinaryCrossentropy(from_logits=True))
    mirrored.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
    for a, b in zip(single.weights, mirrored.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)


def test_bad_input():
    with pytest.raises(ValueError, match="`hidden_units`"):
        DomainDiscriminator(hidden_units=(8, 0))
    with pytest.raises(ValueError, match="`dropout`"):
        DomainDiscriminator(dropout=1.0)
