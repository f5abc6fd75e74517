"""Claims of Razin & Cohen 2020, "Implicit Regularization in Deep Learning May Not Be Explainable by Norms".

The 2x2 completion problem ``[[*, 1], [1, 0]]`` (loss ``1/2 sum of squares``), its perturbation
``[[*, z], [z', eps]]``, depth-L factorizations, gradient flow. Constants are the explicit ones of the catalog
(claims-catalog.md, section 1 and 5), not O(.) forms. Every trajectory check is point-wise along the recorded
trajectory, with each point's margin compared with the engine's error propagated to first order through the bound.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from hypothesis import strategies as st
from scipy.optimize import minimize_scalar

from models import inits
from models.engines import get_engine
from models.errors import EngineFailure
from models.factorizations import DeepMatrix
from models.problems import rc20

from . import det_half as DH
from . import measures as M
from . import norm_minimizers as NM
from . import strategies as S
from ._common import combine, escalate, point_outcome, rc20_setting
from .api import claim
from .chart_check import chart_checked
from .chart_check_mp import chart_checked_mp
from .rc20_det_raw import exact_setting
from .flow_check import validated
from .rc20_theorem import RESTS_ON, theorem_level

SRC = "Razin & Cohen 2020 (NeurIPS), arXiv 2005.06398"
EPS = float(np.finfo(float).eps)

H_BALANCED = ("balanced", "balanced initialization: W_{j+1}(0)^T W_{j+1}(0) = W_j(0) W_j(0)^T for all j")
H_DET_POS = ("det_positive", "det(W_{L:1}(0)) > 0")
H_GF = ("gradient_flow", "the dynamics is gradient flow dW_j/dt = -d phi/d W_j")


def _s(loss: float) -> float:
    return math.sqrt(2.0 * max(loss, 0.0))


def _bound_unobserved(s: float) -> float:
    return (1.0 - s) ** 2 / s


def w11_lower_bound(loss: float) -> float:
    """The bound det > 0 forces on ``|w11|`` at ``loss`` on RC20's ``[[*, 1], [1, 0]]``: ``(1 - s)^2 / s`` with
    ``s = sqrt(2 loss)`` while ``s < 1``, else 0 (no bound); ``inf`` at loss 0. The report's figures draw it."""
    s = _s(loss)
    if s <= 0:
        return math.inf
    return _bound_unobserved(s) if s < 1.0 else 0.0


def s_of_loss(loss: float) -> float:
    """RC20's ``s = sqrt(2 loss)`` (0 at loss <= 0): the size of the residual on the observed entries."""
    return _s(loss)


def w11_s_lower_bound(loss: float) -> float:
    """The bound det > 0 forces on ``|w11| s`` (:func:`w11_lower_bound` times ``s``): ``(1 - s)^2`` while
    ``s < 1``, else 0 (no bound). The report's figures draw it on a linear axis, where every depth approaches 1."""
    s = _s(loss)
    return (1.0 - s) ** 2 if s < 1.0 else 0.0


def _dbound_dloss(s: float) -> float:
    """|d/d loss of (1-s)^2/s| with s = sqrt(2 loss): (1 - s^2)/s^3."""
    return (1.0 - s * s) / s ** 3


def _trajectory_setting(dropped, *, depths=(2, 6), until=(-8.0, -4.0), with_det=True):
    balanced = "balanced" not in dropped
    return S.fixed_dicts(
        depth=S.depths(*depths),
        init="balanced" if balanced else "gaussian",
        scale=S.log_scale(-3.0, 0.0) if balanced else S.log_scale(-2.0, 0.0),
        seed=S.seeds(),
        det=S.det_signs("det_positive" not in dropped) if with_det else "positive",
        until_loss=S.log_scale(*until) if balanced else S.log_scale(-4.0, -2.0),
    )


def _sign0(inputs) -> int:
    return 1 if inputs.get("det", "positive") == "positive" else -1


def _thm(evaluate, inputs, theorem="thm1", until_loss=None, **spec):
    """``evaluate`` as a theorem-level check (:func:`properties.rc20_theorem.theorem_level`), on a chart
    trajectory after its cross-check against the raw-factor flow (:func:`properties.chart_check.chart_checked`;
    ``spec``: the run's keyword arguments beyond :func:`_run_spec`'s defaults)."""
    problem, model, init = rc20_setting(inputs)
    level = theorem_level(evaluate, theorem, problem, int(inputs["depth"]), _sign0(inputs), until_loss)
    return chart_checked(level, problem, model, init, _run_spec(inputs, **spec))


_THM_HOW = (" Theorem-level: the outcome combines the bound at every point with the exact static part "
            "(rc20.{0}.static), the det sign at every recorded point, and the gradient-flow check of the "
            "trajectory (engine tangent against the gradient-flow field computed independently from the raw "
            "factors' gradient, properties/flow_check.py; a path that is not gradient flow is an error). A chart "
            "trajectory (gf) is also compared with a raw-factor re-integration (gf path=raw, rtol 1e-8) at every loss level "
            "down to 1e-3 that the raw run resolves, within 1.5 s (properties/chart_check.py): a difference beyond "
            "both error estimates is an error, a smaller one enters the point's error.")


def _run_spec(inputs, **extra) -> dict:
    spec = dict(until_loss=inputs.get("until_loss"), per_decade=4, wall_budget=60.0)
    spec.update(extra)
    return spec


def _run_setting(inputs, engine, **extra):
    problem, model, init = rc20_setting(inputs)
    return engine.run(problem, model, init, **_run_spec(inputs, **extra))


