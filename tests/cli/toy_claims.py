"""Toy claims for the CLI tests: instant checks with every verdict (imported with ``--claims PATH``).

Environment switches (read in the check, so pool and dask workers see them too):
``VERIFY_TOY_INTERRUPT=1`` makes ``toy.interrupt`` raise KeyboardInterrupt; ``VERIFY_TOY_SLOW=S`` makes
``toy.slow`` sleep S seconds per example; ``VERIFY_TOY_WAIT=PATH`` makes ``toy.slow`` wait (at most 120 s) until
PATH exists.
"""

from __future__ import annotations

import os
import time

from hypothesis import strategies as st

from properties.api import Outcome, claim

UNIT = st.fixed_dictionaries({"x": st.floats(0.0, 1.0, allow_nan=False, allow_subnormal=False)})


@claim("toy.holds", title="1 + x > 0 on [0, 1]", source="Toy 2024, Lemma 1", statement="1 + x > 0",
       kind="exact", strategy=UNIT)
def holds(inputs, dropped):
    """Evaluates 1 + x."""
    return Outcome(1.0 + inputs["x"], engine="toy")


@claim("toy.violated", title="x < 1/2 on [0, 1] (false)", source="Toy 2024, Claim 2", statement="x < 1/2",
       kind="exact", strategy=UNIT)
def violated(inputs, dropped):
    """Evaluates 1/2 - x."""
    return Outcome(0.5 - inputs["x"], engine="toy")


@claim("toy.refuted", title="x < 1/2 on [0, 1], a conjecture expected refuted", source="Toy 2024, Conjecture 3",
       statement="x < 1/2", kind="exact", strategy=UNIT, expectation="refuted")
def refuted(inputs, dropped):
    """Evaluates 1/2 - x."""
    return Outcome(0.5 - inputs["x"], engine="toy")


@claim("toy.interrupt", title="interruptible", source="Toy 2024, Remark 4", statement="1 > 0", kind="exact",
       strategy=UNIT)
def interrupt(inputs, dropped):
    """Raises KeyboardInterrupt when VERIFY_TOY_INTERRUPT is set."""
    if os.environ.get("VERIFY_TOY_INTERRUPT"):
        raise KeyboardInterrupt
    return Outcome(1.0, engine="toy")


@claim("toy.markup", title="<script>alert('x')</script> & <b>bold</b> | pipe", source="<i>Markup</i> 2024, Lemma 5",
       statement="x <= 1 & x >= 0", kind="exact", strategy=UNIT)
def markup(inputs, dropped):
    """Evaluates 1 - x + 1."""
    return Outcome(2.0 - inputs["x"], engine="toy")


@claim("toy.theorem", title="x (2 - x) >= 0", source="Toy 2024, Theorem 6", statement="x (2 - x) >= 0",
       kind="trajectory", hypotheses=[("nonnegative", "x >= 0"), ("bounded", "x <= 1")],
       strategy=lambda dropped: st.fixed_dictionaries({"x": st.floats(
           -1.0 if "nonnegative" in dropped else 0.0, 1.5 if "bounded" in dropped else 1.0,
           allow_nan=False, allow_subnormal=False)}))
def theorem(inputs, dropped):
    """Evaluates x (2 - x) + 1e-9 (a slack that keeps x = 0 a pass)."""
    x = inputs["x"]
    return Outcome(x * (2.0 - x) + 1e-9, error=1e-12, engine="toy")


@claim("toy.slow", title="slow", source="Toy 2024, Remark 7", statement="1 > 0", kind="exact", strategy=UNIT)
def slow(inputs, dropped):
    """Sleeps VERIFY_TOY_SLOW seconds (and waits for the file VERIFY_TOY_WAIT)."""
    time.sleep(float(os.environ.get("VERIFY_TOY_SLOW", "0")))
    gate, start = os.environ.get("VERIFY_TOY_WAIT"), time.monotonic()
    while gate and not os.path.exists(gate) and time.monotonic() - start < 120:
        time.sleep(0.05)
    return Outcome(1.0, engine="toy")
