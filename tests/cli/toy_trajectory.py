"""A toy claim checked along a made-up trajectory (no engine): |w11| >= 1/sqrt(loss) at each of 12 losses, where
|w11| = c / sqrt(loss) with c drawn in [0.5, 2] and a relative error 2e-2; violated when c < 1/1.02."""

from __future__ import annotations

from hypothesis import strategies as st

from properties import combine, point_outcome
from properties.api import claim

LOSSES = tuple(10.0 ** (-k / 2) for k in range(12))


@claim("toytraj.bound", title="|w11| >= 1/sqrt(loss) along a toy trajectory (false for c < 1)",
       source="Toy 2024, Theorem 8", statement="|w11(loss)| >= 1/sqrt(loss)", kind="trajectory",
       strategy=st.fixed_dictionaries({"c": st.floats(0.5, 2.0, allow_nan=False)}))
def bound(inputs, dropped):
    """margin |w11| - 1/sqrt(loss) at each loss, error 2e-2 |w11|."""
    outs = []
    for k, loss in enumerate(LOSSES):
        w11, b = inputs["c"] / loss ** 0.5, 1.0 / loss ** 0.5
        outs.append(point_outcome(w11 - b, 2e-2 * w11, b, point=k, loss=loss, w11=w11, bound=b))
    return combine(outs, engine="toy")