# ----------------------------------------------------------------------------------------------------------------
# Exact facts about the completions W_x = [[x, 1], [1, 0]]
# ----------------------------------------------------------------------------------------------------------------
def _schatten_strategy(dropped):
    return S.fixed_dicts(
        p=st.one_of(st.just("inf"), S.exponent(-4.0, 6.0).map(lambda e: float(2.0 ** e))),
        x=S.signed_log(-2.0, 3.0),
        eps=0.0 if "eps_zero" not in dropped else S.signed_log(-2.0, 0.0),
    )


@claim("rc20.prop.schatten_minimizer",
       title="Schatten-p (quasi-)norms are minimized over the completions exactly at x = 0, with value 2^(1/p)",
       source=SRC + ", Proposition (Schatten-p); catalog RC20-Prop-Schatten",
       statement="for p in (0, inf]: ||[[x,1],[1,0]]||_{S_p} > ||[[0,1],[1,0]]||_{S_p} = 2^(1/p) for all x != 0 "
                 "(2^(1/inf) = 1)",
       kind="exact", strategy=_schatten_strategy,
       hypotheses=[("eps_zero", "the observed entry opposite the unobserved one is 0: completions [[x,1],[1,0]]")],
       cost=0.01)
def schatten_minimizer(inputs, dropped):
    """Evaluate the Schatten-p (quasi-)norm (float64 SVD) at the drawn x and at 0; margin: the relative excess
    ``(f(x) - f(0))/f(0)`` and the relative agreement of f(0) with 2^(1/p) (tolerance 1e-12), error from the
    singular-value perturbation bound of the SVD."""
    f = M.Schatten(M.p_from(inputs["p"]))
    eps_ = float(inputs["eps"])
    Wx = np.array([[inputs["x"], 1.0], [1.0, eps_]])
    W0 = np.array([[0.0, 1.0], [1.0, eps_]])
    fx, f0 = f(Wx), f(W0)
    ex = f.error(Wx, 4 * EPS * float(np.max(np.abs(Wx)))) + f.error(W0, 4 * EPS)
    excess = point_outcome((fx - f0) / f0, ex / f0, 1.0, part="f(x) > f(0)", f_x=fx, f_0=f0)
    want = 1.0 if f.p == M.INF else 2.0 ** (1.0 / f.p)
    value = point_outcome(1e-12 - abs(f0 - want) / want, 0.0, 1e-12, part="f(0) = 2^(1/p)", f_0=f0, want=want)
    return combine([excess, value], engine="numpy float64", measure=repr(f))


def _norms_strategy(dropped):
    """The suite's norms and quasi-norms, and (issue 11) the two families of properties/norm_minimizers.py whose
    largest minimizer approaches the bound (ratio 1 - eta/2, eta >= 1e-2), quasi-norms among them with a nonzero
    minimizer beyond 2||J||/||E11|| (so K is needed)."""
    drawn = S.measures(quasi=True, non_norms="is_quasi_norm" in dropped)
    return S.fixed_dicts(measure=st.one_of(NM.tight_families(), drawn))


@claim("rc20.prop.norm_minimizers_bounded",
       title="Every norm or quasi-norm has minimizers over the completions with |x*| <= 2K||J||/||E11||",
       source=SRC + ", Proposition 1; catalog RC20-Prop-AnyNorm",
       statement="for every norm or quasi-norm with ||A+B|| <= K(||A|| + ||B||): every minimizer x* of "
                 "||x E11 + J|| over x (J = [[0,1],[1,0]]) satisfies |x*| <= 2 K ||J|| / ||E11||",
       kind="exact", strategy=_norms_strategy,
       hypotheses=[("is_quasi_norm", "the measure is a norm or a quasi-norm (positive definite, absolutely "
                                     "homogeneous, quasi-triangle inequality with constant K)")],
       cost=0.3)
def norm_minimizers_bounded(inputs, dropped):
    """Minimize x -> ||x E11 + J|| on a grid over [-1e8, 1e8] (dense on [-3B, 3B]), the lowest grid-local minima refined
    by golden-section search (exact at kinks and cusps), the largest near-minimizer (within 1e-9 relative of the minimum) pushed to the edge
    of its sublevel set by bisection (properties.norm_minimizers.largest_minimizer); margin ``(B - |x*|)/B``, error
    the dependence of |x*| on the tolerance (1e-9 versus 1e-12) plus float64 rounding. The draws include norms and
    quasi-norms whose largest minimizer is within a factor 1 - eta/2 of B (eta >= 1e-2), so a bound cut in half or
    one without K is refuted (tests/unit/test_norm_minimizers.py)."""
    return NM.minimizer_outcome(M.from_spec(inputs["measure"]))


def _rank_subopt_strategy(dropped):
    return S.fixed_dicts(x1=S.signed_log(-3.0, 4.5), gap=S.log_scale(-2.0, 1.0), sign2=st.sampled_from([1.0, -1.0]))


@claim("rc20.prop.rank_subopt_monotone",
       title="Rank-suboptimality over the completions is 1 at x = 0 and strictly decreasing in |x|",
       source=SRC + ", slides; catalog RC20-Prop-RankSubopt",
       statement="rs(x) := max{dist(W_x, rank 1), erank(W_x) - 1}: rs(0) = 1, rs(x1) > rs(x2) whenever "
                 "|x1| < |x2|, and rs(1e6) < 1e-5",
       kind="exact", strategy=_rank_subopt_strategy, cost=0.01)
