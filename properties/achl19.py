"""Claims of Arora, Cohen & Hazan 2018 (ACH18) and Arora, Cohen, Hu & Luo 2019 (ACHL19): conservation of
balancedness, end-to-end dynamics, singular-value and singular-vector dynamics, and the commuting case.

Identity-type claims are checked two ways where the catalog asks for it: exactly with sympy on symbolic 2x2
factors (any loss: the gradient of the loss is a matrix of free symbols), and numerically at random points or
along integrated trajectories, where a discrepancy is accepted below a declared tolerance far above rounding and
integration error and far below any genuine failure (an unbalanced point misses the end-to-end formula by O(1)).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from hypothesis import strategies as st
from scipy.optimize import linprog

from models import inits
from models.engines import get_engine
from models.errors import EngineFailure
from models.factorizations import DeepMatrix, factor_grads, product
from models.problems import sensing

from . import strategies as S
from ._common import combine, escalate, identity_outcome, point_outcome
from .api import claim
from .commuting_alt import alternative

SRC_ACH18 = "Arora, Cohen & Hazan 2018 (ICML)"
SRC_ACHL19 = "Arora, Cohen, Hu & Luo 2019 (NeurIPS), arXiv 1905.13655"
EPS = float(np.finfo(float).eps)

H_BALANCED = ("balanced", "balanced factors: W_{j+1}^T W_{j+1} = W_j W_j^T for all j")
H_GF = ("gradient_flow", "the dynamics is gradient flow (not gradient descent with a finite step)")


# ----------------------------------------------------------------------------------------------------------------
# Random settings
# ----------------------------------------------------------------------------------------------------------------
def _point_strategy(dropped, *, square=False, depth=(2, 5)):
    dims = st.integers(2, 4)
    return S.fixed_dicts(depth=S.depths(*depth), d=dims, d_prime=dims if not square else None,
                         extra_width=st.integers(0, 2), scale=S.log_scale(-1.0, 1.0), seed=S.seeds(),
                         factors="balanced" if "balanced" not in dropped else "gaussian",
                         measurements=st.integers(1, 6))


def _point(inputs):
    """(model, factors, problem, G) at a random point: balanced factors of a random end-to-end matrix (or
    per-layer Gaussian factors), and the gradient of a random sensing loss there."""
    d = int(inputs["d"])
    dp = int(inputs["d_prime"] if inputs.get("d_prime") is not None else d)
    L = int(inputs["depth"])
    width = min(d, dp) + int(inputs.get("extra_width", 0))
    model = DeepMatrix(L, (d, dp), (width,) * (L - 1))
    rng = np.random.default_rng(int(inputs["seed"]))
    scale = float(inputs["scale"])
    if inputs["factors"] == "balanced":
        A = scale * rng.standard_normal((d, dp))
        factors = inits.balanced_from_product(model, A)
    else:
        factors = [scale ** (1.0 / L) * rng.standard_normal(s) for s in model.layer_shapes]
    m = int(inputs.get("measurements", 3))
    problem = sensing(rng.standard_normal((m, d, dp)), rng.standard_normal(m))
    G = problem.grad(product(factors))
    return model, factors, problem, G


def _velocity(factors, G):
    """dW/dt of the end-to-end matrix under gradient flow, by the chain rule on the factors."""
    grads = factor_grads(factors, G)
    L = len(factors)
    out = np.zeros_like(product(factors))
    for j in range(L):
        left = product(factors[j + 1:]) if j + 1 < L else np.eye(factors[-1].shape[0])
        right = product(factors[:j]) if j > 0 else np.eye(factors[0].shape[1])
        out = out - left @ grads[j] @ right
    return out


def _psd_power(P, a: float):
    """P^a for a PSD matrix; eigenvalues below n * eps * max are exact zeros (0^0 = 1)."""
    lam, Q = np.linalg.eigh((P + P.T) / 2)
    floor = P.shape[0] * 64 * EPS * max(float(np.max(np.abs(lam))), 1e-300)
    lam = np.where(lam > floor, lam, 0.0)
    powered = np.where(lam > 0, np.abs(lam) ** a, 1.0 if a == 0 else 0.0)
    return (Q * powered) @ Q.T


def _e2e_formula(W, G, N):
    WWt, WtW = W @ W.T, W.T @ W
    out = np.zeros_like(W)
    for j in range(1, N + 1):
        out = out - _psd_power(WWt, (j - 1) / N) @ G @ _psd_power(WtW, (N - j) / N)
    return out


# ----------------------------------------------------------------------------------------------------------------
# ACH18: conservation of W_{j+1}^T W_{j+1} - W_j W_j^T
# ----------------------------------------------------------------------------------------------------------------
@lru_cache(maxsize=None)
def _sympy_conservation(L: int) -> bool:
    """Exact: d/dt (W_{j+1}^T W_{j+1} - W_j W_j^T) = 0 for symbolic 2x2 factors and a symbolic gradient G."""
    import sympy as sp

    Ws = [sp.Matrix(2, 2, sp.symbols(f"w{j}_0:4", real=True)) for j in range(1, L + 1)]
    G = sp.Matrix(2, 2, sp.symbols("g0:4", real=True))

    def prod(ms):
        out = sp.eye(2)
        for Mx in ms:  # ms first layer first
            out = Mx * out
        return out

    dWs = []
    for j in range(L):
        left = prod(Ws[j + 1:])   # W_L ... W_{j+2}
        right = prod(Ws[:j])      # W_j ... W_1
        dWs.append(-(left.T * G * right.T))
    for j in range(L - 1):
        A, B, dA, dB = Ws[j + 1], Ws[j], dWs[j + 1], dWs[j]
        deriv = dA.T * A + A.T * dA - dB * B.T - B * dB.T
        if any(sp.expand(e) != 0 for e in deriv):
            return False
    return True


def _conservation_strategy(dropped):
    gf = "gradient_flow" not in dropped
    return S.fixed_dicts(depth=S.depths(2, 4), d=st.integers(1, 3), d_prime=st.integers(1, 3),
                         extra_width=st.integers(0, 2), scale=S.log_scale(-1.0, 0.0), seed=S.seeds(),
                         measurements=st.integers(1, 4), t_max=S.log_scale(0.0, 2.0),
                         dynamics="gf" if gf else "gd", lr=None if gf else S.log_scale(-2.0, -0.5))


def _invariants(factors):
    return [Wn.T @ Wn - Wj @ Wj.T for Wj, Wn in zip(factors[:-1], factors[1:])]


CONSERVATION_TOL = 1e-6


@claim("ach18.conservation",
       title="W_{j+1}^T W_{j+1} - W_j W_j^T is constant along gradient flow, for any init",
       source=SRC_ACH18 + ", conservation lemma; catalog ACH18-Lem-Conservation",
       statement="under gradient flow on phi = l(W_N ... W_1), for every j and any init: "
                 "d/dt [W_{j+1}^T W_{j+1} - W_j W_j^T] = 0",
       kind="exact", strategy=_conservation_strategy, hypotheses=[H_GF], cost=1.0)
def conservation(inputs, dropped):
    """(1) Exactly, with sympy: the time derivative of every invariant expands to 0 for symbolic 2x2 factors and a
    symbolic loss gradient (depths 2 and 3; cached). (2) Numerically: per-layer Gaussian (unbalanced) factors of the
    drawn shapes, a random sensing loss, float64 gradient flow on the raw factors to the drawn time (or the drawn
    number of GD steps when gradient flow is dropped); margin 1e-6 - max_t max_j ||C_j(t) - C_j(0)||_F / max ||W||^2
    (tolerance far above the integration error, error 10 x the engine's relative error estimate)."""
    outs = [point_outcome(1.0 if _sympy_conservation(L) else -1.0, 0.0, 1.0, part=f"sympy, depth {L}")
            for L in (2, 3)]
    L = int(inputs["depth"])
    d, dp = int(inputs["d"]), int(inputs["d_prime"])
    # Hidden widths >= min(d, d'): the float64 engine stops at a singular square product (it tracks the det sign),
    # which a narrower width would force from the start; the law itself holds for any widths.
    model = DeepMatrix(L, (d, dp), (min(d, dp) + int(inputs["extra_width"]),) * (L - 1))
    rng = np.random.default_rng(int(inputs["seed"]))
    m = int(inputs["measurements"])
    problem = sensing(rng.standard_normal((m, d, dp)), rng.standard_normal(m))
    init = inits.gaussian(model, inputs["scale"], seed=int(inputs["seed"]))
    C0 = _invariants(list(init.factors))
    if inputs["dynamics"] == "gf":
        def run(engine):
            return engine.run(problem, model, init, t_max=float(inputs["t_max"]), per_decade=4, wall_budget=30.0)

        def evaluate(traj):
            worst, scale = 0.0, max(float(np.linalg.norm(W)) ** 2 for W in init.factors)
            for p in traj.points:
                if p.factors is None:
                    raise EngineFailure("the engine recorded no factors")
                scale = max(scale, max(float(np.linalg.norm(W)) ** 2 for W in p.factors))
                worst = max(worst, max(float(np.linalg.norm(C - c0)) for C, c0 in zip(_invariants(p.factors), C0)))
            drift = worst / scale
            err = 10.0 * float(traj.error_estimate if math.isfinite(traj.error_estimate) else 1e-8)
            return identity_outcome(drift, CONSERVATION_TOL, err, part="trajectory drift", points=len(traj.points))

        outs.append(escalate(run, evaluate, ladder=(("gf", {"rtol": 1e-10, "path": "raw"}),
                                                    ("gf", {"rtol": 1e-12, "path": "raw"})),
                             accept_precision_loss=True))
    else:
        lr = float(inputs["lr"])
        steps = max(1, int(round(float(inputs["t_max"]) / lr)))
        res = get_engine("gd", lr=lr, device="cpu").run(problem, model, [init], steps=steps, record_every=steps,
                                           wall_budget=math.inf)
        final = [np.asarray(F)[0] for F in res.final_factors]
        if not all(np.all(np.isfinite(F)) for F in final):
            raise EngineFailure("GD diverged")
        scale = max(max(float(np.linalg.norm(W)) ** 2 for W in init.factors),
                    max(float(np.linalg.norm(W)) ** 2 for W in final))
        drift = max(float(np.linalg.norm(C - c0)) for C, c0 in zip(_invariants(final), C0)) / scale
        outs.append(identity_outcome(drift, CONSERVATION_TOL, 1e-12, part="GD drift", steps=steps))
    return combine(outs, engine="sympy + " + ("gf" if inputs["dynamics"] == "gf" else "gd"))


# ----------------------------------------------------------------------------------------------------------------
# ACH18: end-to-end dynamics
# ----------------------------------------------------------------------------------------------------------------
IDENTITY_TOL = 1e-9


@claim("ach18.e2e_dynamics",
       title="Under balanced init the end-to-end matrix follows -sum_j (WW^T)^((j-1)/N) grad (W^TW)^((N-j)/N)",
       source=SRC_ACH18 + ", Theorem 1 (restated in ACHL19 section 3); catalog ACH18-Thm-E2E",
       statement="gradient flow, balanced factors, hidden widths >= min(d, d'): dW/dt = -sum_{j=1}^N "
                 "[W W^T]^((j-1)/N) grad l(W) [W^T W]^((N-j)/N)",
       kind="exact", strategy=lambda d: _point_strategy(d), hypotheses=[H_BALANCED], cost=0.02)
def e2e_dynamics(inputs, dropped):
    """At a random balanced point (random end-to-end matrix, ACGH19 factors, random sensing loss): chain-rule
    velocity sum_j W_{N:j+1} (dW_j/dt) W_{j-1:1} versus the formula (PSD powers by eigh). Margin:
    1e-9 - ||difference||_F / ||velocity||_F; rounding estimate 1e4 eps."""
    model, factors, problem, G = _point(inputs)
    W = product(factors)
    v = _velocity(factors, G)
    f = _e2e_formula(W, G, model.depth)
    diff = float(np.linalg.norm(v - f)) / max(float(np.linalg.norm(v)), 1e-300)
    return identity_outcome(diff, IDENTITY_TOL, 1e4 * EPS, velocity_norm=float(np.linalg.norm(v)))


# ----------------------------------------------------------------------------------------------------------------
# ACHL19: singular values and singular vectors
# ----------------------------------------------------------------------------------------------------------------
@claim("achl19.thm.singular_values",
       title="d sigma_r/dt = -N (sigma_r^2)^(1-1/N) <grad l, u_r v_r^T>",
       source=SRC_ACHL19 + ", Theorem 3 (singular-value dynamics); catalog ACHL19-Thm-SV",
       statement="gradient flow, balanced init, depth N: for every singular value sigma_r of W with singular "
                 "vectors u_r, v_r: d sigma_r/dt = u_r^T (dW/dt) v_r = -N (sigma_r^2)^(1 - 1/N) <grad l(W), u_r v_r^T>",
       kind="exact", strategy=lambda d: _point_strategy(d), hypotheses=[H_BALANCED], cost=0.02)
def singular_values(inputs, dropped):
    """At a random balanced point: u_r^T (dW/dt) v_r (chain-rule velocity; this is d sigma_r/dt for a simple
    singular value) versus the formula, for r = 1..min(d, d'). Margin: 1e-9 - max_r |difference| / max_r |rate|."""
    model, factors, problem, G = _point(inputs)
    W = product(factors)
    v = _velocity(factors, G)
    U, s, Vt = np.linalg.svd(W, full_matrices=False)
    N = model.depth
    lhs = np.array([U[:, r] @ v @ Vt[r] for r in range(len(s))])
    rhs = np.array([-N * (s[r] ** 2) ** (1 - 1 / N) * (U[:, r] @ G @ Vt[r]) for r in range(len(s))])
    scale = max(float(np.max(np.abs(lhs))), 1e-300)
    diff = float(np.max(np.abs(lhs - rhs))) / scale
    return identity_outcome(diff, IDENTITY_TOL, 1e4 * EPS, singular_values=s, rates=lhs)


def _svd_rates(W, Wdot):
    """Exact first-order rates a_{rr'} = u_r^T du_{r'}/dt and b_{rr'} = v_r^T dv_{r'}/dt for a square W with
    distinct singular values, from SVD perturbation theory: with X = U^T Wdot V,
    a_{rr'} = (s_{r'} X_{rr'} + s_r X_{r'r}) / (s_{r'}^2 - s_r^2), b_{rr'} = (s_r X_{rr'} + s_{r'} X_{r'r}) / (...)."""
    U, s, Vt = np.linalg.svd(W)
    X = U.T @ Wdot @ Vt.T
    n = len(s)
    a, b = np.zeros((n, n)), np.zeros((n, n))
    for r in range(n):
        for q in range(n):
            if r != q:
                den = s[q] ** 2 - s[r] ** 2
                a[r, q] = (s[q] * X[r, q] + s[r] * X[q, r]) / den
                b[r, q] = (s[r] * X[r, q] + s[q] * X[q, r]) / den
    return U, s, Vt, a, b


def _svd_rates_fd(W, Wdot, U, Vt, h):
    """Central finite differences of the singular vectors along W + tau Wdot (columns sign-aligned)."""
    def vecs(Wt):
        Ut, _, Vtt = np.linalg.svd(Wt)
        for r in range(Ut.shape[1]):
            if Ut[:, r] @ U[:, r] < 0:
                Ut[:, r] *= -1
                Vtt[r] *= -1
        return Ut, Vtt.T
    Up, Vp = vecs(W + h * Wdot)
    Um, Vm = vecs(W - h * Wdot)
    return U.T @ (Up - Um) / (2 * h), Vt @ (Vp - Vm) / (2 * h)


@claim("achl19.singular_vectors",
       title="Singular-vector dynamics: u_r^T du_{r'}/dt = (s_{r'} G_{rr'} + s_r G_{r'r}) / (q_r - q_{r'})",
       source=SRC_ACHL19 + ", singular-vector dynamics (equivalent form); catalog ACHL19-SVec",
       statement="gradient flow, balanced init, square W with distinct singular values, Ghat = U^T grad l V, "
                 "q_r = (sigma_r^2)^(1/N): for r != r', u_r^T du_{r'}/dt = (sigma_{r'} Ghat_{rr'} + sigma_r "
                 "Ghat_{r'r})/(q_r - q_{r'}) and v_r^T dv_{r'}/dt = (sigma_r Ghat_{rr'} + sigma_{r'} Ghat_{r'r})/"
                 "(q_r - q_{r'})",
       kind="exact", strategy=lambda d: _point_strategy(d, square=True), hypotheses=[H_BALANCED], cost=0.02)
def singular_vectors(inputs, dropped):
    """At a random balanced square point: the claimed rates versus (1) SVD perturbation theory applied to the
    chain-rule velocity (tolerance 1e-9 relative to the largest rate) and (2) central finite differences of
    numpy's SVD along that velocity (tolerance 1e-5; error estimate from the step h ~ 1e-6 ||W||/||Wdot||)."""
    model, factors, problem, G = _point(inputs)
    W = product(factors)
    v = _velocity(factors, G)
    U, s, Vt, a, b = _svd_rates(W, v)
    N = model.depth
    q = s ** (2.0 / N)
    Gh = U.T @ G @ Vt.T
    n = len(s)
    ca, cb = np.zeros((n, n)), np.zeros((n, n))
    for r in range(n):
        for rr in range(n):
            if r != rr:
                ca[r, rr] = (s[rr] * Gh[r, rr] + s[r] * Gh[rr, r]) / (q[r] - q[rr])
                cb[r, rr] = (s[r] * Gh[r, rr] + s[rr] * Gh[rr, r]) / (q[r] - q[rr])
    scale = max(float(np.max(np.abs(a))), float(np.max(np.abs(b))), 1e-300)
    gap = float(np.min(np.abs(np.diff(s)))) / float(s[0])
    exact = identity_outcome(max(float(np.max(np.abs(a - ca))), float(np.max(np.abs(b - cb)))) / scale,
                             IDENTITY_TOL, 1e3 * EPS / max(gap, 1e-12), part="perturbation theory")
    h = 1e-6 * float(np.linalg.norm(W)) / max(float(np.linalg.norm(v)), 1e-300)
    fa, fb = _svd_rates_fd(W, v, U, Vt, h)
    off = ~np.eye(n, dtype=bool)
    fd_diff = max(float(np.max(np.abs((fa - ca)[off]))), float(np.max(np.abs((fb - cb)[off])))) / scale
    fd = identity_outcome(fd_diff, 1e-5, 1e-8 / max(gap, 1e-6) ** 2, part="finite differences", step=h)
    return combine([exact, fd], relative_gap=gap)


# ----------------------------------------------------------------------------------------------------------------
# ACHL19: commuting measurements, depth does not change the limit
# ----------------------------------------------------------------------------------------------------------------
COMMUTING_ALPHAS = (1e-1, 1e-2, 1e-3)
COMMUTING_SHRINK = 0.25
COMMUTING_FLOOR = 1e-6
COMMUTING_UNTIL = 1e-20


def _commuting_strategy(dropped):
    return S.fixed_dicts(depth=S.depths(2, 4), d=st.integers(3, 4), measurements=st.integers(1, 2), seed=S.seeds(),
                         commuting=True if "commuting" not in dropped else st.booleans())


COMMUTING_GAP = 0.2     # depth >= 3: the LP solution and the sum w^(2/N) minimizer differ by >= 20% (relative)


def commuting_problem(inputs):
    """``(problem, w_LP, w_alt)``. For depth >= 3 the instance (two measurements) is redrawn from the same
    generator until the LP solution and the ruled-out alternative (properties/commuting_alt.py) differ by
    ``COMMUTING_GAP`` relative; ``w_alt`` is None at depth 2 (where the two are the same)."""
    d, m = int(inputs["d"]), int(inputs["measurements"])
    N = int(inputs.get("depth", 2))
    separate = N >= 3 and inputs.get("commuting", True)
    if separate:
        m = 2     # with one measurement every vertex has one nonzero: the alternative is the LP solution
    rng = np.random.default_rng(int(inputs["seed"]))
    for _ in range(2000):
        A = rng.standard_normal((m, d))
        wstar = np.zeros(d)
        support = rng.choice(d, m, replace=False)
        wstar[support] = rng.uniform(0.5, 1.5, m)
        y = A @ wstar
        lp = linprog(np.ones(d), A_eq=A, b_eq=y, bounds=[(0, None)] * d, method="highs")
        if lp.status != 0:
            raise EngineFailure(f"the LP failed: {lp.message}")
        w_alt = alternative(A, y, N) if separate else None
        if w_alt is None or np.linalg.norm(w_alt - lp.x) >= COMMUTING_GAP * np.linalg.norm(lp.x):
            break
    else:
        raise EngineFailure("no instance where the LP solution and the sum w^(2/N) minimizer differ in 2000 draws")
    if inputs.get("commuting", True):
        Ms = np.stack([np.diag(a) for a in A])
    else:  # symmetric, not commuting: add a random symmetric off-diagonal part to each measurement
        Ms = np.stack([np.diag(a) + 0.5 * (lambda B: B + B.T)(np.triu(rng.standard_normal((d, d)), 1)) for a in A])
    # Embed d x d as d x (d+1) with a zero last column: the measurements ignore it and the padded identity init
    # keeps it exactly 0, so the flow on the d x d block is unchanged; the float64 engine then does not stop when
    # the (irrelevant) det of a square product stops being resolvable, which the sparse LP limit forces.
    Ms = np.concatenate([Ms, np.zeros((m, d, 1))], axis=2)
    return sensing(Ms, y), lp.x, w_alt


@claim("achl19.thm.commuting",
       title="Commuting measurements, W_j(0) = alpha I: as alpha -> 0 the limit approaches the min-nuclear-norm "
             "(LP) solution for depths 2, 3, 4",
       source=SRC_ACHL19 + ", theorem on commuting measurements ('mathematical evidence against the conjecture'); "
                           "catalog ACHL19-Thm-Commuting",
       statement="diagonal (commuting) A_1..A_m with m < d, y = A w* for some w* >= 0, gradient flow on depth N in "
                 "{2,3,4} from W_j(0) = alpha I: the limit W_inf(alpha) = diag(w(alpha)) approaches argmin{sum_k w_k :"
                 " A w = y, w >= 0} as alpha -> 0. Checked at alpha = 1e-1, 1e-2, 1e-3: the relative distance to the "
                 "LP solution decreases strictly (until it is at the resolution floor) and at alpha = 1e-3 is below "
                 "max(0.25 x its value at alpha = 1e-1, 1e-6) (depth 2 approaches only like 1/log(1/alpha)). For "
                 "depth >= 3 the instances (two measurements) are those where the ruled-out alternative, the "
                 "minimizer of sum w^(2/N) over {A w = y, w >= 0}, differs from the LP solution by >= 20%, and the "
                 "distance at alpha = 1e-3 must be below half that gap",
       kind="trajectory", strategy=_commuting_strategy,
       hypotheses=[("commuting", "the measurement matrices are diagonal (pairwise commuting)")], cost=5.0)
def commuting(inputs, dropped):
    """Random diagonal sensing with a sparse nonnegative solution, LP solution by HiGHS (depth >= 3: redrawn from
    the seed's generator until the sum w^(2/N) minimizer, found by vertex enumeration, differs from it by >= 20%,
    so that the check tells the theorem from the alternative it rules out); float64 gradient flow on
    the raw factors from W_j(0) = alpha I until loss 1e-10 for each alpha (points before a loss of det resolution
    are valid: the det sign plays no role here). Margins: relative decrease between consecutive alphas and
    the distance at 1e-3 against max(0.25 x distance at 1e-1, 1e-6) (consecutive pairs already at the resolution floor are skipped); error
    10 sqrt(2 loss) / sigma_min(A) / ||w_LP|| (distance from the state at the final loss to the limit, first order)."""
    problem, w_lp, w_alt = commuting_problem(inputs)
    N = int(inputs["depth"])
    d = int(inputs["d"])
    model = DeepMatrix(N, (d, d + 1))
    nlp = float(np.linalg.norm(w_lp))
    A = np.array([np.diag(Mi[:, :d]) for Mi in problem.operator.reshape(-1, d, d + 1)])
    smin = max(float(np.linalg.svd(A, compute_uv=False)[-1]), 1e-6)  # residual -> state sensitivity (first order)
    dists, errs = [], []
    for alpha in COMMUTING_ALPHAS:
        init = inits.identity(model, alpha ** N)

        def run(engine, init=init):
            # t_max bounds the solver's log-time interval (an unbounded one lets BDF's first step overflow exp)
            return engine.run(problem, model, init, until_loss=COMMUTING_UNTIL, t_max=1e15, per_decade=1,
                              wall_budget=30.0)

        def evaluate(traj):
            fin = traj.final
            if fin.loss > 1e3 * COMMUTING_UNTIL:
                raise EngineFailure(f"stopped at loss {fin.loss:.3g} ({traj.status.value})")
            Wd = fin.product[:, :d]
            w = np.diag(Wd) if inputs.get("commuting", True) else np.linalg.eigvalsh((Wd + Wd.T) / 2)[::-1]
            dist = float(np.linalg.norm(np.sort(w) - np.sort(w_lp))) / nlp if not inputs.get("commuting", True) \
                else float(np.linalg.norm(w - w_lp)) / nlp
            return point_outcome(1.0, 0.0, 1.0, distance=dist, loss=fin.loss,
                                 distance_error=(10 * math.sqrt(2 * fin.loss) / smin + fin.product_err) / nlp)

        out = escalate(run, evaluate, ladder=(("gf", {"rtol": 1e-10, "path": "raw"}),),
                       accept_precision_loss=True)
        dists.append(out.detail["distance"])
        errs.append(out.detail["distance_error"])
    outs = []
    for k in range(len(dists) - 1):
        if dists[k] <= 10 * (errs[k] + errs[k + 1]) or dists[k] < 1e-9:
            continue  # already at the resolution floor: nothing left to decrease
        outs.append(point_outcome((dists[k] - dists[k + 1]) / dists[k], (errs[k] + errs[k + 1]) / dists[k], 1.0,
                                  part=f"distance decreases from alpha={COMMUTING_ALPHAS[k]:g} to "
                                       f"{COMMUTING_ALPHAS[k + 1]:g}"))
    target = max(COMMUTING_SHRINK * dists[0], COMMUTING_FLOOR)
    outs.append(point_outcome((target - dists[-1]) / target, errs[-1] / target, 1.0,
                              part=f"distance at alpha={COMMUTING_ALPHAS[-1]:g} below max({COMMUTING_SHRINK} x the "
                                   f"distance at alpha={COMMUTING_ALPHAS[0]:g}, {COMMUTING_FLOOR:g})"))
    if w_alt is not None:   # the limit is the theorem's, not the alternative's: closer to w_LP than half the gap
        half = 0.5 * float(np.linalg.norm(w_alt - w_lp)) / nlp
        outs.append(point_outcome((half - dists[-1]) / half, errs[-1] / half, 1.0, gap_to_alternative=2 * half,
                                  part=f"distance at alpha={COMMUTING_ALPHAS[-1]:g} below half the distance from "
                                       f"w_LP to the sum w^(2/N) minimizer"))
    return combine(outs, engine="gf rtol=1e-10", distances=dists, w_lp=w_lp, alphas=list(COMMUTING_ALPHAS),
                   w_alternative=None if w_alt is None else w_alt)
