"""Razin & Cohen 2020 beyond the single 2x2 problem of Theorem 1: the four unobserved locations, the ``d x d``
family of their code, and (in :mod:`properties.experiments_rc20_gd`) their gradient-descent experiment.

- ``rc20.ext.locations``: Theorem 1 with the unobserved entry at each of the four positions of a 2x2 matrix
  (:func:`models.problems.rc20` with ``unobserved``). A row or column swap ``P`` carries the problem with the
  unobserved entry at (1,1) to the others and maps balanced gradient flow to balanced gradient flow
  (``W_L -> P W_L`` or ``W_1 -> W_1 P``), flipping the det sign once per swap; so the theorem there reads
  ``|W[unobserved]| >= (1-s)^2/s`` for inits with ``sign det W(0) = sign det P`` (det > 0 for the diagonal
  positions, det < 0 for the off-diagonal ones). The check integrates the moved problem itself, not the
  original one permuted (catalog RC20-Ext-Locations).
- ``rc20.ext.larger``: the ``d x d`` family (catalog RC20-Ext-Larger: ``[[*, 1, 0], [1, 0, 0], [0, 0, I]]``,
  every entry but (1,1) observed), with the explicit bound derived in the catalog,
  ``|w11| >= (1 - s/sqrt(d))^d / (s (1 + s)^(d-2))`` for ``s = sqrt(2 loss) < 1/2`` along balanced gradient flow
  with ``det W(0) > 0``.
"""

from __future__ import annotations

import math

from hypothesis import strategies as st

from models import inits
from models.factorizations import DeepMatrix
from models.generators import rc20_larger
from models.problems import rc20

from . import strategies as S
from ._common import combine, escalate, point_outcome
from .api import claim

SRC = "Razin & Cohen 2020 (NeurIPS), arXiv 2005.06398"

LOCATIONS = ((0, 0), (0, 1), (1, 0), (1, 1))

H_BALANCED = ("balanced", "balanced initialization: W_{j+1}(0)^T W_{j+1}(0) = W_j(0) W_j(0)^T for all j")


def _s(loss: float) -> float:
    return math.sqrt(2.0 * max(loss, 0.0))


def required_det(location) -> str:
    """The det sign of ``W(0)`` under which Theorem 1 carries over to ``location`` (0-based): that of the row or
    column swap carrying (0, 0) there, so "positive" on the diagonal and "negative" off it."""
    i, j = (int(location[0]), int(location[1]))
    return "positive" if (i + j) % 2 == 0 else "negative"


# ----------------------------------------------------------------------------------------------------------------
# rc20.ext.locations
# ----------------------------------------------------------------------------------------------------------------
def _locations_strategy(dropped):
    return S.fixed_dicts(
        location=st.sampled_from([list(ij) for ij in LOCATIONS]),
        depth=S.depths(2, 5),
        scale=S.log_scale(-2.0, 0.0),
        seed=S.seeds(),
        det_rule="matches" if "det_matches" not in dropped else st.sampled_from(["matches", "opposite"]),
        until_loss=S.log_scale(-6.0, -4.0),
        init=_init_kind(dropped),
    )


def _init_kind(dropped):
    """``balanced``; with the hypothesis dropped, also per-layer Gaussian (unbalanced) inits."""
    return "balanced" if "balanced" not in dropped else st.sampled_from(["balanced", "gaussian"])


def _init(model, inputs, det):
    """The drawn init: balanced at end-to-end scale ``scale``, or (``balanced`` dropped) per-layer Gaussian with
    std ``scale^(1/L)``, so that the end-to-end matrix starts at a comparable size."""
    scale, seed = float(inputs["scale"]), int(inputs["seed"])
    if inputs.get("init", "balanced") == "gaussian":
        return inits.gaussian(model, scale ** (1.0 / model.depth), seed=seed, det=det)
    return inits.balanced(model, scale, seed=seed, det=det)


def locations_setting(inputs):
    """``(problem, model, init, location)`` of an ``rc20.ext.locations`` input."""
    loc = tuple(int(v) for v in inputs["location"])
    det = required_det(loc)
    if inputs.get("det_rule", "matches") == "opposite":
        det = "negative" if det == "positive" else "positive"
    model = DeepMatrix(int(inputs["depth"]), (2, 2))
    return rc20(unobserved=loc), model, _init(model, inputs, det), loc


def _unobserved_bound_eval(loc):
    def evaluate(traj):
        outs = []
        for k, p in enumerate(traj.points):
            s = _s(p.loss)
            if not 0.0 < s < 1.0:
                continue
            b = (1.0 - s) ** 2 / s
            v = abs(float(p.product[loc]))
            err = p.product_err + (1.0 - s * s) / s ** 3 * p.loss_err
            outs.append(point_outcome(v - b, err, b, point=k, t=p.t, loss=p.loss, value=v, bound=b))
        return combine(outs, location=list(loc))

    return evaluate


@claim("rc20.ext.locations",
       title="Theorem 1 at each of the four unobserved locations of the 2x2 problem",
       source=SRC + ", Theorem 1 moved by row/column swaps; catalog RC20-Ext-Locations (and RC20-Thm1 for the "
                    "bound)",
       statement="for each unobserved position (i, j) of the 2x2 problem (the observations of [[*, 1], [1, 0]] moved "
                 "by the row/column swap P carrying (1,1) to (i, j)), gradient flow from a balanced init with "
                 "sign det W(0) = sign det P (> 0 on the diagonal, < 0 off it): |W_ij(t)| >= (1 - s)^2 / s wherever "
                 "s = sqrt(2 loss(t)) < 1",
       kind="trajectory", strategy=_locations_strategy,
       hypotheses=[H_BALANCED, ("det_matches", "sign det W(0) = sign det P: det > 0 when the unobserved entry is on "
                                               "the diagonal, det < 0 when it is off the diagonal")],
       cost=1.2)
