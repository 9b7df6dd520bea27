"""The rules that turn a learning-rate range test into one rate.

A registry: each rule is a function `(learning_rates, smoothed_losses) ->
index of the suggested rate or the rate itself`, registered under its name.
Adding a rule is one function and one entry in `SUGGESTIONS`.
"""

import numpy as np


def valley(learning_rates, losses):
    """Halfway along the longest descent of the loss curve (fastai's rule).

    The longest run of points along which the loss keeps going down (a
    longest strictly decreasing subsequence, of length `n`, ending at point
    `end`) is taken as the valley `[end - n, end]`, and the rate half way
    along it (at a third plus a sixth of its length, as fastai does): well
    below the rate where the loss turns, well above where it starts to move.
    """
    count = len(losses)
    length = np.ones(count, dtype=int)  # longest descent ending at each point
    for i in range(1, count):
        higher_before = losses[:i] > losses[i]
        if np.any(higher_before):
            length[i] = 1 + int(np.max(length[:i][higher_before]))
    end = int(np.argmax(length))
    start = max(0, end - int(length[end]))
    span = (end - start) / 3
    return learning_rates[start + int(span) + int(span / 2)]


def steepest(learning_rates, losses):
    """The rate where the loss falls fastest per decade of learning rate."""
    if len(losses) < 2:
        return learning_rates[0]
    slope = np.gradient(losses, np.log10(learning_rates))
    return learning_rates[int(np.argmin(slope))]


def minimum(learning_rates, losses, divisor=10.0):
    """The rate at the lowest loss divided by `divisor` (fastai: a tenth)."""
    return learning_rates[int(np.argmin(losses))] / divisor


SUGGESTIONS = {"valley": valley, "steepest": steepest, "minimum": minimum}
