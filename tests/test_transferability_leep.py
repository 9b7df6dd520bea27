"""LEEP against its definition on hand-worked cases."""

import numpy as np
import pytest
import tensorflow as tf

from keras_transfer.transferability import leep


def test_hand_worked_example():
    theta = np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9], [0.3, 0.7]])
    y = np.array([0, 0, 1, 1])
    # P(y, z) = [[1.7, 0.3], [0.4, 1.6]] / 4, P(z) = [2.1, 1.9] / 4
    # P(y | z) = [[1.7/2.1, 0.3/1.9], [0.4/2.1, 1.6/1.9]]
    cond = np.array([[1.7 / 2.1, 0.3 / 1.9], [0.4 / 2.1, 1.6 / 1.9]])
    expected = np.mean(
        [np.log(theta[i] @ cond[y[i]]) for i in range(4)]
    )
    assert leep(theta, y) == pytest.approx(expected, rel=1e-12)
    assert leep(tf.constant(theta), tf.constant(y)) == pytest.approx(expected)


def test_limits():
    # One-hot source predictions that match the target labels exactly: 0.
    y = np.array([0, 1, 2, 0, 1, 2])
    assert leep(np.eye(3)[y], y) == pytest.approx(0.0, abs=1e-12)
    # Uninformative (uniform) source predictions: log of the class prior.
    y = np.array([0, 0, 0, 0, 0, 0, 1, 1])
    expected = np.mean(np.log([0.75] * 6 + [0.25] * 2))
    assert leep(np.full((8, 5), 0.2), y) == pytest.approx(expected)


def test_more_informative_source_scores_higher():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    scores = []
    for sharp in (0.0, 1.0, 3.0):
        logits = sharp * np.eye(6)[2 * y] + rng.normal(size=(300, 6))
        p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        scores.append(leep(p, y))
    assert scores == sorted(scores)


def test_bad_input():
    p = np.full((4, 2), 0.5)
    y = np.array([0, 0, 1, 1])
    with pytest.raises(ValueError, match="`source_probabilities`.*sum to 1"):
        leep(np.full((4, 2), 0.6), y)
    with pytest.raises(ValueError, match="Did you pass logits"):
        leep(np.array([[2.0, -1.0]] * 4), y)
    with pytest.raises(ValueError, match="`source_probabilities` must be a 2D"):
        leep(p[0], y)
    with pytest.raises(ValueError, match="`source_probabilities` must be finite"):
        leep(np.where(p > 0, np.nan, p), y)
    with pytest.raises(ValueError, match="`labels` must have one entry"):
        leep(p, y[:3])
    with pytest.raises(ValueError, match="at least 2 classes"):
        leep(p, np.zeros(4, dtype=int))
    with pytest.raises(ValueError, match="at least 2 samples"):
        leep(p, np.array([0, 0, 0, 1]))
    with pytest.raises(ValueError, match="integer class indices"):
        leep(p, np.array([0.5, 0, 1, 1]))
