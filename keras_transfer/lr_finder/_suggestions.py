"""The rules that turn a learning-rate range test into one rate.

A registry: each rule is a function `(learning_rates, smoothed_losses) ->
index of the suggested rate or the rate itself`, registered under its name.
Adding a rule is one function and one entry in `SUGGESTIONS`.
"""

import numpy as np


def valley(learning_rates, losses):
    """The middle of the longest descent of the loss curve (fastai's rule).

    The longest run of points along which the loss keeps going down (a
    longest strictly decreasing subsequence), then the point halfway along
    it: well below the rate where the loss turns, well above where it
    starts to move.
    """
    n = len(losses)
    length = np.ones(n, dtype=int)  # longest descent ending at each point
    origin = np.arange(n)  # where that descent starts
    for i in range(1, n):
        lower_before = np.nonzero(losses[:i] > losses[i])[0]
        if lower_before.size:
            best = lower_before[np.argmax(length[lower_before])]
            if length[best] + 1 > length[i]:
                length[i] = length[best] + 1
                origin[i] = origin[best]
    end = int(np.argmax(length))
    start = int(origin[end])
    return learning_rates[start + (end - start) // 2]


def steepest(learning_rates, losses):
    """The rate where the loss falls fastest per decade of learning rate."""
    if len(losses) < 2:
        return learning_rates[0]
    slope = np.gradient(losses, np.log10(learning_rates))
    return learning_rates[int(np.argmin(slope))]


def minimum(learning_rates, losses):
    """One tenth of the rate at the lowest loss."""
    return learning_rates[int(np.argmin(losses))] / 10.0


SUGGESTIONS = {"valley": valley, "steepest": steepest, "minimum": minimum}
