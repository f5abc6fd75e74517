"""A high-precision chart trajectory (gf-mp) validated against a gf-mp raw-factor re-integration (issue 11, item 2).

:mod:`properties.chart_check` does this for ``gf``'s float64 chart. ``gf-mp`` integrates balanced 2x2 settings on
its own scaled chart (``models.engines.gf_mp.systems.ChartSystem``), which keeps the det sign by construction;
this module integrates the same setting again on the *raw factors* with gf-mp (``path="raw"``: the factors'
gradient in mpmath, no chart formula, its own reference run for the error estimate), and at every loss level
both runs recorded, where the raw run resolves its state, compares the two end-to-end matrices *at the same
loss* in high precision (the engines' decimal strings, 60-digit mpmath):

- ``d = max|W_chart - W_raw|`` (the raw record moved to the chart record's loss along its tangent, to first
  order) beyond ``product_err_chart + product_err_raw`` plus the first-order remainder bound: the chart is not
  the raw flow;
  :class:`properties.chart_check.ChartMismatch` is raised and the claim ends in ``error`` (never ``holds``);
- otherwise the discrepancy enters the chart point's error: ``product_err := max(product_err, d +
  product_err_raw)``.

Range and cost. The raw path resolves the flow only while ``|det W| / ||W||^2`` stays above ``10^(10 - digits)``
(depth 2 from scale 0.1: loss ~1e-2 at 30 digits; depth >= 3 much further) and costs seconds per decade (depth 3
to loss 1e-3 at 30 digits, tol 1e-12: ~5-10 s with its reference run on a shared core). The re-integration runs
at ``RAW_DIGITS`` (30) digits, tol ``RAW_TOL`` (1e-12: its estimates, ~1e-12 of |W|, are ten orders below what a
wrong chart coefficient does), and stops at ``RAW_FLOOR`` (loss 1e-2; or the chart's own end when that is
higher), at ``precision_lost`` or after ``RAW_BUDGET`` (6) seconds with its reference run, whichever comes first; the points below its
last resolved level keep the chart's own error, and the outcome's detail says down to which loss the path was
validated (``raw_cross_check_mp``).
"""

from __future__ import annotations

import math

import mpmath

from models.engines import get_engine

from .api import Outcome
from .chart_check import RESOLVES, compare_points, uses_chart
from .flow_check import loss_gradient

RAW_FLOOR = 1e-2
RAW_BUDGET = 6.0
RAW_DIGITS = 30
RAW_TOL = 1e-12


def uses_mp_chart(traj) -> bool:
    """Whether ``traj`` came (at least in part) from gf-mp's chart: :func:`properties.chart_check.uses_chart` with
    the arithmetic ``mpmath``."""
    return uses_chart(traj, "mpmath")


def raw_run_mp(problem, model, init, spec: dict):
    """The gf-mp raw-factor re-integration of ``spec`` (the chart run's keyword arguments), cut at ``RAW_FLOOR``
    and ``RAW_BUDGET``."""
    s = dict(spec)
    until = s.get("until_loss")
    s["until_loss"] = max(float(until), RAW_FLOOR) if until is not None else RAW_FLOOR
    s["wall_budget"] = RAW_BUDGET
    return get_engine("gf-mp", digits=RAW_DIGITS, tol=RAW_TOL, path="raw").run(problem, model, init, **s)


def _hp_product(p):
    if p.hp and "product" in p.hp:
        return [[mpmath.mpf(v) for v in row] for row in p.hp["product"]]
    return [[mpmath.mpf(float(v)) for v in row] for row in p.product]


def _resolved(q) -> bool:
    scale = max(abs(float(v)) for row in q.product for v in row)
    return math.isfinite(q.product_err) and math.isfinite(q.loss_err) and q.product_err <= RESOLVES * scale


def _moved(problem, q, loss_to):
    """The raw point's product moved along its tangent to the loss ``loss_to`` (first order: both runs land on a
    level only to ~1e-3 of their tolerances, so the raw run's record sits ~1e-15 (relative, tol 1e-12) off the
    chart's in loss, which at |dW/dlog loss| ~ 1 is far above the chart's own error), and the tangent it used."""
    W = _hp_product(q)
    T = [[mpmath.mpf(v) for v in row] for row in q.hp["tangent"]]
    G = loss_gradient(problem, mpmath.matrix(W))
    rate = mpmath.fsum(G[i, j] * T[i][j] for i in range(len(W)) for j in range(len(W[0])))   # dloss/dt < 0
    dt = (loss_to - mpmath.mpf(q.hp["loss"])) / rate if rate else mpmath.mpf(0)
    return [[w + t * dt for w, t in zip(rw, rt)] for rw, rt in zip(W, T)], T, dt


def cross_check_mp(traj, raw, problem) -> tuple[object, dict]:
    """``(traj with the discrepancies in its points' errors, summary)``; raises :class:`ChartMismatch`. Points
    are paired by loss level (both runs land on the same levels); the raw point is moved to the chart point's
    loss to first order along its tangent, and the change of tangent between the two points times the time moved
    bounds the remainder (added to the allowed difference)."""
    raw_pts = [q for q in raw.points[1:] if q.loss > 0 and _resolved(q)]

    def distance(p, q):
        a = _hp_product(p)
        b, Tq, dt = _moved(problem, q, mpmath.mpf(p.hp["loss"]))
        Tp = [[mpmath.mpf(v) for v in row] for row in p.hp["tangent"]]
        rem = float(max(abs(x - y) for ra, rb in zip(Tp, Tq) for x, y in zip(ra, rb)) * abs(dt))
        return float(max(abs(x - y) for ra, rb in zip(a, b) for x, y in zip(ra, rb))), rem

    with mpmath.workdps(60):
        return compare_points(traj, raw, raw_pts, distance, what="gf-mp chart",
                              raw_engine=f"gf-mp path=raw digits={RAW_DIGITS} tol={RAW_TOL:g}")


def chart_checked_mp(evaluate, problem, model, init, spec: dict):
    """``evaluate(traj)`` on a gf-mp chart trajectory whose points are first cross-checked against gf-mp's
    raw-factor flow (:func:`cross_check_mp`); other trajectories are passed through. The summary is added to
    the outcome's detail as ``raw_cross_check_mp``."""
    def ev(traj):
        if not uses_mp_chart(traj):
            return evaluate(traj)
        checked, summary = cross_check_mp(traj, raw_run_mp(problem, model, init, spec), problem)
        out = evaluate(checked)
        return Outcome(out.margin, out.error, {**out.detail, "raw_cross_check_mp": summary}, out.engine, out.scale)

    return ev


__all__ = ["RAW_BUDGET", "RAW_DIGITS", "RAW_FLOOR", "RAW_TOL", "chart_checked_mp", "cross_check_mp", "raw_run_mp",
           "uses_mp_chart"]