def rank_subopt_monotone(inputs, dropped):
    """rs at |x2| = |x1| (1 + gap) versus |x1| (float64 SVD, error bounded by 2 eps sigma_1 in sigma_2 through
    the slope of rs), plus rs(0) = 1 (to 1e-12) and rs(1e6) < 1e-5."""
    x1 = float(inputs["x1"])
    x2 = inputs["sign2"] * abs(x1) * (1.0 + inputs["gap"])

    def rs(x):
        return M.rank_subopt(np.array([[x, 1.0], [1.0, 0.0]]))

    def err(x):  # |d rs / d sigma_2| * 2 eps sigma_1, with |d rs/d sigma_2| <= max(1, (1 + ln(sigma1/sigma2))/sigma1)
        s1 = (abs(x) + math.sqrt(x * x + 4)) / 2
        s2 = 1.0 / s1
        return 2 * EPS * s1 * max(1.0, (1.0 + math.log(s1 / s2)) / s1) + 4 * EPS

    r1, r2 = rs(x1), rs(x2)
    dec = point_outcome((r1 - r2) / r1, (err(x1) + err(x2)) / r1, 1.0, part="rs(x1) > rs(x2)", x2=x2, rs1=r1, rs2=r2)
    r0 = rs(0.0)
    at0 = point_outcome(1e-12 - abs(r0 - 1.0), 4 * EPS, 1e-12, part="rs(0) = 1", rs0=r0)
    rbig = rs(1e6)
    big = point_outcome((1e-5 - rbig) / 1e-5, err(1e6) / 1e-5, 1.0, part="rs(1e6) < 1e-5", rs_1e6=rbig)
    return combine([dec, at0, big], engine="numpy float64")


# ----------------------------------------------------------------------------------------------------------------
# The determinant keeps its sign
# ----------------------------------------------------------------------------------------------------------------
_DET_UNTIL = {2: 5e-2, 3: 1e-4}


def _det_sign_strategy(dropped):
    balanced = "balanced" not in dropped
    return S.fixed_dicts(depth=S.depths(2, 8), init="balanced" if balanced else "gaussian",
                         scale=S.log_scale(-2.0, 0.0), seed=S.seeds(), det=st.sampled_from(["positive", "negative"]))


def _det_margins(points, sign0, engine_label):
    outs = []
    for k, p in enumerate(points):
        if p.det_sign is None:
            raise EngineFailure(f"det sign unresolvable at recorded point {k} (t = {p.t})")
        sv = np.linalg.svd(p.product, compute_uv=False)
        ratio = float(sv[1] / sv[0])
        err = (2.0 * p.product_err + 4 * EPS * sv[0]) / sv[0]
        outs.append(point_outcome(sign0 * p.det_sign * ratio, err, 1.0, point=k, t=p.t, loss=p.loss,
                                  det_sign=p.det_sign, sigma_ratio=ratio))
    return combine(outs, engine=engine_label, initial_det_sign=sign0)


@claim("rc20.lemma.det_sign",
       title="The determinant of the end-to-end matrix keeps its sign along gradient flow",
       source=SRC + ", Lemma (det sign); catalog RC20-Lem-DetSign",
       statement="balanced init, depth L >= 2, det W(0) != 0: sign det W_{L:1}(t) = sign det W_{L:1}(0) for all t",
       kind="trajectory", strategy=_det_sign_strategy, hypotheses=[H_BALANCED], cost=2.0)
def det_sign(inputs, dropped):
    """Integrate the raw factors (not the chart, which keeps the det sign by construction) with the float64 engine
    until the loss reaches 5e-2 (L = 2), 1e-4 (L = 3) or 1e-6 (L >= 4), where float64 still resolves the det
    (catalog RC20-Pitfall-Depth2); at every recorded point (8 per decade of loss) the det sign is the product of
    the factors' det signs. Margin: sign0 * sign(t) * sigma_2/sigma_1, error (2 product_err + 4 eps sigma_1)/sigma_1.
    The trajectory is first checked to be gradient flow (engine tangent against the field computed from the
    recorded raw factors, properties/flow_check.py); a path that is not is an error."""
    until = _DET_UNTIL.get(int(inputs["depth"]), 1e-6)
    sign0 = 1 if inputs["det"] == "positive" else -1

    def run(engine):
        return _run_setting(inputs, engine, until_loss=until, per_decade=8)

    check = validated(lambda tr: _det_margins(tr.points, sign0, tr.engine), rc20(), int(inputs["depth"]))
    return escalate(run, check,
                    ladder=(("gf", {"rtol": 1e-10, "path": "raw"}), ("gf", {"rtol": 1e-12, "path": "raw"})))


def _det_sign_gd_strategy(dropped):
    small = "small_step" not in dropped
    return S.fixed_dicts(
        depth=S.depths(3, 6) if "depth_at_least_3" not in dropped else S.depths(2, 6),
        init="balanced" if "balanced" not in dropped else "gaussian",
        scale=S.log_scale(-2.0, 0.0), seed=S.seeds(), det=st.sampled_from(["positive", "negative"]),
        lr=S.log_scale(-3.0, -1.5) if small else S.log_scale(-3.0, 0.0),
        steps=2000,
    )


