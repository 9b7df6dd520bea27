"""Argument checks shared across the package (numbers, steps, fractions)."""

import math
import numbers


def check_positive(name, value, allow_zero=False):
    ok = (
        not isinstance(value, bool)
        and isinstance(value, numbers.Real)
        and math.isfinite(value)
        and (value >= 0 if allow_zero else value > 0)
    )
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(
            f"`{name}` must be a finite number {bound}. Received: {name}={value!r}"
        )
    return value


def check_steps(name, value, minimum=1):
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Integral)
        or value < minimum
    ):
        raise ValueError(
            f"`{name}` must be an integer >= {minimum} (a number of optimizer "
            f"steps). Received: {name}={value!r}"
        )
    return int(value)


def check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(
            f"`{name}` must be a positive integer. Received: {name}={value!r}"
        )
    return int(value)


def check_fraction(name, value):
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not 0 < value < 1
    ):
        raise ValueError(
            f"`{name}` must be a number strictly between 0 and 1. Received: "
            f"{name}={value!r}"
        )
    return float(value)


def check_lambda(value):
    """A gradient reversal factor: a float >= 0."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"`lambda_` must be a float >= 0. Received: lambda_={value!r}"
        ) from None
    if not value >= 0.0 or math.isinf(value):
        raise ValueError(
            "`lambda_` must be >= 0 and finite (a negative factor would stop "
            f"reversing the gradient). Received: lambda_={value}"
        )
    return value
