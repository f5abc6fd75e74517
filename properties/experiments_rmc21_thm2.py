"""Theorem 2 of Razin, Maman & Cohen 2021 (catalog RMC21-Thm2): ``rmc21.thm2.rank_one_trajectory``.

The theorem (as the catalog reconstructs it): with init ``w_r^n(0) = alpha^(1/N) a_r^n`` (fixed unit directions,
balanced, every component of norm alpha) and one component with strictly maximal initial alignment
``g_r = <-grad L(0), a_r^1 (x) ... (x) a_r^N>``, for every horizon T and tolerance delta there is alpha_0 such that
for alpha < alpha_0 the tensor factorization, after an alpha-dependent time shift, stays within delta of a
rank-one trajectory on an interval of length T.

The check: the rank-one trajectory is the gradient flow of the R = 1 factorization from the leading component's
own init (``alpha^(1/N) a_lead^n``); both flows are anchored at the time their loss first reaches half its
initial value (the catalog's falsification test uses the same event), and compared on the window
``tau in [-2, T]`` after it (``WINDOW``, 25 times): ``delta(alpha) = max_tau ||W(t_c + tau) - Wbar(tbar_c + tau)||``
(Frobenius; ``||W*|| = 1``). The theorem says delta(alpha) -> 0 as alpha -> 0: the check is that delta strictly
decreases over ``ALPHAS`` = 1e-2, 1e-3, 1e-4, each step with a margin above the numerical error. Measured on the
instances drawn (rtol 1e-9): delta from 0.02-0.55 at 1e-2 down to 2.7e-4 - 8.5e-4 at 1e-4, fitted slopes 0.8 to
1.4 decades per decade, errors at most 6.5e-4; at alpha = 1e-5 (rtol 1e-10) delta (4e-5) was below its error,
so the ladder stops at 1e-4; the quick profile runs its one instance on 1e-2, 1e-3 only (``QUICK_ALPHAS``).
Dropping ``unique_leader`` draws directions without the 1.5 ratio; the two such
instances measured still held (`verify ablate` does not show the hypothesis necessary at these scales: with a
near tie, 0.255 against 0.252, delta shrank more slowly, 0.46, 0.18, 0.11, but it shrank).

Engine: float64 gradient flow on the raw factors (``gf``, path raw, rtol 1e-9 (``RTOL``), its companion run at 10x the
tolerance as the error estimate of every recorded tensor entry). Error of delta at one alpha: ``sqrt(size)`` times
the sum of the two flows' largest product errors on the window, plus the anchor's time error (the anchor point's
loss error over the loss's rate there, from the recorded losses at tau = +-0.5) times twice the largest recorded
speed ``||dW/dt||`` (finite differences of the window), for each flow.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st

from models import inits
from models.engines import get_engine
from models.errors import EngineFailure
from models.factorizations import CP
from models.problems import tensor_completion

from . import strategies as S
from ._common import combine, point_outcome
from .api import claim, current_profile

SRC = "Razin, Maman & Cohen 2021 (ICML), arXiv 2102.09972"

ALPHAS = (1e-2, 1e-3, 1e-4)
HORIZON = 10.0
WINDOW = tuple(float(t) for t in np.linspace(-2.0, HORIZON, 25))
#: the strict-maximality hypothesis, quantified: the leading initial alignment is at least this times the second
LEAD_RATIO = 1.5
RTOL = 1e-9
DIMS = (3, 3, 3)

H_LEADER = ("unique_leader", f"one component has strictly maximal initial alignment with -grad L(0) (drawn: at least "
                             f"{LEAD_RATIO} times the second largest)")


def _unit(v):
    return v / np.linalg.norm(v, axis=0)


def _component_alignments(dirs, G):
    out = []
    for r in range(dirs[0].shape[1]):
        c = dirs[0][:, r]
        for U in dirs[1:]:
            c = np.multiply.outer(c, U[:, r])
        out.append(-float(np.sum(G * c)))
    return np.array(out)


def thm2_setting(inputs):
    """``(problem, dirs, lead, g)``: the rank-2 target ``T* = (c1 + s2 c2) / ||.||`` (random unit rank-1 tensors
    c1, c2), every entry observed (loss ``1/2 sum of squares``), R unit directions per mode with every alignment made
    nonnegative (the first mode's sign flipped; order 3 is odd) and, unless ``unique_leader`` is dropped, redrawn
    (same seed stream) until the largest alignment is at least ``LEAD_RATIO`` times the second."""
    rng = np.random.default_rng(int(inputs["seed"]))
    R = int(inputs["R"])
    comps = []
    for _ in range(2):
        c = np.ones(())
        for d in DIMS:
            c = np.multiply.outer(c, _unit(rng.standard_normal(d)))
        comps.append(c)
    T = comps[0] + float(inputs["s2"]) * comps[1]
    T = T / np.linalg.norm(T)
    idx = np.stack(np.unravel_index(np.arange(T.size), DIMS), axis=1)
    problem = tensor_completion(DIMS, idx, T.reshape(-1))
    G0 = problem.grad(np.zeros(DIMS))
    for _ in range(1000):
        dirs = [_unit(rng.standard_normal((d, R))) for d in DIMS]
        g = _component_alignments(dirs, G0)
        dirs[0] = dirs[0] * np.where(g < 0, -1.0, 1.0)
        g = np.abs(g)
        top = np.sort(g)[::-1]
        if inputs.get("leader", "unique") != "unique" or top[0] >= LEAD_RATIO * top[1]:
            return problem, dirs, int(np.argmax(g)), g
    raise EngineFailure("no direction draw with a unique leader in 1000 tries")


def _anchored(problem, model, factors):
    """The flow from ``factors`` anchored at loss = half the initial loss: ``(t_c, products, errors, losses,
    anchor_time_error)`` on ``WINDOW``."""
    eng = get_engine("gf", rtol=RTOL, path="raw")
    init = inits.explicit(model, factors, "rmc21_thm2")
    level = 0.5 * problem.loss(np.zeros(DIMS))
    a = eng.run(problem, model, init, until_loss=level, per_decade=2, wall_budget=60.0)
    if a.status.failed or a.points[-1].loss > level * (1 + 1e-9):
        raise EngineFailure(f"gf did not reach loss {level:g}: {a.status.value} {a.message}")
    tc, anchor_loss_err = float(a.points[-1].t), float(a.points[-1].loss_err)
    times = tuple(tc + t for t in WINDOW)
    b = eng.run(problem, model, init, record_at=times, wall_budget=60.0)
    if b.status.failed:
        raise EngineFailure(f"gf ended with status {b.status.value}: {b.message}")
    pts = []
    for t in times:
        hit = [p for p in b.points if abs(p.t - t) <= 1e-9 * max(1.0, t)]
        if not hit:
            raise EngineFailure(f"gf recorded no point at t = {t:g}")
        pts.append(hit[0])
    W = np.array([p.product for p in pts])
    err = np.array([p.product_err for p in pts])
    loss = np.array([p.loss for p in pts])
    k0 = WINDOW.index(0.0)
    rate = abs(loss[k0 + 1] - loss[k0 - 1]) / (WINDOW[k0 + 1] - WINDOW[k0 - 1])
    speed = np.max(np.linalg.norm(np.diff(W, axis=0).reshape(len(W) - 1, -1), axis=1) / np.diff(WINDOW))
    t_err = anchor_loss_err / rate if rate > 0 else math.inf
    return tc, W, err, loss, 2.0 * speed * t_err


def rank_one_distance(problem, dirs, lead, alpha, reference_alpha=None):
    """``(delta, error, detail)`` at component norm ``alpha`` (see the module docstring). ``reference_alpha``
    (default ``alpha``) is the init scale of the rank-one flow: a fixed one is the wrong reference of the negative
    control in tests/unit/test_rmc21_thm2.py."""
    N, R = len(DIMS), dirs[0].shape[1]
    s = alpha ** (1.0 / N)
    tc, W, e, _, a_err = _anchored(problem, CP(DIMS, R), [U * s for U in dirs])
    sb = s if reference_alpha is None else float(reference_alpha) ** (1.0 / N)
    tb, Wb, eb, _, b_err = _anchored(problem, CP(DIMS, 1), [U[:, [lead]] * sb for U in dirs])
    d = np.linalg.norm((W - Wb).reshape(len(WINDOW), -1), axis=1)
    k = int(np.argmax(d))
    err = math.sqrt(W[0].size) * (float(np.max(e)) + float(np.max(eb))) + a_err + b_err
    return float(d[k]), err, {"alpha": alpha, "t_anchor": tc, "t_anchor_rank1": tb, "worst_tau": WINDOW[k]}


def shrink_outcomes(res, alphas):
    """The check's margins from ``res`` (``rank_one_distance`` results at ``alphas``, largest first): one per step,
    ``delta(alpha_k) - delta(alpha_k+1)`` with the two deltas' errors summed."""
    outs = []
    for k in range(len(alphas) - 1):
        (d0, e0, i0), (d1, e1, i1) = res[k], res[k + 1]
        outs.append(point_outcome(d0 - d1, e0 + e1, d0, part=f"delta shrinks from alpha {alphas[k]:g} to "
                                                             f"{alphas[k + 1]:g}", deltas=[d0, d1],
                                  errors=[e0, e1], anchors=[i0["t_anchor"], i1["t_anchor"]]))
    return outs


#: the one instance of the quick profile and its shorter ladder (one shrink step, 1e-2 to 1e-3: measured 3.6 s
#: against 5.9 s for the full ladder at the same moment; ci and thorough draw theirs on the full ladder)
QUICK_INPUT = {"R": 3, "s2": 0.68, "seed": 309580411}
QUICK_ALPHAS = ALPHAS[:2]


def _thm2_strategy(dropped):
    leader = "unique" if "unique_leader" not in dropped else "any"
    if current_profile() == "quick":
        return S.fixed_dicts(**QUICK_INPUT, alphas=list(QUICK_ALPHAS), leader=leader)
    return S.fixed_dicts(R=st.integers(3, 4), s2=st.floats(0.3, 0.7), seed=S.seeds(), alphas=list(ALPHAS),
                         leader=leader)


@claim("rmc21.thm2.rank_one_trajectory",
       title="From small init, tensor factorization follows a rank-one trajectory, closer as the init shrinks",
       source=SRC + ", Theorem 2 (rank-one trajectory); catalog RMC21-Thm2 (the statement is the catalog's "
                    "reconstruction), RMC21-Thm2-Check",
       statement="order 3 (3x3x3), fully observed rank-2 target of norm 1 (components 1 and s2 in [0.3, 0.7]), R = 3 "
                 "or 4 components initialized at alpha^(1/3) times fixed unit directions (balanced, component norm "
                 "alpha), one with strictly maximal initial alignment (>= 1.5 times the second): with both flows "
                 "anchored where the loss first halves, delta(alpha) = max over tau in [-2, 10] of ||W(t_c + tau) - "
                 "Wbar(tbar_c + tau)||, Wbar the R = 1 gradient flow from the leading component's init, strictly "
                 "decreases over alpha = 1e-2, 1e-3, 1e-4, each step by more than its numerical error. Stated test: "
                 "every drawn instance (quick: one fixed instance on the shorter ladder 1e-2, 1e-3; ci: 3 drawn by "
                 "Hypothesis, derandomized per claim id) must satisfy it; no statistical level",
       kind="trajectory", strategy=_thm2_strategy, hypotheses=[H_LEADER], cost=15.0)
def rank_one_trajectory(inputs, dropped):
    """Float64 gradient flow (gf, raw factors, rtol 1e-9, companion error estimate) of the R-component and the
    rank-one factorizations at each alpha (two runs each: to the anchor, then on the window); margins
    ``delta(alpha_k) - delta(alpha_k+1)`` with the two deltas' errors summed (:func:`rank_one_distance`)."""
    problem, dirs, lead, g = thm2_setting(inputs)
    alphas = tuple(float(a) for a in inputs.get("alphas", ALPHAS))
    res = [rank_one_distance(problem, dirs, lead, a) for a in alphas]
    outs = shrink_outcomes(res, alphas)
    deltas = [r[0] for r in res]
    slope = float(np.polyfit(np.log10(alphas), np.log10(deltas), 1)[0]) if min(deltas) > 0 else math.nan
    return combine(outs, engine=f"gf raw rtol={RTOL:g}", deltas=deltas, errors=[r[1] for r in res],
                   fitted_slope=slope, alignments=g, leader=lead, alphas=alphas)


__all__ = ["ALPHAS", "HORIZON", "LEAD_RATIO", "QUICK_ALPHAS", "WINDOW", "rank_one_distance", "shrink_outcomes",
           "thm2_setting"]
