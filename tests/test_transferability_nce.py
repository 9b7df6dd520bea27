"""NCE against its definition on hand-worked cases."""

import numpy as np
import pytest
import tensorflow as tf

from keras_transfer.transferability import nce


def test_hand_worked_example():
    z = np.array([0, 0, 0, 1, 1, 1])
    y = np.array([0, 0, 1, 1, 1, 1])
    # P(y|z=0) = (2/3, 1/3), P(y|z=1) = (0, 1); -H(Y|Z) = 1/2 * (2/3 log 2/3
    # + 1/3 log 1/3) + 1/2 * 0
    expected = 0.5 * (2 / 3 * np.log(2 / 3) + 1 / 3 * np.log(1 / 3))
    assert nce(z, y) == pytest.approx(expected, rel=1e-12)
    assert nce(tf.constant(z), tf.constant(y)) == pytest.approx(expected)


def test_limits():
    y = np.array([0, 0, 1, 1, 2, 2])
    assert nce(y * 7 + 1, y) == 0.0  # a relabelling of y: no uncertainty left
    assert nce(np.zeros(6, dtype=int), y) == pytest.approx(-np.log(3))
    # A finer source labelling (each z in one y) also determines y.
    assert nce(np.arange(6), np.array([0, 0, 0, 1, 1, 1])) == 0.0


def test_bad_input():
    y = np.array([0, 0, 1, 1])
    with pytest.raises(ValueError, match="same number of samples"):
        nce(np.array([0, 1, 0]), y)
    with pytest.raises(ValueError, match="`source_labels` must be a 1D"):
        nce(np.full((4, 2), 0.5), y)
    with pytest.raises(ValueError, match="`source_labels` must hold integer"):
        nce(np.array([0.5, 0.1, 0.2, 0.3]), y)
    with pytest.raises(ValueError, match="at least 2 classes"):
        nce(y, np.ones(4, dtype=int))
    with pytest.raises(ValueError, match="at least 2 samples"):
        nce(y, np.array([0, 0, 0, 1]))
