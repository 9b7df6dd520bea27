"""Tests for the `_compat` reaches used by `lr_find` and `DiscriminativeLR`'s
`use_ema` (one test per reach: it fails, naming the reach, when Keras moves
it)."""

import keras
import numpy as np

from keras_transfer import _compat
from keras_transfer.optimizers import DiscriminativeLR


def test_learning_rate_object_is_the_variable_or_the_schedule():
    optimizer = keras.optimizers.Adam(1e-3)
    rate = _compat.learning_rate_object(optimizer)
    assert isinstance(rate, keras.Variable), _compat.KERAS_VERSION
    schedule = keras.optimizers.schedules.ExponentialDecay(1e-2, 10, 0.5)
    wrapped = DiscriminativeLR(keras.optimizers.SGD(schedule))
    assert _compat.learning_rate_object(wrapped) is schedule


def test_moving_average_of_a_variable():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    optimizer = keras.optimizers.SGD(0.1, use_ema=True)
    model.compile(optimizer=optimizer, loss="mse")
    model.fit(np.ones((4, 2)), np.ones((4, 1)), epochs=1, verbose=0)
    kernel = model.layers[0].kernel
    average = _compat.moving_average_of(optimizer, kernel)
    assert average is not None and tuple(average.shape) == tuple(kernel.shape)
    other = keras.Variable(np.zeros(3))
    assert _compat.moving_average_of(optimizer, other) is None