@claim("rc20.lemma.det_sign_gd",
       title="Gradient descent with a small step from a balanced init keeps the det sign (depth >= 3; the suite's "
             "own conjecture)",
       source="the suite's own conjecture: the thresholds (step <= 10^-1.5, 2000 steps, depth >= 3) come from no "
              "paper; motivated by the RC20 blog's wording of the det lemma for GD ('if learning rate is sufficiently "
              "small ... the determinant doesn't change sign'); catalog RC20-Lem-DetSign",
       statement="balanced init, depth L >= 3, step eta <= 10^-1.5, 2000 steps: sign det W_{L:1}(k) = sign det "
                 "W_{L:1}(0) for every step k",
       kind="trajectory", strategy=_det_sign_gd_strategy,
       hypotheses=[H_BALANCED, ("small_step", "the step size is small: eta <= 10^-1.5 (with at most 2000 steps)"),
                   ("depth_at_least_3", "depth L >= 3 (for L = 2 sigma_2 decays geometrically and any fixed step "
                                        "eventually flips a factor)")],
       cost=1.5)
def det_sign_gd(inputs, dropped):
    """Batched float64 GD (one trajectory) recording every step; the det sign is the product of the factors' det
    signs. Margin: sign0 * sign(k) * sigma_2/sigma_1 at every recorded step, error 4 eps. A run that overflows is
    evidence only through the steps before it (a flip seen there is a violation; otherwise an engine failure)."""
    problem, model, init = rc20_setting(inputs)
    sign0 = 1 if inputs["det"] == "positive" else -1
    gd = get_engine("gd", lr=float(inputs["lr"]))
    res = gd.run(problem, model, [init], steps=int(inputs["steps"]), record_every=1, wall_budget=math.inf)
    dets = np.asarray(res.det_sign, dtype=float)[:, 0]
    prods = np.asarray(res.product, dtype=float)[:, 0]
    losses = np.asarray(res.loss, dtype=float)[:, 0]
    recorded = np.asarray(res.recorded, dtype=bool)[:, 0]
    outs = []
    for k in range(len(dets)):
        W = prods[k]
        if not recorded[k] or not (np.all(np.isfinite(W)) and np.isfinite(losses[k])) or dets[k] == 0:
            break
        sv = np.linalg.svd(W, compute_uv=False)
        outs.append(point_outcome(sign0 * dets[k] * sv[1] / sv[0], 4 * EPS, 1.0, step=k, loss=float(losses[k]),
                                  det_sign=int(dets[k])))
    out = combine(outs, engine=f"gd lr={inputs['lr']:g}", steps_checked=len(outs))
    if len(outs) < len(dets) and out.status != "violated":
        raise EngineFailure(f"GD diverged (non-finite or unresolvable det) after {len(outs)} of {len(dets)} "
                            f"recorded steps without a det flip")
    return out


# ----------------------------------------------------------------------------------------------------------------
# Theorem 1: norms grow like 1/sqrt(loss), rank-suboptimality shrinks like sqrt(loss)
# ----------------------------------------------------------------------------------------------------------------
THM1_HYPS = [H_BALANCED, H_DET_POS]


def _thm1_points(traj):
    """(point, s) for recorded points with s = sqrt(2 loss) < 1, where the bounds apply."""
    return [(k, p, _s(p.loss)) for k, p in enumerate(traj.points) if _s(p.loss) < 1.0]


def _unobserved_eval(traj):
    outs = []
    for k, p, s in _thm1_points(traj):
        b = _bound_unobserved(s)
        w11 = abs(float(p.product[0, 0]))
        err = p.product_err + _dbound_dloss(s) * p.loss_err
        outs.append(point_outcome(w11 - b, err, b, point=k, t=p.t, loss=p.loss, w11=w11, bound=b))
    return combine(outs)


@claim("rc20.thm1.unobserved_entry",
       title="The unobserved entry grows at least like (1-s)^2/s, s = sqrt(2 loss)",
       source=SRC + ", Theorem 1 (explicit constants derived in the catalog, RC20-Thm1 item 1)",
       statement="gradient flow, balanced init, depth L >= 2, det W(0) > 0: |w11(t)| >= (1 - s)^2 / s wherever "
                 "s = sqrt(2 loss(t)) < 1",
       kind="trajectory", strategy=lambda d: _trajectory_setting(d), hypotheses=THM1_HYPS, cost=1.5)
def thm1_unobserved_entry(inputs, dropped):
    """Float64 gradient flow to the drawn loss (chart for balanced inits), escalating to a tighter tolerance and then
    mpmath; at every recorded point with s < 1 the margin is |w11| - (1-s)^2/s, error
    product_err + (1-s^2)/s^3 * loss_err."""
    return escalate(lambda eng: _run_setting(inputs, eng),
                    _thm(_unobserved_eval, inputs, until_loss=inputs["until_loss"]))


def _norms_eval(measure):
    c = measure.c

    def evaluate(traj):
        outs = []
        for k, p, s in _thm1_points(traj):
            b = c * _bound_unobserved(s)
            v = measure(p.product)
            err = measure.error(p.product, p.product_err) + c * _dbound_dloss(s) * p.loss_err
            outs.append(point_outcome(v - b, err, max(b, 1e-300), point=k, t=p.t, loss=p.loss, norm=v, bound=b))
        return combine(outs, measure=repr(measure), c=c, c_kind=measure.c_kind)

    return evaluate


@claim("rc20.thm1.norms",
       title="Every norm and quasi-norm grows at least like c (1-s)^2/s",
       source=SRC + ", Theorem 1 (norm part; catalog RC20-Thm1 item 2)",
       statement="under rc20.thm1.unobserved_entry's hypotheses, for every norm or quasi-norm: ||W(t)|| >= c (1-s)^2/s "
                 "with c = inf{||X|| : X_11 = 1} (closed form or certified lower bound)",
       kind="trajectory",
       strategy=lambda d: st.tuples(_trajectory_setting(d), S.measures(quasi=True)).map(
           lambda t: {**t[0], "measure": t[1]}),
       hypotheses=THM1_HYPS, cost=1.5)