def ext_locations(inputs, dropped):
    """Float64 gradient flow on the moved problem itself (``models.problems.rc20(unobserved=...)``; the 2x2 chart
    for these balanced inits), until the drawn loss in [1e-6, 1e-4] (4 records per decade), escalating to a
    tighter tolerance and then mpmath; at every recorded point with s < 1 the margin is |W_ij| - (1-s)^2/s, error
    product_err + (1-s^2)/s^3 * loss_err."""
    problem, model, init, loc = locations_setting(inputs)

    def run(engine):
        return engine.run(problem, model, init, until_loss=float(inputs["until_loss"]), per_decade=4,
                          wall_budget=60.0)

    return escalate(run, _unobserved_bound_eval(loc))


# ----------------------------------------------------------------------------------------------------------------
# rc20.ext.larger
# ----------------------------------------------------------------------------------------------------------------
LARGER_DIMS = (3, 4, 5)
#: depth 2 is left out: float64 cannot follow the d x d flow at depth 2 (the trailing singular values decay
#: geometrically and the raw factors lose the det sign near loss 5e-2, catalog RC20-Pitfall-Depth2).
LARGER_DEPTHS = (3, 4)


def larger_bound(s: float, d: int) -> float:
    """``(1 - s/sqrt(d))^d / (s (1 + s)^(d-2))``: the lower bound on ``|w11|`` for the ``d x d`` family at
    ``s = sqrt(2 loss)`` in (0, 1/2) (catalog RC20-Ext-Larger); for d = 2 it is ``(1 - s/sqrt 2)^2 / s``."""
    r = math.sqrt(d)
    return (1.0 - s / r) ** d / (s * (1.0 + s) ** (d - 2))


def larger_bound_slope(s: float, d: int) -> float:
    """``|d larger_bound / d s|`` (the bound is decreasing in s on (0, 1/2))."""
    r = math.sqrt(d)
    return larger_bound(s, d) * (d / (r - s) + 1.0 / s + (d - 2) / (1.0 + s))


def _larger_strategy(dropped):
    return S.fixed_dicts(
        d=st.sampled_from(list(LARGER_DIMS)),
        depth=st.sampled_from(list(LARGER_DEPTHS)),
        scale=S.log_scale(-2.0, 0.0),
        seed=S.seeds(),
        det="positive" if "det_positive" not in dropped else st.sampled_from(["positive", "negative"]),
        until_loss=S.log_scale(-4.0, -3.0),
        init=_init_kind(dropped),
    )


def larger_setting(inputs):
    d = int(inputs["d"])
    model = DeepMatrix(int(inputs["depth"]), (d, d))
    return rc20_larger((d, d)), model, _init(model, inputs, inputs.get("det", "positive"))


def _larger_eval(d: int):
    def evaluate(traj):
        outs = []
        for k, p in enumerate(traj.points):
            s = _s(p.loss)
            if not 0.0 < s < 0.5:
                continue
            b = larger_bound(s, d)
            v = abs(float(p.product[0, 0]))
            err = p.product_err + larger_bound_slope(s, d) / s * p.loss_err
            outs.append(point_outcome(v - b, err, b, point=k, t=p.t, loss=p.loss, w11=v, bound=b))
        return combine(outs, d=d)

    return evaluate


@claim("rc20.ext.larger",
       title="The d x d family of RC20 (d = 3, 4, 5): |w11| >= (1 - s/sqrt d)^d / (s (1+s)^(d-2))",
       source=SRC + ", the generalization of the poster and code (3x3 to 5x5); catalog RC20-Ext-Larger (explicit "
                    "bound derived there)",
       statement="on the d x d problem with target [[*, 1, 0], [1, 0, 0], [0, 0, I_(d-2)]] and every entry but "
                 "(1,1) observed (d = 3, 4, 5), gradient flow at depth 3 or 4 from a balanced init with det W(0) > 0: "
                 "|w11(t)| >= (1 - s/sqrt(d))^d / (s (1 + s)^(d-2)) wherever s = sqrt(2 loss(t)) < 1/2",
       kind="trajectory", strategy=_larger_strategy,
       hypotheses=[H_BALANCED, ("det_positive", "det W(0) > 0 (every zero-loss completion has det -1)")],
       cost=2.0)
def ext_larger(inputs, dropped):
    """Float64 gradient flow on the raw factors (``models.generators.rc20_larger``; no chart beyond 2x2) until the
    drawn loss in [1e-4, 1e-3] (4 records per decade), escalating to a tighter tolerance; at every recorded point
    with s < 1/2 the margin is |w11| - bound(s), error product_err + |bound'(s)|/s * loss_err. Runs that lose the
    det sign in float64 are not evidence (escalation, then an engine failure)."""
    problem, model, init = larger_setting(inputs)

    def run(engine):
        return engine.run(problem, model, init, until_loss=float(inputs["until_loss"]), per_decade=4,
                          wall_budget=60.0)

    return escalate(run, _larger_eval(int(inputs["d"])),
                    ladder=(("gf", {"rtol": 1e-10, "path": "raw"}), ("gf", {"rtol": 1e-12, "path": "raw"})))


__all__ = ["LARGER_DEPTHS", "LARGER_DIMS", "LOCATIONS", "larger_bound", "larger_bound_slope", "larger_setting",
           "locations_setting", "required_det"]
