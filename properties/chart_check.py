"""A chart trajectory validated against the raw-factor flow over the range the raw flow resolves (issue 11, item 2).

``gf`` integrates balanced 2x2 settings on a chart (signed SVD / log coordinates, :mod:`models.chart`), which keeps
the det sign by construction. The gradient-flow check (:mod:`properties.flow_check`) compares the chart's tangent
with the field at every recorded point, a local test. This module adds the global one: the same setting is
integrated again on the *raw factors* (``gf`` with ``path="raw"``: ``factor_grads`` on the factors, no chart
formula), and at every loss level both runs recorded, where the raw run's own error estimate resolves its state,
the two end-to-end matrices are compared *at the same loss* (the path as a curve, as the engines' error estimates
are, see ``models.engines.gf``):

- ``d = max|W_chart - W_raw|`` beyond ``product_err_chart + product_err_raw`` (both runs' estimates): the chart is
  not the raw flow; :class:`ChartMismatch` is raised and the claim ends in ``error`` (never ``holds``);
- otherwise the discrepancy enters the chart point's error: ``product_err := max(product_err, d +
  product_err_raw)`` (the chart state is within d of a raw state that is within its error of the flow).

Range. Float64 raw factors resolve the flow only so far (they stop with ``precision_lost`` when
``sigma_min/sigma_max`` falls to ~1e3 eps, at loss ~2e-2 for depth 2, 1e-5 for depth 3, 1e-7 for depth 4), and
they cost more than the chart (0.2-2 s down to loss 1e-4 on a shared core, 5-20 s to 1e-8 at depth 6). The
re-integration runs at rtol 1e-8 (half the cost of 1e-10; its estimates, ~1e-7 of |W|, are five orders below what
a wrong chart coefficient does, ~1e-2 at the first level) and stops at ``RAW_FLOOR`` (loss 1e-3; or the chart's own end when that is higher) or after
``RAW_BUDGET`` seconds, whichever comes first; the points below its last resolved level keep the chart's own
error, and the outcome's detail says down to which loss the path was validated (``raw_cross_check``). A raw
point *resolves* its state when its error estimate is finite and below ``RESOLVES`` (1e-2) of its largest entry.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from models.engines import engine_class, get_engine
from models.errors import InvalidInput

from .api import Outcome
from .flow_check import NotGradientFlow

RAW_FLOOR = 1e-3
RAW_BUDGET = 1.5
RESOLVES = 1e-2
RAW_RTOL = 1e-8    # half the cost of 1e-10; its estimates (~1e-7 of |W|) still resolve a wrong chart (~1e-2)
_LEVEL_MATCH = 1e-9   # both runs locate a loss level to ~1e-12 relative; levels closer than this are the same


class ChartMismatch(NotGradientFlow):
    """The chart's end-to-end matrix differs from the raw-factor flow's at the same loss beyond both estimates."""


def uses_chart(traj, arithmetic: str = "float64") -> bool:
    """Whether ``traj`` came (at least in part) from a chart whose engine declares ``arithmetic`` (``float64``:
    ``gf``'s, cross-checked here; ``mpmath``: ``gf-mp``'s, cross-checked by :mod:`properties.chart_check_mp`),
    read from the engine's declaration and ``stats["path"]`` (the engines' one stats schema). A trajectory of an
    unregistered engine is passed through."""
    try:
        declared = engine_class(traj.engine).arithmetic
    except InvalidInput:
        return False
    return declared == arithmetic and str(traj.stats.get("path", "")) in ("chart", "raw-then-chart")


def raw_run(problem, model, init, spec: dict):
    """The raw-factor re-integration of ``spec`` (the chart run's keyword arguments), cut at ``RAW_FLOOR`` and
    ``RAW_BUDGET``."""
    s = dict(spec)
    until = s.get("until_loss")
    s["until_loss"] = max(float(until), RAW_FLOOR) if until is not None else RAW_FLOOR
    s["wall_budget"] = RAW_BUDGET
    return get_engine("gf", rtol=RAW_RTOL, path="raw").run(problem, model, init, **s)


def _resolved(q) -> bool:
    scale = float(np.max(np.abs(q.product)))
    return math.isfinite(q.product_err) and math.isfinite(q.loss_err) and q.product_err <= RESOLVES * scale


def cross_check(traj, raw, times: bool = False) -> tuple[object, dict]:
    """``(traj with the discrepancies in its points' errors, summary)``; raises :class:`ChartMismatch`. Points
    are paired by loss level, and with ``times`` (runs with ``record_at``) also by recorded time, where both
    engines' estimates are same-time differences."""
    raw_pts = [q for q in raw.points[1:] if q.loss > 0 and _resolved(q)]

    def distance(p, q):
        return float(np.max(np.abs(p.product - q.product))), 0.0

    return compare_points(traj, raw, raw_pts, distance, what="chart", raw_engine=f"gf path=raw rtol={RAW_RTOL:g}",
                          times=times)


def compare_points(traj, raw, raw_pts, distance, *, what: str, raw_engine: str, times: bool = False):
    """The one pairing and comparison of a chart trajectory with its raw-factor re-integration (float64 here,
    gf-mp in :mod:`properties.chart_check_mp`): each chart point is paired with the raw point on the same loss
    level (or, with ``times``, at the same recorded time); ``distance(p, q)`` gives ``(max|W_p - W_q|, extra)``,
    ``extra`` a remainder the comparison itself adds (0 when both points are at the same place). The difference
    must lie within both points' error estimates plus ``extra`` (else :class:`ChartMismatch`) and enters the
    chart point's error. Returns ``(traj with those errors, summary)``."""
    out, compared, worst, worst_ratio, lowest = [], 0, 0.0, 0.0, None
    for k, p in enumerate(traj.points):
        match = None
        if k > 0 and p.loss > 0:
            match = next((q for q in raw_pts if abs(q.loss - p.loss) <= _LEVEL_MATCH * p.loss), None)
        if k > 0 and match is None and times:   # a record_at time both runs recorded (same-time errors)
            match = next((q for q in raw_pts if abs(q.t - p.t) <= 1e-12 * max(p.t, 1.0)), None)
        if match is None:
            out.append(p)
            continue
        d, extra = distance(p, match)
        allowed = p.product_err + match.product_err + extra
        compared += 1
        worst = max(worst, d)
        worst_ratio = max(worst_ratio, d / allowed if allowed > 0 else math.inf)
        lowest = p.loss if lowest is None else min(lowest, p.loss)
        if not d <= allowed:
            raise ChartMismatch(
                f"the {what} trajectory is not gradient flow on the raw factors: at loss {p.loss:.6g} (point {k}, "
                f"t = {p.t:.6g}) max|W_chart - W_raw| = {d:.3g} exceeds both runs' error estimates "
                f"({p.product_err:.3g} + {match.product_err:.3g})")
        out.append(replace(p, product_err=max(p.product_err, d + match.product_err + extra)))
    summary = {"raw_engine": raw_engine, "raw_status": raw.status.value,
               "raw_last_loss": float(raw.points[-1].loss) if raw.points else None,
               "points_compared": compared, "validated_down_to_loss": lowest,
               "largest_discrepancy": worst, "largest_discrepancy_over_estimates": worst_ratio,
               "raw_seconds": round(float(raw.seconds), 3)}
    return replace(traj, points=tuple(out)), summary


def chart_checked(evaluate, problem, model, init, spec: dict):
    """``evaluate(traj)`` on a chart trajectory whose points are first cross-checked against the raw-factor flow
    (:func:`cross_check`); trajectories not from the chart are passed through. The summary is added to the
    outcome's detail as ``raw_cross_check``."""
    def ev(traj):
        if not uses_chart(traj):
            return evaluate(traj)
        checked, summary = cross_check(traj, raw_run(problem, model, init, spec), times=bool(spec.get("record_at")))
        out = evaluate(checked)
        return Outcome(out.margin, out.error, {**out.detail, "raw_cross_check": summary}, out.engine, out.scale)

    return ev


__all__ = ["ChartMismatch", "RAW_BUDGET", "RAW_FLOOR", "RESOLVES", "chart_checked", "compare_points", "cross_check",
           "raw_run",
           "uses_chart"]