def thm1_norms(inputs, dropped):
    """As rc20.thm1.unobserved_entry, with margin ||W|| - c (1-s)^2/s; the norm's error is the measure's own
    perturbation bound at the engine's entry error."""
    measure = M.from_spec(inputs["measure"])
    return escalate(lambda eng: _run_setting(inputs, eng),
                    _thm(_norms_eval(measure), inputs, until_loss=inputs["until_loss"]))


def erank_bound_ratio(rho: float) -> float:
    """``(erank - 1) / (2 rho ln(e/rho))`` for a 2x2 matrix with ``sigma_2/sigma_1 = rho`` in (0, 1] (limit 1/2
    at rho -> 0; exactly 1/2 at rho = 1). It rises on (0, erank_ratio_peak()] and falls on [erank_ratio_peak(), 1]
    (tested), with maximum ~0.542: RC20's bound holds with a relative slack of ~46% at every rho."""
    rho = float(rho)
    if rho <= 0:
        return 0.5
    return M.erank_excess_from_ratio(rho) / (2.0 * rho * (1.0 - math.log(rho)))


@functools.lru_cache(maxsize=None)
def erank_ratio_peak() -> float:
    """Where :func:`erank_bound_ratio` peaks (~0.198); computed once, on first use."""
    return float(minimize_scalar(lambda x: -erank_bound_ratio(x), bounds=(1e-3, 1.0), method="bounded",
                                 options={"xatol": 1e-12}).x)


def erank_bound_ratio_range(lo: float, hi: float) -> tuple[float, float]:
    """(min, max) of :func:`erank_bound_ratio` over ``[lo, hi]`` (a subset of [0, 1]), from its unimodality."""
    ends = (erank_bound_ratio(lo), erank_bound_ratio(hi))
    peak = erank_ratio_peak()
    top = erank_bound_ratio(peak) if lo <= peak <= hi else max(ends)
    return min(ends), top


def _rank_eval(traj):
    outs = []
    for k, p, s in _thm1_points(traj):
        sv = np.linalg.svd(p.product, compute_uv=False)
        s1, s2 = float(sv[0]), float(sv[1])
        e2 = 2.0 * p.product_err + 2 * EPS * s1
        outs.append(point_outcome(s - s2, e2 + p.loss_err / s, s, point=k, part="sigma_2 <= s", loss=p.loss,
                                  sigma_2=s2, s=s))
        # erank - 1 <= 2 rho ln(e/rho) as a ratio: margin 1 - r(rho), error the spread of r over every rho the
        # numerics allow (rho is known only to +- drho; far down the flow that interval reaches 0)
        rho = min(s2 / s1, 1.0)
        drho = e2 / s1 + 4 * EPS * rho
        r = erank_bound_ratio(rho)
        r_lo, r_hi = erank_bound_ratio_range(max(rho - drho, 0.0), min(rho + drho, 1.0))
        outs.append(point_outcome(1.0 - r, max(r_hi - r, r - r_lo) + 4 * EPS, 1.0, point=k,
                                  part="(erank - 1) / (2 rho ln(e/rho)) <= 1", loss=p.loss, rho=rho, ratio=r,
                                  erank=M.erank_from_ratio(rho)))
    return combine(outs)


@claim("rc20.thm1.rank",
       title="The distance to rank 1 is at most s and erank - 1 <= 2 rho ln(e/rho)",
       source=SRC + ", Theorem 1 (rank part; catalog RC20-Thm1 items 3-4)",
       statement="under rc20.thm1.unobserved_entry's hypotheses, wherever s = sqrt(2 loss) < 1: sigma_2(W(t)) <= s "
                 "and erank(W(t)) - 1 <= 2 rho ln(e/rho) with rho = sigma_2/sigma_1",
       kind="trajectory", strategy=lambda d: _trajectory_setting(d), hypotheses=THM1_HYPS, cost=1.5)
def thm1_rank(inputs, dropped):
    """Float64 gradient flow as in rc20.thm1.unobserved_entry; two margins per point: s - sigma_2 (error
    2 product_err + 2 eps sigma_1 + loss_err/s) and 1 - (erank - 1)/(2 rho ln(e/rho)) (error: the spread of that
    ratio over the uncertainty interval of rho; see :func:`erank_bound_ratio`)."""
    return escalate(lambda eng: _run_setting(inputs, eng), _thm(_rank_eval, inputs, until_loss=inputs["until_loss"]))


# ----------------------------------------------------------------------------------------------------------------
# Corollary 1: norms diverge as the loss vanishes
# ----------------------------------------------------------------------------------------------------------------
COR_UNTIL = 1e-30  # far below float64's reach: the margin there is ~2 sqrt(2 loss) ~ 3e-15 of the bound
#: gf-mp at 30 digits (tol 1e-20: 18+ correct digits of w11 at loss 1e-30, ~12 s per trajectory with its error
#: estimate), escalating to 40 digits (tol 1e-30, ~25 s).
COR_LADDER: tuple[tuple[str, dict], ...] = (("gf-mp", {"digits": 30}), ("gf-mp", {"digits": 40}))


def _cor_strategy(dropped):
    return S.fixed_dicts(depth=S.depths(2, 8), init="balanced" if "balanced" not in dropped else "gaussian",
                         scale=S.log_scale(-2.0, 0.0), seed=S.seeds(),
                         det=S.det_signs("det_positive" not in dropped), until_loss=COR_UNTIL)


