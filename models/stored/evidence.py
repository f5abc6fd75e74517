"""The evidence a verdict rests on, defined once: one example's margin, the numerical error of that margin, and
their ratio.

Every command that prints a claim's margin goes through this module, so the report, ``verify show`` and
``verify reproduce`` print the same numbers for the same example:

- ``margin`` is the check's :attr:`~properties.api.Outcome.margin`, in the claim's own units (positive: the claim
  holds on that example by that much; negative: it is violated by that much);
- ``error`` is the check's bound on the numerical error of ``margin`` (``inf`` when unknown, never 0 by default);
- ``ratio`` is ``margin / error``: how many error estimates the margin clears (``|ratio| > 1`` decides the
  verdict; ``+-inf`` for an exact check, error 0).

Which example a verdict rests on (:func:`pick`): for ``violated`` the shrunk counterexample (the one stored in
``counterexamples/ID.json`` and replayed by ``verify reproduce``); for ``inconclusive`` the first example whose
margin stayed within its error; otherwise the example with the smallest normalized margin (margin / scale, the
quantity the search pushes down).
"""

from __future__ import annotations

import math
from typing import Any

from models.stored.verdicts import VerdictStatus, verdict_of

#: Which example the evidence of each verdict comes from (words used in the report and by ``verify show``).
WHICH = {
    "counterexample": "the shrunk counterexample",
    "inconclusive": "the first example within its error estimate",
    "smallest": "the example with the smallest normalized margin",
}


#: The word for a claim expected to be refuted (``verify list``'s expectation) whose search refuted it.
REFUTED_AS_EXPECTED = "refuted, as expected"


def verdict_word(verdict: str | None, expectation: str | None) -> str:
    """A verdict as every command shows it: a conjecture or negative control (expectation ``refuted``) that was
    refuted reads "refuted, as expected"; other verdicts read as stored."""
    v = verdict or VerdictStatus.ERROR.value
    return REFUTED_AS_EXPECTED if v == VerdictStatus.VIOLATED and expectation == "refuted" else str(v)


def plural(n: Any, word: str) -> str:
    """``1 example``, ``2 examples`` (``word`` is the singular; a missing count is 0)."""
    try:
        k = int(n or 0)
    except (TypeError, ValueError):
        k = 0
    return f"{k} {word}" + ("" if k == 1 else "s")


def timeout_seconds(record: dict) -> float | None:
    """The time limit an ``error`` record with reason ``timeout`` ran past (its ``seconds``), else None."""
    if verdict_of(record) != VerdictStatus.ERROR or record.get("reason") != "timeout":
        return None
    s = _f(record.get("seconds"))
    return None if math.isnan(s) else s


def verdict_phrase(record: dict) -> str:
    """A record's verdict as every command shows it: :func:`verdict_word` ("refuted, as expected" for an expected
    refutation), and for a claim stopped at its time limit ``error (timeout after N s)``."""
    word = verdict_word(verdict_of(record), record.get("expectation"))
    limit = timeout_seconds(record)
    return word if limit is None else f"{word} (timeout after {limit:g} s)"


def _f(x: Any) -> float:
    """A stored number (``"nan"``/``"inf"``/``"-inf"`` strings included) as a float; None is NaN."""
    if x is None:
        return math.nan
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def ratio(margin: float, error: float) -> float:
    """``margin / error`` (``+-inf`` when the error is 0 and the margin is not; NaN when both are 0 or unknown)."""
    margin, error = _f(margin), _f(error)
    if math.isnan(margin) or math.isnan(error):
        return math.nan
    if error == 0.0:
        return math.copysign(math.inf, margin) if margin != 0.0 else math.nan
    if math.isinf(error):
        return 0.0 if math.isfinite(margin) else math.nan
    return margin / error


def make(margin: float, error: float, *, scale: float = 1.0, status: str = "", engine: str = "",
         which: str = "") -> dict:
    """The evidence record (JSON-ready once passed through :func:`models.stored.jsonio.strict`); ``status`` is the
    outcome's :class:`~models.stored.verdicts.VerdictStatus` word."""
    return {"margin": _f(margin), "error": _f(error), "ratio": ratio(margin, error), "scale": _f(scale),
            "status": str(status), "engine": engine or "", "which": which}


def of_outcome(outcome, which: str = "") -> dict:
    """The evidence of an :class:`~properties.api.Outcome` or of its JSON form (``driver.outcome_to_json``)."""
    if isinstance(outcome, dict):
        return make(outcome.get("margin"), outcome.get("error"), scale=outcome.get("scale", 1.0),
                    status=outcome.get("status", ""), engine=outcome.get("engine", ""), which=which)
    return make(outcome.margin, outcome.error, scale=outcome.scale, status=outcome.status, engine=outcome.engine,
                which=which)


def pick(status: str, *, counterexample=None, inconclusive=None, smallest=None) -> dict | None:
    """The evidence of a verdict ``status`` from the outcomes the search kept (see the module docstring)."""
    if status == VerdictStatus.VIOLATED and counterexample is not None:
        return of_outcome(counterexample, "counterexample")
    if status == VerdictStatus.INCONCLUSIVE and inconclusive is not None:
        return of_outcome(inconclusive, "inconclusive")
    if smallest is not None:
        return of_outcome(smallest, "smallest")
    return None


def of_record(record: dict) -> dict | None:
    """The evidence stored with a ``results.jsonl`` record (or a counterexample file), or None when it has none.

    Records written before the evidence was stored fall back to their counterexample's outcome; a bare
    ``smallest_margin`` (normalized, with no error) is not evidence and gives None."""
    extra = record.get("extra") or {}
    ev = extra.get("evidence") if isinstance(extra, dict) else None
    if isinstance(ev, dict) and "margin" in ev:
        return {**ev, "margin": _f(ev.get("margin")), "error": _f(ev.get("error")),
                "ratio": ratio(ev.get("margin"), ev.get("error")), "scale": _f(ev.get("scale", 1.0))}
    cx = record.get("counterexample")
    if isinstance(cx, dict) and isinstance(cx.get("outcome"), dict):
        return of_outcome(cx["outcome"], "counterexample")
    return None


def num(x: Any, digits: int = 4) -> str:
    """One number as every command prints it (``digits`` significant digits; ``inf``, ``-inf``, ``nan``; ``-``
    for None)."""
    if x is None:
        return "-"
    v = _f(x)
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if v == 0.0:
        return "0"
    return f"{v:.{digits}g}"


def cells(ev: dict | None) -> tuple[str, str, str]:
    """``(margin, error, margin/error)`` as printed in the report's columns (``-`` when there is no evidence)."""
    if not ev:
        return "-", "-", "-"
    return num(ev.get("margin")), num(ev.get("error")), num(ev.get("ratio"), 3)


def sentence(ev: dict | None) -> str:
    """One line: ``margin -68.57, error 3.1e-09, margin/error -2.212e+10`` (the same numbers as :func:`cells`)."""
    if not ev:
        return "no margin recorded"
    m, e, r = cells(ev)
    return f"margin {m}, error {e}, margin/error {r}"


__all__ = ["REFUTED_AS_EXPECTED", "WHICH", "cells", "make", "num", "of_outcome", "of_record", "pick", "plural",
           "ratio", "sentence", "timeout_seconds", "verdict_phrase", "verdict_word"]
