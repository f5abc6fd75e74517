"""Toy claims for the fault tests: a check that never returns (pure Python, busy), one after it, and checks
that return None or a float instead of an Outcome, and one that ends its own process."""

from __future__ import annotations

import os

from hypothesis import strategies as st

from properties.api import Outcome, claim

UNIT = st.fixed_dictionaries({"x": st.floats(0.0, 1.0, allow_nan=False, allow_subnormal=False)})


@claim("toyfault.hang", title="a check that hangs", source="Toy 2024, Remark 8", statement="1 > 0", kind="exact",
       strategy=UNIT, cost=100.0, timeout=1.0)
def hang(inputs, dropped):
    """Spins for ever (a busy loop in pure Python: no signal or sleep to interrupt)."""
    n = 0
    while True:
        n += 1


@claim("toyfault.after", title="1 + x > 0 on [0, 1]", source="Toy 2024, Lemma 9", statement="1 + x > 0",
       kind="exact", strategy=UNIT)
def after(inputs, dropped):
    """Evaluates 1 + x."""
    return Outcome(1.0 + inputs["x"], engine="toy")


@claim("toyfault.none", title="returns None", source="Toy 2024, Remark 10", statement="1 > 0", kind="exact",
       strategy=UNIT)
def returns_none(inputs, dropped):
    """Forgets to return its Outcome."""
    1.0 + inputs["x"]


@claim("toyfault.float", title="returns a float", source="Toy 2024, Remark 11", statement="1 > 0", kind="exact",
       strategy=UNIT)
def returns_float(inputs, dropped):
    """Returns the bare margin instead of an Outcome."""
    return 1.0 + inputs["x"]


@claim("toyfault.exits", title="kills its own process", source="Toy 2024, Remark 12", statement="1 > 0",
       kind="exact", strategy=UNIT, cost=50.0)
def exits(inputs, dropped):
    """Ends the process that runs it (as a segfault or the OOM killer would)."""
    os._exit(3)