def _hp_point(p):
    """(loss, w11, hp) at a point, as mpmath numbers from the engine's decimal strings when it carried them (gf-mp),
    else from the floats."""
    import mpmath

    hp = getattr(p, "hp", None)
    if hp and "loss" in hp and "product" in hp:
        return mpmath.mpf(hp["loss"]), mpmath.mpf(hp["product"][0][0]), hp
    return mpmath.mpf(p.loss), mpmath.mpf(float(p.product[0, 0])), None


def _cor_eval(traj):
    import mpmath

    outs = []
    with mpmath.workdps(60):
        for k, p in enumerate(traj.points):
            loss, w11, hp = _hp_point(p)
            s = mpmath.sqrt(2 * loss)
            if s >= 1:
                continue
            b = (1 - s) ** 2 / s
            err = mpmath.mpf(p.product_err) + (1 - s * s) / s ** 3 * mpmath.mpf(p.loss_err)
            outs.append(point_outcome(float((abs(w11) - b) / b), float(err / b), 1.0, point=k, loss=float(loss),
                                      w11=mpmath.nstr(w11, 20), bound=mpmath.nstr(b, 20), high_precision=hp is not None))
        final_loss = float(traj.points[-1].loss)
    if final_loss > 1.01 * COR_UNTIL:
        raise EngineFailure(f"the run stopped at loss {final_loss:.3g} (status {traj.status.value}), short of "
                            f"{COR_UNTIL:g}")
    return combine(outs, final_loss=final_loss)


@claim("rc20.cor.norms_diverge",
       title="As the loss vanishes |w11| diverges: it exceeds (1-s)^2/s at every recorded point down to loss 1e-30",
       source=SRC + ", Corollary 1; catalog RC20-Cor1",
       statement="under Theorem 1's hypotheses, along high-precision gradient flow (gf-mp) down to loss 1e-30 "
                 "(every depth 2..8): |w11(t)| >= (1-s)^2/s at every recorded point (one per decade of loss), "
                 "so |w11| > 7.07e14 at the end and every norm grows like 1/sqrt(loss)",
       kind="trajectory", strategy=_cor_strategy, hypotheses=THM1_HYPS, cost=15.0)
def cor_norms_diverge(inputs, dropped):
    """High-precision gradient flow (gf-mp, scaled chart) to loss 1e-30 with one record per decade, from the drawn
    balanced init built balanced exactly in float64 (properties/balanced_exact.py), at 30 digits, escalating to
    40 (``COR_LADDER``); the chart trajectory is first cross-checked at every loss level down to
    1e-2 that gf-mp's raw-factor re-integration resolves within 6 s (30 digits, tol 1e-12,
    properties/chart_check_mp.py: a
    difference beyond both error estimates is an error, a smaller one enters the point's error); the bound is
    evaluated in 60-digit mpmath on the engine's decimal strings,
    the margin normalized by the bound. Near loss 1e-30 the relative margin is ~2s ~ 3e-15, below float64's
    resolution: this is the claim that needs gf-mp."""
    # balanced exactly in float64 (Pythagorean rotations): the raw re-integration then follows the chart's flow
    # to its own precision, where float64-rotation inits drift ~1e-18 apart by t = 0.2 (properties/balanced_exact)
    exact = {**inputs, "init": "balanced_exact"} if inputs.get("init", "balanced") == "balanced" else inputs
    problem, model, init = exact_setting(exact)
    spec = _run_spec(inputs, until_loss=inputs["until_loss"], per_decade=1, wall_budget=60.0)
    return escalate(lambda eng: eng.run(problem, model, init, **spec),
                    chart_checked_mp(_thm(_cor_eval, inputs), problem, model, init, spec), COR_LADDER)


# ----------------------------------------------------------------------------------------------------------------
# Theorem 2: perturbed observations
# ----------------------------------------------------------------------------------------------------------------
def _perturbed_strategy(dropped):
    return S.fixed_dicts(
        depth=S.depths(2, 4), init="balanced" if "balanced" not in dropped else "gaussian",
        scale=S.log_scale(-2.0, 0.0), seed=S.seeds(),
        z=S.signed_log(-0.5, 0.5), z_prime=S.signed_log(-0.5, 0.5),
        eps=st.one_of(st.just(0.0), S.signed_log(-3.0, -0.5)),
        det_rule="matches_zz" if "det_matches" not in dropped else st.sampled_from(["opposite", "matches_zz"]),
        until_loss=S.log_scale(-8.0, -4.0),
    )


def _perturbed_inputs(inputs):
    sgn = 1.0 if inputs["z"] * inputs["z_prime"] > 0 else -1.0
    if inputs["det_rule"] == "opposite":
        sgn = -sgn
    return {**inputs, "det": "positive" if sgn > 0 else "negative"}


def _perturbed_eval(inputs):
    z, zp, e = abs(inputs["z"]), abs(inputs["z_prime"]), abs(inputs["eps"])

    def evaluate(traj):
        outs = []
        for k, p in enumerate(traj.points):
            s = _s(p.loss)
            if s >= min(z, zp):
                continue
            b = (z - s) * (zp - s) / (e + s)
            db = ((z - s) + (zp - s)) / (e + s) + b / (e + s)   # |dB/ds|
            w11 = abs(float(p.product[0, 0]))
            outs.append(point_outcome(w11 - b, p.product_err + db / max(s, 1e-300) * p.loss_err, max(b, 1e-300),
                                      point=k, part="|w11| bound", loss=p.loss, w11=w11, bound=b))
            sv = np.linalg.svd(p.product, compute_uv=False)
            e2 = 2.0 * p.product_err + 2 * EPS * float(sv[0]) + p.loss_err / max(s, 1e-300)
            outs.append(point_outcome(e + s - float(sv[1]), e2, e + s, point=k, part="sigma_2 <= |eps| + s",
                                      loss=p.loss, sigma_2=float(sv[1])))
        return combine(outs)

    return evaluate


