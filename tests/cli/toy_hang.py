"""Toy claims for the time-limit tests: a check that never returns (pure Python, busy), and one after it."""

from __future__ import annotations

from hypothesis import strategies as st

from properties.api import Outcome, claim

UNIT = st.fixed_dictionaries({"x": st.floats(0.0, 1.0, allow_nan=False, allow_subnormal=False)})


@claim("toyhang.hang", title="a check that hangs", source="Toy 2024, Remark 8", statement="1 > 0", kind="exact",
       strategy=UNIT, cost=100.0, timeout=1.0)
def hang(inputs, dropped):
    """Spins for ever (a busy loop in pure Python: no signal or sleep to interrupt)."""
    n = 0
    while True:
        n += 1


@claim("toyhang.after", title="1 + x > 0 on [0, 1]", source="Toy 2024, Lemma 9", statement="1 + x > 0",
       kind="exact", strategy=UNIT)
def after(inputs, dropped):
    """Evaluates 1 + x."""
    return Outcome(1.0 + inputs["x"], engine="toy")
