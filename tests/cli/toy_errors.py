"""A toy claims module whose one check raises (for the error verdict)."""

from __future__ import annotations

from hypothesis import strategies as st

from properties.api import Outcome, claim


@claim("toyerr.raises", title="a check that raises", source="Toy 2024, Bug 1", statement="-", kind="exact",
       strategy=st.fixed_dictionaries({"x": st.integers(0, 3)}))
def raises(inputs, dropped):
    """Divides by zero."""
    raise ZeroDivisionError(f"toy failure at x={inputs['x']}")


@claim("toyerr.fine", title="a check that holds", source="Toy 2024, Lemma 2", statement="1 > 0", kind="exact",
       strategy=st.fixed_dictionaries({"x": st.integers(0, 3)}))
def fine(inputs, dropped):
    """Returns 1."""
    return Outcome(1.0, engine="toy")