@claim("rc20.thm2.perturbed",
       title="Perturbed observations: |w11| >= (|z|-s)(|z'|-s)/(|eps|+s) and sigma_2 <= |eps| + s",
       source=SRC + ", Theorem 2 (robustness); explicit constants derived in the catalog, RC20-Thm-Perturbed",
       statement="problem [[*, z], [z', eps]], z z' != 0, gradient flow, balanced init, sign det W(0) = sign(z z'): "
                 "wherever s = sqrt(2 loss) < min(|z|, |z'|): |w11| >= (|z| - s)(|z'| - s)/(|eps| + s) and "
                 "sigma_2(W) <= |eps| + s",
       kind="trajectory", strategy=_perturbed_strategy,
       hypotheses=[H_BALANCED, ("det_matches", "sign det W(0) = sign(z z')")], cost=2.0)
def thm2_perturbed(inputs, dropped):
    """Float64 gradient flow until the drawn loss or t = 1e9 (the loss need not vanish when eps != 0), escalating;
    the two margins at every recorded point where s < min(|z|, |z'|)."""
    full = _perturbed_inputs(inputs)
    return escalate(lambda eng: _run_setting(full, eng, t_max=1e9, wall_budget=30.0),
                    _thm(_perturbed_eval(full), full, theorem="thm2", t_max=1e9))


# ----------------------------------------------------------------------------------------------------------------
# P(det W(0) > 0) = 1/2
# ----------------------------------------------------------------------------------------------------------------
def _det_half_strategy(dropped):
    laws = ["gaussian", "balanced"] if "symmetric_law" not in dropped else ["shifted", "gaussian", "balanced"]
    return S.fixed_dicts(law=st.sampled_from(laws), depth=S.depths(1, 6), scale=S.log_scale(-8.0, 2.0),
                         seed=st.integers(0, 10**6))


@claim("rc20.prop.det_half",
       title="P(det W(0) > 0) = 1/2 under per-layer Gaussian and balanced-Gaussian inits, at any scale",
       source=SRC + ", slides ('holds with prob 0.5 under standard inits'); catalog RC20-Claim-Prob",
       statement="for an init law invariant under W_L -> diag(-1,1) W_L with P(det = 0) = 0: P(det W_{L:1}(0) > 0) "
                 "= 1/2, independently of the scale. Test per setting (properties.stats.ProportionEquals): n = 2^18 "
                 "draws; violated when the exact two-sided binomial test rejects p = 1/2 at 1e-7; holds when the "
                 "equivalence test (TOST) rejects |p - 1/2| >= 0.01 at 1e-6; P(violated) against p = 0.52: "
                 "1 - 1e-50 or more; under p = 1/2 holds with probability >= 1 - 1e-6",
       kind="statistical", strategy=_det_half_strategy,
       hypotheses=[("symmetric_law", "the init law is invariant under W_L -> diag(-1, 1) W_L (Gaussian layers or "
                                     "the balanced construction from a Gaussian product)")],
       cost=0.4)
def det_half(inputs, dropped):
    """n = 2^18 draws of the init law, vectorized (properties/det_half.py: the suite's laws, one generator per
    setting seed), det sign as the product of the factors' det signs (an unresolvable one is an engine failure).
    Decision (properties.det_half.TEST, a properties.stats.ProportionEquals): violated when the exact binomial
    test rejects p = 1/2 at 1e-7, holds when two one-sided exact tests reject |p - 1/2| >= 0.01 at 1e-6, else
    inconclusive; margin and error in decades of evidence. Deterministic."""
    signs = DH.det_signs(inputs["law"], int(inputs["depth"]), float(inputs["scale"]), int(inputs["seed"]))
    unresolved = int(np.sum(signs == 0))
    if unresolved:
        raise EngineFailure(f"{unresolved} of {len(signs)} det signs were not resolvable in float64")
    return DH.TEST.outcome(DH.decide(int(np.sum(signs > 0))), engine="numpy float64",
                           power_vs_052=DH.power(0.52).violated)


# ----------------------------------------------------------------------------------------------------------------
# Convergence for depth 2 from alpha * I
# ----------------------------------------------------------------------------------------------------------------
def _conv_strategy(dropped):
    hi = 0.0 if "alpha_at_most_one" not in dropped else 1.5
    return S.fixed_dicts(alpha=S.log_scale(-2.0, hi))


#: the decades at which the rate is checked: R(t) = 2 loss(t) (6 t)^(2/3) approaches 1 (see convergence_depth2)
CONV_DECADES = (1e4, 1e5, 1e6, 1e7, 1e8)
CONV_SHRINK = 2.0       # |R - 1| must shrink at least this much per decade (the derivation gives 10^(2/3) ~ 4.6)
CONV_FINAL = 1e-3       # and be below this at t = 1e8 (the derivation gives ~1e-5 there)
CONV_RATE = 6.0         # loss ~ (CONV_RATE t)^(-2/3) / 2 (derived below)


