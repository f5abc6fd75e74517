"""What "shrunk" looks like: the simple values Hypothesis shrinks toward (a uniquely named helper module shared by
tests/claims/conftest.py and test_claims.py)."""

from __future__ import annotations

import math


def _short_exponent(x: float, base: float) -> bool:
    e = math.log(abs(x), base)
    for digits in (0, 1, 2):
        r = round(e, digits)
        if float(base ** r) == abs(x) or abs(base ** r - abs(x)) <= 2 * math.ulp(abs(x)):
            return True
    return False


def simple(value) -> bool:
    """A value Hypothesis shrinks toward: a small integer, a short decimal, or a power of 10 or 2 with a short
    exponent (strategies draw scales as ``10 ** e`` and shrink ``e``)."""
    if value is None or isinstance(value, (bool, str)):
        return True
    if isinstance(value, int):
        return abs(value) <= 10_000
    if isinstance(value, float):
        if value == 0.0 or not math.isfinite(value):
            return True
        return (len(repr(abs(value))) <= 7 or _short_exponent(value, 10.0) or _short_exponent(value, 2.0))
    if isinstance(value, dict):
        return all(simple(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(simple(v) for v in value)
    return False


def not_simple(inputs: dict) -> dict:
    return {k: v for k, v in inputs.items() if not simple(v)}
