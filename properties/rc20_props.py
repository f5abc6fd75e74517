"""Claims of Razin & Cohen 2020 about the problem rather than the flow: exact facts about the completions
``W_x = [[x, 1], [1, 0]]`` (Schatten quasi-norm minimizers, bounded norm minimizers, rank-suboptimality),
``P(det W(0) > 0) = 1/2`` under symmetric inits, and the depth-2 convergence rate from ``alpha I``.

Split from :mod:`properties.rc20` (which keeps the det-sign lemma, Theorems 1 and 2 and the corollary) so that
no module holds more than one room; the claim ids are unchanged.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st

from models import inits
from models.errors import EngineFailure
from models.factorizations import DeepMatrix
from models.problems import rc20

from . import det_half as DH
from . import measures as M
from . import norm_minimizers as NM
from . import strategies as S
from ._common import combine, escalate, point_outcome
from .api import claim
from .chart_check import chart_checked
from .flow_check import validated
from .rc20 import EPS, SRC

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