@claim("rc20.prop.convergence_depth2",
       title="Depth 2 from W(0) = alpha*I (0 < alpha <= 1): the loss decreases to 0 at the rate (6t)^(-2/3)/2",
       source=SRC + ", Proposition (convergence); catalog RC20-Prop-Conv (rate derived in the claim's description)",
       statement="depth 2, gradient flow, W_1(0) = W_2(0) = sqrt(alpha) I with 0 < alpha <= 1: loss(t) is "
                 "non-increasing and loss(t) = (1 + o(1)) (6t)^(-2/3) / 2 -> 0: R(t) = 2 loss(t) (6t)^(2/3) has "
                 "|R(t) - 1| shrinking at least 2x per decade over t = 1e4..1e8 and below 1e-3 at t = 1e8",
       kind="trajectory", strategy=_conv_strategy,
       hypotheses=[("alpha_at_most_one", "0 < alpha <= 1")], cost=1.5)
def convergence_depth2(inputs, dropped):
    """Float64 gradient flow (raw factors until the singular values separate, then the chart) recorded at 37
    log-spaced times in [0.1, 1e8]; the trajectory is first checked to be gradient flow (flow_check), and
    compared at the recorded times with a raw-factor re-integration as far as that resolves (loss ~2e-2;
    properties/chart_check.py: a difference beyond both error estimates is an error, a smaller one enters the
    point's error).

    The rate (derived; not fitted to a run): W = [[a, b], [b, c]] follows a' = 2b(1-b), b' = (1-b)(a+c) - bc,
    c' = 2b(1-b) - 2c^2 (catalog RC20-Prop-Conv). With u = 1 - b -> 0, the fast variable relaxes to u ~ c/a,
    then c' ~ 2c/a - 2c^2 balances at c ~ 1/a and a' ~ 2u ~ 2/a^2, so a^3 ~ 6t, c ~ (6t)^(-1/3) and
    loss = u^2 + c^2/2 ~ (6t)^(-2/3)/2 (u^2 is of higher order). So R(t) = 2 loss(t) (6t)^(2/3) -> 1, with
    corrections O(t^(-2/3)). The old threshold "loss(1e8) < 1e-6" was this rate's value 7.03e-7 rounded up; a flow
    at a different speed (a wrong coefficient) has R -> a constant != 1. Margins: (l_k - l_{k+1})/l_k between
    consecutive points (monotone; error: the two loss errors); at t = 1e4..1e8 per decade
    (|R_k - 1|/CONV_SHRINK - |R_{k+1} - 1|)/|R_k - 1|, and (CONV_FINAL - |R(1e8) - 1|)/CONV_FINAL; R's error is
    R loss_err/loss. Numerically (alpha = 0.01 .. 30) |R - 1| = 0.11, 0.024, 0.005, 0.001, ... at t = 1e2, 1e3, ...
    whatever alpha: dropping alpha <= 1 (verify ablate) shows it is not needed for this rate."""
    model = DeepMatrix(2, (2, 2))
    times = tuple(float(t) for t in np.logspace(-1, 8, 37))

    spec = dict(t_max=1e8, record_at=times, wall_budget=60.0)

    def run(engine):
        return engine.run(rc20(), model, inits.identity(model, inputs["alpha"]), **spec)

    def evaluate(traj):
        pts = sorted(traj.points, key=lambda p: p.t)
        if pts[-1].t < 1e8 * (1 - 1e-9):
            raise EngineFailure(f"the run stopped at t = {pts[-1].t:.3g} < 1e8 ({traj.status.value})")
        outs = []
        for a, b in zip(pts[:-1], pts[1:]):
            if b.t - a.t <= 1e-9 * max(b.t, 1.0):
                continue  # the same time recorded twice
            outs.append(point_outcome((a.loss - b.loss) / a.loss, (a.loss_err + b.loss_err) / a.loss, 1.0,
                                      part="monotone", t=b.t, loss=b.loss))
        dev = []
        for t in CONV_DECADES:
            hit = [p for p in pts if abs(p.t - t) <= 1e-9 * t]
            if not hit:
                raise EngineFailure(f"no point recorded at t = {t:g}")
            p = hit[0]
            R = 2.0 * p.loss * (CONV_RATE * p.t) ** (2.0 / 3.0)
            dev.append((abs(R - 1.0), R * p.loss_err / p.loss, t, R))
        for (d0, e0, t0, _), (d1, e1, t1, R1) in zip(dev[:-1], dev[1:]):
            outs.append(point_outcome((d0 / CONV_SHRINK - d1) / d0, (e0 / CONV_SHRINK + e1) / d0, 1.0,
                                      part=f"|R - 1| shrinks {CONV_SHRINK:g}x per decade", t=t1, R=R1,
                                      previous_deviation=d0, deviation=d1))
        d, e, t, R = dev[-1]
        outs.append(point_outcome((CONV_FINAL - d) / CONV_FINAL, e / CONV_FINAL, 1.0,
                                  part=f"|R(1e8) - 1| < {CONV_FINAL:g}", R=R, loss=pts[-1].loss))
        return combine(outs)

    return escalate(run, chart_checked(validated(evaluate, rc20(), 2), rc20(), model,
                                       inits.identity(model, inputs["alpha"]), spec))


# ----------------------------------------------------------------------------------------------------------------
# The theorem-level claims: what they rest on (issue 11; properties/rc20_theorem.py)
# ----------------------------------------------------------------------------------------------------------------
def _rest(cid: str, theorem: str) -> None:
    from dataclasses import replace

    from .api import CLAIMS, register

    c = CLAIMS[cid]
    register(replace(c, how=c.how + _THM_HOW.format(theorem), rests_on=RESTS_ON[theorem]), replace_existing=True)


for _cid in ("rc20.thm1.unobserved_entry", "rc20.thm1.norms", "rc20.thm1.rank", "rc20.cor.norms_diverge"):
    _rest(_cid, "thm1")
_rest("rc20.thm2.perturbed", "thm2")
