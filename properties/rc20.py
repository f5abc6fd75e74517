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

from models.engines import get_engine
from models.errors import EngineFailure
from models.problems import rc20

from . import measures as M
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
    gd = get_engine("gd", lr=float(inputs["lr"]), device="cpu")
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
