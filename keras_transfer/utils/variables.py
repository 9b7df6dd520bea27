"""Small helpers on Keras variables."""

import math


def count_params(variables):
    """Number of scalars in `variables` (an iterable of Keras variables)."""
    return sum(math.prod(int(d) for d in v.shape) for v in variables)
