"""Claims of Razin, Maman & Cohen 2021, "Implicit Regularization in Tensor Factorization" (CP tensor factorization).

Model: ``W = sum_{r=1}^R w_r^1 (x) ... (x) w_r^N`` (factor matrices ``U_n = [w_1^n .. w_R^n]``), component
``W_r = w_r^1 (x) ... (x) w_r^N`` with ``||W_r|| = prod_n ||w_r^n||``, tensor completion loss (catalog RMC21-Def-TC;
``1/2 sum of squares`` unless a claim draws the reduction). Gradient flow on the factors: ``dU_n/dt = -dphi/dU_n``.
Explicit constants are the catalog's (RMC21-Lem-Conservation, RMC21-Thm1 and its corollaries, RMC21-Thm2's
falsification test, RC20-Exp-TC for the "linear" baseline).

Numerical soundness. Gradient-flow claims run the float64 engine on the raw factors twice, at ``rtol`` and at
``10 rtol`` (the engine's own companion run only estimates the error of the tensor, these claims need the error of
factor-level quantities), and take ``10 x`` the running maximum of the difference of each checked quantity as its
error (the engine's calibration, models/engines/gf.py ``_with_errors``), escalating to a tighter ``rtol`` when a
margin does not clear it. Gradient-descent claims use the GD engine's rounding model (``8 eps N (k+1)`` relative
per factor entry after k steps).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from hypothesis import strategies as st
from scipy.stats import binomtest

from models import inits
from models.engines import get_engine
from models.errors import EngineFailure
from models.factorizations import CP, component_norms, cp_tensor
from models.problems import TensorProblem, random_tensor_completion, tensor_completion

from . import measures as M
from . import strategies as S
from ._common import combine, identity_outcome, point_outcome
from .api import Outcome, claim

SRC = "Razin, Maman & Cohen 2021 (ICML), arXiv 2102.09972"
EPS = float(np.finfo(float).eps)
SAFETY = 10.0

H_BALANCED = ("balanced", "balanced initialization: ||w_r^n(0)|| = ||w_r^n'(0)|| for every component r and modes n, n'")
H_GF = ("gradient_flow", "the dynamics is gradient flow on the factors")


# ----------------------------------------------------------------------------------------------------------------
# Helpers (public names are used by the unit tests)
# ----------------------------------------------------------------------------------------------------------------
def random_problem(dims, n_obs: int, rng: np.random.Generator, reduction: str = "half_sum") -> TensorProblem:
    """Completion of ``n_obs`` random entries with i.i.d. N(0, 1) values (no low-rank structure)."""
    total = int(np.prod(dims))
    flat = np.sort(rng.choice(total, size=int(n_obs), replace=False))
    idx = np.stack(np.unravel_index(flat, tuple(dims)), axis=1)
    return tensor_completion(tuple(dims), idx, rng.standard_normal(len(flat)), reduction=reduction)


def network_forward(factors, inputs) -> np.ndarray:
    """The one-hidden-layer convolutional arithmetic circuit of RMC21 on a batch of inputs.

    ``inputs[n]`` is a ``(B, d_n)`` array (the n-th "patch" of each of B inputs, one-hot for tensor entries). The
    hidden layer is locally connected and linear: channel r at position n computes ``<w_r^n, x_n>`` (weights not
    shared across positions); global product pooling multiplies the N positions channel by channel; the output
    sums the R channels. Written with plain matrix products, independently of :func:`cp_tensor`."""
    B = np.asarray(inputs[0]).shape[0]
    pooled = np.ones((B, np.asarray(factors[0]).shape[1]))
    for U, x in zip(factors, inputs):
        pooled = pooled * (np.asarray(x, dtype=float) @ np.asarray(U, dtype=float))   # (B, R) hidden activations
    return pooled.sum(axis=1)


def one_hot_inputs(dims, index_tuples) -> list[np.ndarray]:
    idx = np.asarray(index_tuples, dtype=int)
    return [np.eye(d)[idx[:, n]] for n, d in enumerate(dims)]


def unbalancedness(factors) -> float:
    """``eps = max_r max_{n,n'} | ||w_r^n||^2 - ||w_r^n'||^2 |`` (catalog RMC21-Lem-Conservation)."""
    sq = np.stack([np.sum(np.asarray(U) ** 2, axis=0) for U in factors])   # (N, R)
    return float(np.max(sq.max(axis=0) - sq.min(axis=0)))


def norm_differences(factors) -> np.ndarray:
    """``||w_r^n||^2 - ||w_r^1||^2`` for n = 2..N and every r (the conserved quantities), shape (N-1, R)."""
    sq = np.stack([np.sum(np.asarray(U) ** 2, axis=0) for U in factors])
    return sq[1:] - sq[:1]


def component_tensor(factors, r: int) -> np.ndarray:
    out = np.asarray(factors[0])[:, r]
    for U in factors[1:]:
        out = np.multiply.outer(out, np.asarray(U)[:, r])
    return out


def alignments(factors, G: np.ndarray) -> np.ndarray:
    """``g_r = < -G, W_r / ||W_r|| >`` for each component (NaN for a zero component)."""
    out = np.full(np.asarray(factors[0]).shape[1], np.nan)
    for r in range(len(out)):
        Wr = component_tensor(factors, r)
        n = float(np.linalg.norm(Wr))
        if n > 0:
            out[r] = -float(np.sum(G * Wr)) / n
    return out


def norm_rates_autograd(problem: TensorProblem, factors) -> np.ndarray:
    """``d/dt ||W_r||`` under gradient flow, by torch autograd: the velocity is minus the autograd gradient of the
    loss (built from an einsum of the factors), pushed through ``r -> prod_n ||w_r^n||`` with a Jacobian-vector
    product. Uses neither :func:`cp_factor_grads` nor the theorem's formula."""
    import torch

    fs = [torch.tensor(np.asarray(U, dtype=float), dtype=torch.float64, requires_grad=True) for U in factors]
    letters = "abcdefgh"[: len(fs)]
    T = torch.einsum(",".join(f"{c}z" for c in letters) + "->" + letters, *fs)
    flat = torch.tensor(problem._flat, dtype=torch.long)
    r = T.reshape(-1)[flat] - torch.tensor(problem.targets, dtype=torch.float64)
    loss = problem.loss_scale * torch.sum(r * r)
    grads = torch.autograd.grad(loss, fs)
    vel = tuple(-g.detach() for g in grads)

    def norms(*us):
        out = torch.ones(us[0].shape[1], dtype=torch.float64)
        for u in us:
            out = out * torch.linalg.vector_norm(u, dim=0)
        return out

    _, rate = torch.autograd.functional.jvp(norms, tuple(f.detach() for f in fs), vel)
    return rate.numpy()


def thm1_rhs(norm: float, g: float, N: int) -> float:
    """The balanced right-hand side ``N ||W_r||^(2 - 2/N) g_r``."""
    return N * norm ** (2.0 - 2.0 / N) * g


def thm1_bounds(norm: float, g: float, N: int, eps: float) -> tuple[float, float]:
    """``(lo, hi)`` with ``lo <= d/dt ||W_r|| <= hi`` when unbalanced by ``eps``: between ``N ||W_r||^(2-2/N) g_r``
    and ``N (||W_r||^(2/N) + eps)^(N-1) g_r`` (the order depends on the sign of g_r)."""
    a = N * norm ** (2.0 - 2.0 / N) * g
    b = N * (norm ** (2.0 / N) + eps) ** (N - 1) * g
    return min(a, b), max(a, b)


def gf_pair(problem, model, init, times, rtol: float, wall: float = 30.0):
    """Float64 gradient flow on the raw factors at ``rtol`` and ``10 rtol`` (no engine companion), recorded at the
    same ``times``; returns ``(main, companion)`` trajectories with matching points. Each run alone has no error
    estimate (``loose=0``), so the engine calls it ``inaccurate``; the pair is the estimate (:func:`running_error`).
    A run that failed (diverged, lost precision, solver failure) is refused."""
    runs = []
    for tol in (rtol, rtol * 10.0):
        eng = get_engine("gf", rtol=tol, path="raw", loose=0)
        tr = eng.run(problem, model, init, record_at=tuple(float(t) for t in times), wall_budget=wall)
        if tr.status.failed or any(p.factors is None for p in tr.points):
            raise EngineFailure(f"gf rtol={tol:g} ended with status {tr.status.value}: {tr.message}")
        runs.append(tr)
    main, comp = runs

    def at_times(tr):  # the points at the requested times (the engine also records loss levels)
        out = []
        for t in times:
            hit = [p for p in tr.points if abs(p.t - t) <= 1e-9 * max(1.0, abs(t))]
            if not hit:
                raise EngineFailure(f"gf recorded no point at t = {t:g}")
            out.append(hit[0])
        return out

    return at_times(main), at_times(comp)


def running_error(main_vals, comp_vals) -> np.ndarray:
    """``SAFETY x`` the running maximum of ``|main - comp|`` along the points (elementwise over trailing axes)."""
    d = np.abs(np.asarray(main_vals, dtype=float) - np.asarray(comp_vals, dtype=float))
    return SAFETY * np.maximum.accumulate(d, axis=0)


def _cp_setting(dims, R):
    return CP(tuple(int(d) for d in dims), int(R))


def _n_obs(dims, frac: float) -> int:
    total = int(np.prod(dims))
    return int(min(total, max(1, math.ceil(frac * total))))


# ----------------------------------------------------------------------------------------------------------------
# Conservation
# ----------------------------------------------------------------------------------------------------------------
@lru_cache(maxsize=None)
def _sympy_conservation(N: int, R: int = 2, d: int = 2) -> bool:
    """Exact: d/dt (||w_r^n||^2 - ||w_r^n'||^2) = 0 for symbolic factors and a symbolic loss gradient G."""
    import itertools

    import sympy as sp

    ws = [[sp.Matrix(sp.symbols(f"w{r}_{n}_0:{d}", real=True)) for n in range(N)] for r in range(R)]
    cells = list(itertools.product(range(d), repeat=N))
    G = {c: sp.Symbol("g_" + "_".join(map(str, c)), real=True) for c in cells}

    def grad_vec(r, n):  # d phi / d w_r^n = G contracted with every other vector of component r
        out = []
        for i in range(d):
            s = 0
            for c in cells:
                if c[n] != i:
                    continue
                term = G[c]
                for k in range(N):
                    if k != n:
                        term = term * ws[r][k][c[k]]
                s += term
            out.append(s)
        return sp.Matrix(out)

    for r in range(R):
        rates = [sp.expand(-2 * (ws[r][n].T * grad_vec(r, n))[0]) for n in range(N)]
        if any(sp.expand(rates[n] - rates[0]) != 0 for n in range(1, N)):
            return False
    return True


CONSERVATION_TOL = 1e-6


def _conservation_strategy(dropped):
    return S.fixed_dicts(dims=S.tensor_dims((3, 4), 2, 3), R=st.integers(1, 3), scale=S.log_scale(-1.0, 0.3),
                         frac=st.floats(0.3, 1.0), reduction=st.sampled_from(["half_sum", "mean"]),
                         t_max=S.log_scale(0.0, 1.3), seed=S.seeds())


@claim("rmc21.conservation",
       title="||w_r^n||^2 - ||w_r^n'||^2 is constant along gradient flow, for any init",
       source=SRC + ", conservation per component; catalog RMC21-Lem-Conservation",
       statement="under gradient flow on the CP factors of any differentiable loss of the tensor, for every component "
                 "r and modes n, n': d/dt ||w_r^n||^2 = -2 <grad L(W), W_r> does not depend on n, so "
                 "||w_r^n(t)||^2 - ||w_r^n'(t)||^2 is constant",
       kind="exact", strategy=_conservation_strategy, hypotheses=[H_GF], cost=2.0)
def conservation(inputs, dropped):
    """(1) Exactly with sympy: for symbolic vectors (orders 3 and 4, dimension 2, two components) and a symbolic
    loss gradient, -2 <w_r^n, dphi/dw_r^n> expands to the same polynomial for every n (cached). (2) Numerically:
    unbalanced i.i.d. Gaussian CP init, random completion values, float64 gradient flow on the raw factors to the
    drawn time (8 recorded times), margin 1e-6 - max_t max_{r,n} |D(t) - D(0)| / max_t max ||w_r^n||^2 with
    D = ||w_r^n||^2 - ||w_r^1||^2; error 10 x the running difference to a 10x looser run, plus rounding."""
    outs = [point_outcome(1.0 if _sympy_conservation(N) else -1.0, 0.0, 1.0, part=f"sympy, order {N}")
            for N in (3, 4)]
    dims = tuple(int(d) for d in inputs["dims"])
    model = _cp_setting(dims, inputs["R"])
    rng = np.random.default_rng(int(inputs["seed"]))
    problem = random_problem(dims, _n_obs(dims, inputs["frac"]), rng, inputs["reduction"])
    init = inits.cp_gaussian(model, float(inputs["scale"]) ** (1.0 / model.order), seed=int(inputs["seed"]))
    D0 = norm_differences(init.factors)
    times = np.linspace(0.0, float(inputs["t_max"]), 9)[1:]
    last = None
    for rtol in (1e-10, 1e-12):
        main, comp = gf_pair(problem, model, init, times, rtol)
        scale = max(max(float(np.max(np.sum(U ** 2, axis=0))) for U in p.factors) for p in main)
        drift_m = [float(np.max(np.abs(norm_differences(p.factors) - D0))) / scale for p in main]
        drift_c = [float(np.max(np.abs(norm_differences(p.factors) - D0))) / scale for p in comp]
        err = float(running_error(drift_m, drift_c)[-1]) + 64 * EPS
        last = identity_outcome(max(drift_m), CONSERVATION_TOL, err, part="trajectory drift", rtol=rtol,
                                points=len(main), t_max=float(times[-1]))
        if last.status != "inconclusive":
            break
    outs.append(last)
    return combine(outs, engine="sympy + gf raw")


# ----------------------------------------------------------------------------------------------------------------
# Theorem 1: component-norm dynamics
# ----------------------------------------------------------------------------------------------------------------
IDENTITY_TOL = 1e-9


def _thm1_strategy(dropped):
    return S.fixed_dicts(dims=S.tensor_dims((3, 4), 2, 4), R=st.integers(1, 4), norm_exp=S.exponent(-3.0, 1.0),
                         spread=S.exponent(0.0, 2.0), balanced=st.booleans(), rel_eps=S.log_scale(-2.0, 1.0),
                         frac=st.floats(0.2, 1.0), reduction=st.sampled_from(["half_sum", "mean"]), seed=S.seeds())


def thm1_point(inputs):
    """(problem, factors) at a random point: component norms 10^(norm_exp - spread * U[0,1]), unit directions,
    per-vector squared norms equal (balanced) or ``||W_r||^(2/N) (1 + rel_eps u_n)`` with u_1 = 0, u_2 = 1 and the
    rest U[0, 1] (unbalanced), rescaled so that the component norm is the drawn one."""
    dims = tuple(int(d) for d in inputs["dims"])
    N, R = len(dims), int(inputs["R"])
    rng = np.random.default_rng(int(inputs["seed"]))
    norms = 10.0 ** (float(inputs["norm_exp"]) - float(inputs["spread"]) * rng.uniform(0, 1, R))
    sq = np.ones((N, R))
    if not inputs["balanced"]:
        u = rng.uniform(0, 1, (N, R))
        u[0], u[1] = 0.0, 1.0
        sq = 1.0 + float(inputs["rel_eps"]) * u
    sq = sq / np.prod(sq, axis=0) ** (1.0 / N)          # geometric mean 1 per component
    sq = sq * norms ** (2.0 / N)                         # prod_n sq = norms^2
    factors = []
    for n, d in enumerate(dims):
        U = rng.standard_normal((d, R))
        U /= np.linalg.norm(U, axis=0)
        factors.append(U * np.sqrt(sq[n]))
    problem = random_problem(dims, _n_obs(dims, inputs["frac"]), rng, inputs["reduction"])
    return problem, factors


@claim("rmc21.thm1.component_norms",
       title="d/dt ||W_r|| = N ||W_r||^(2-2/N) g_r when balanced; two-sided bounds when unbalanced by eps",
       source=SRC + ", Theorem 1 (component-norm dynamics); catalog RMC21-Thm1",
       statement="gradient flow, g_r = <-grad L(W), W_r/||W_r||>: balanced (eps = 0): d/dt ||W_r|| = N ||W_r||^(2-2/N) "
                 "g_r; unbalanced by eps = max_r max_{n,n'} | ||w_r^n||^2 - ||w_r^n'||^2 |: if g_r >= 0, "
                 "N ||W_r||^(2-2/N) g_r <= d/dt ||W_r|| <= N (||W_r||^(2/N) + eps)^(N-1) g_r, reversed if g_r < 0",
       kind="exact", strategy=_thm1_strategy, cost=0.05)
def thm1_component_norms(inputs, dropped):
    """At a random point (random completion loss, component norms over up to 5 decades): d/dt ||W_r|| by torch
    autograd (velocity = minus the autograd gradient, pushed through prod_n ||w_r^n||) versus the formula (balanced,
    relative tolerance 1e-9) or the two bounds (unbalanced, eps measured on the factors). Every margin is divided by
    N (||W_r||^(2/N) + eps)^(N-1) ||grad L||_F (which bounds every term); rounding error 1e3 eps of that."""
    problem, factors = thm1_point(inputs)
    N = len(factors)
    T = cp_tensor(factors)
    G = np.real(problem.grad(T))
    gnorm = float(np.linalg.norm(G))
    rates = norm_rates_autograd(problem, factors)
    cn = component_norms(factors)
    g = alignments(factors, G)
    eps = 0.0 if inputs["balanced"] else unbalancedness(factors)
    outs = []
    for r in range(len(cn)):
        scale = N * (cn[r] ** (2.0 / N) + eps) ** (N - 1) * gnorm
        if scale == 0.0:
            continue
        if inputs["balanced"]:
            want = thm1_rhs(cn[r], g[r], N)
            outs.append(identity_outcome((rates[r] - want) / scale, IDENTITY_TOL, 1e3 * EPS, part="equality",
                                         component=r, rate=rates[r], formula=want, g=g[r], norm=cn[r]))
        else:
            lo, hi = thm1_bounds(cn[r], g[r], N, eps)
            margin = min(rates[r] - lo, hi - rates[r]) / scale
            # eps is measured on the factors: its rounding moves hi by N (N-1) (.)^(N-2) * 4 eps * max sq norm * |g|
            outs.append(point_outcome(margin, 1e3 * EPS, 1.0, part="bounds", component=r, rate=rates[r], lower=lo,
                                      upper=hi, g=g[r], norm=cn[r], eps=eps))
    return combine(outs, engine="torch autograd float64", balanced=bool(inputs["balanced"]))


# ----------------------------------------------------------------------------------------------------------------
# Corollaries: a zero component stays zero, a nonzero one never reaches zero
# ----------------------------------------------------------------------------------------------------------------
def _zero_strategy(dims_orders=(3, 4)):
    return lambda dropped: S.fixed_dicts(dims=S.tensor_dims(dims_orders, 2, 3), R=st.integers(2, 4),
                                         zeros=st.integers(1, 3), scale=S.log_scale(-1.5, 0.0),
                                         frac=st.floats(0.3, 1.0), t_max=S.log_scale(0.0, 1.3), seed=S.seeds())


def norm_lower_bound(x0: float, K: float, N: int, t: float) -> float:
    """Lower bound on ||W_r(t)|| for a balanced component under gradient flow, from d/dt ||W_r|| >= -N
    ||W_r||^(2-2/N) K with K >= ||grad L(W(t))||_F >= |g_r(t)| (the loss does not increase along the flow):
    x0 exp(-2 K t) for N = 2, (x0^-(1-2/N) + (N-2) K t)^(-N/(N-2)) for N >= 3. Positive for every finite t."""
    if N == 2:
        return x0 * math.exp(-2.0 * K * t)
    a = 1.0 - 2.0 / N
    return (x0 ** (-a) + (N - 2) * K * t) ** (-1.0 / a)


@claim("rmc21.zero_component",
       title="With balanced init a zero component stays zero and a nonzero one never reaches zero",
       source=SRC + ", corollary of Theorem 1; catalog RMC21-Thm1 (corollaries)",
       statement="gradient flow from a balanced init: W_r(0) = 0 implies W_r(t) = 0 for all t; W_r(0) != 0 implies "
                 "||W_r(t)|| >= (||W_r(0)||^-(1-2/N) + (N-2) K t)^(-N/(N-2)) > 0 with K = ||grad L(W(0))||_F "
                 "(order N >= 3)",
       kind="trajectory", strategy=_zero_strategy(), hypotheses=[H_BALANCED], cost=2.0)
def zero_component(inputs, dropped):
    """Balanced CP init (cp_balanced) with the first min(zeros, R-1) components set to exactly zero, random
    completion values, float64 gradient flow on the raw factors to the drawn time (8 recorded times). Margins: the
    largest norm of a zero component relative to the largest component norm against a tolerance of one ulp (it is
    exactly 0: zero is a fixed point of the arithmetic), and at every point (||W_r(t)|| - bound(t))/||W_r(t)|| for
    the nonzero components, error 10 x the running difference to a 10x looser run."""
    dims = tuple(int(d) for d in inputs["dims"])
    model = _cp_setting(dims, inputs["R"])
    N, R = model.order, model.rank
    rng = np.random.default_rng(int(inputs["seed"]))
    problem = random_problem(dims, _n_obs(dims, inputs["frac"]), rng, "half_sum")
    base = inits.cp_balanced(model, float(inputs["scale"]), seed=int(inputs["seed"]))
    z = min(int(inputs["zeros"]), R - 1)
    fs = [U.copy() for U in base.factors]
    for U in fs:
        U[:, :z] = 0.0
    init = inits.explicit(model, fs, "cp_balanced_with_zeros", {"zeros": z})
    x0 = component_norms(fs)
    K = problem.grad_scale * float(np.linalg.norm(problem.residuals(cp_tensor(fs))))
    times = np.linspace(0.0, float(inputs["t_max"]), 9)[1:]
    out = None
    for rtol in (1e-10, 1e-12):
        main, comp = gf_pair(problem, model, init, times, rtol)
        cm = np.array([component_norms(p.factors) for p in main])
        cc = np.array([component_norms(p.factors) for p in comp])
        errs = running_error(cm, cc)
        outs = [identity_outcome(float(np.max(cm[:, :z])) / float(np.max(cm)), EPS, 0.0, part="zero stays zero",
                                 zeros=z)]
        for k, p in enumerate(main):
            for r in range(z, R):  # (t > 0: every recorded time is positive; at t = 0 the bound is an equality)
                b = norm_lower_bound(x0[r], K, N, p.t)
                outs.append(point_outcome((cm[k, r] - b) / cm[k, r], errs[k, r] / cm[k, r], 1.0,
                                          part="nonzero stays away from zero", t=p.t, component=r,
                                          norm=cm[k, r], bound=b))
        out = combine(outs, engine=f"gf raw rtol={rtol:g}", K=K, initial_norms=x0)
        if out.status != "inconclusive":
            break
    return out


# ----------------------------------------------------------------------------------------------------------------
# Incremental learning (catalog RMC21-Thm1 escape-time heuristic and RMC21-Thm2 falsification test (a))
# ----------------------------------------------------------------------------------------------------------------
INC_LADDER = (1.0, 0.1, 0.01)
INC_THETA = 0.05          # a component has "escaped" once its norm reaches 0.05 ||W*|| (the catalog's threshold)
INC_LR = 0.1
INC_CHUNK = 16
INC_MAX_STEPS = 30_000
INC_SHRINK = 0.25         # rho at the smallest scale is at most a quarter of rho at the largest (two decades)


def _inc_strategy(dropped):
    return S.fixed_dicts(dims=S.tensor_dims((3, 4), 2, 3), alpha=S.log_scale(-2.5, -2.0),
                         frac=st.floats(0.9, 1.0), seed=S.seeds())


def rank2_target(dims, rng, strengths=(1.0, 0.7)) -> np.ndarray:
    T = np.zeros(dims)
    for s in strengths:
        comp = np.ones(())
        for d in dims:
            v = rng.standard_normal(d)
            comp = np.multiply.outer(comp, v / np.linalg.norm(v))
        T = T + s * comp
    return T / np.linalg.norm(T)


def _inc_setting(inputs):
    dims = tuple(int(d) for d in inputs["dims"])
    rng = np.random.default_rng(int(inputs["seed"]))
    T = rank2_target(dims, rng)
    total = T.size
    flat = np.sort(rng.choice(total, size=_n_obs(dims, inputs["frac"]), replace=False))
    idx = np.stack(np.unravel_index(flat, dims), axis=1)
    problem = tensor_completion(dims, idx, T.reshape(-1)[flat])
    model = CP(dims, 3)
    # fixed unit directions; the component best aligned with -grad L(0) starts at norm alpha, the others alpha / 2
    dirs = []
    for d in dims:
        U = rng.standard_normal((d, model.rank))
        dirs.append(U / np.linalg.norm(U, axis=0))
    G0 = problem.grad(np.zeros(dims))
    g = alignments(dirs, G0)
    # odd orders: flip the first mode's sign of anti-aligned components (same component norm, aligned)
    if model.order % 2 == 1:
        dirs[0] = dirs[0] * np.where(g < 0, -1.0, 1.0)
        g = np.abs(g)
    c = np.full(model.rank, 0.5)
    c[int(np.argmax(g))] = 1.0
    return problem, model, dirs, c, T


def _gd_run(problem, model, batch, lr, steps):
    res = get_engine("gd", lr=lr, device="cpu").run_batch(problem, model, batch, steps=steps)
    if not np.all(res.status == "completed"):
        raise EngineFailure(f"GD did not complete: {res.status.tolist()}")
    return res.final_factors, res.final_loss


def _member(batch, b):
    return [np.asarray(F)[b] for F in batch]


def first_step(problem, model, lr, factors, k0: int, k1: int, pred) -> tuple[int, list]:
    """The first step k in (k0, k1] at which ``pred(factors_k)`` holds, stepping GD one step at a time from the
    factors at step k0 (the chunked run told us it holds at k1)."""
    fs = [F[None] for F in factors]
    for k in range(k0 + 1, k1 + 1):
        fs, _ = _gd_run(problem, model, fs, lr, 1)
        mem = _member(fs, 0)
        if pred(mem):
            return k, mem
    raise EngineFailure(f"the event seen at step {k1} was not found stepping from {k0} (GD is not reproducible)")


def incremental_measures(problem, model, batch, lr=INC_LR, chunk=INC_CHUNK, max_steps=INC_MAX_STEPS, theta=INC_THETA):
    """Per member: (rho at the first step where the loss <= L0/2, the first step e1 where some component norm >= theta,
    the first step e2 where a second one does (or None), the step count reached)."""
    B = np.asarray(batch[0]).shape[0]
    L0 = np.array([problem.loss(cp_tensor(_member(batch, b))) for b in range(B)])
    preds = {
        "half": lambda b: (lambda fs: problem.loss(cp_tensor(fs)) <= L0[b] / 2),
        "e1": lambda b: (lambda fs: np.sort(component_norms(fs))[-1] >= theta),
        "e2": lambda b: (lambda fs: np.sort(component_norms(fs))[-2] >= theta),
    }
    found = [dict() for _ in range(B)]
    k, cur = 0, [np.asarray(F) for F in batch]
    while k < max_steps and not all(len(f) == 3 for f in found):
        nxt, _ = _gd_run(problem, model, cur, lr, chunk)
        for b in range(B):
            mem = _member(nxt, b)
            for name, mk in preds.items():
                if name not in found[b] and mk(b)(mem):
                    step, fs = first_step(problem, model, lr, _member(cur, b), k, k + chunk, mk(b))
                    found[b][name] = (step, fs)
        cur, k = nxt, k + chunk
    out = []
    for b in range(B):
        if "half" not in found[b] or "e1" not in found[b]:
            raise EngineFailure(f"member {b}: the loss did not halve or no component escaped in {max_steps} steps")
        cn = np.sort(component_norms(found[b]["half"][1]))
        out.append({"rho": float(cn[-2] / cn[-1]), "k_half": found[b]["half"][0], "e1": found[b]["e1"][0],
                    "e2": found[b]["e2"][0] if "e2" in found[b] else None, "steps": k})
    return out


@claim("rmc21.incremental_learning",
       title="As the init scale shrinks, components are learned one at a time: rho = (2nd largest / largest "
             "component norm when the loss first halves) shrinks and the escape times separate",
       source=SRC + ", Theorem 1's escape-time heuristic and the Theorem 2 falsification test (a); catalog RMC21-Thm1 "
                    "(corollaries), RMC21-Thm2, RMC21-Exp-Dynamics",
       statement="rank-2 target (strengths 1 and 0.7, ||W*|| = 1), >= 90% of entries observed, R = 3, balanced init with "
                 "fixed directions, the best-aligned component at norm alpha and the others at alpha/2, GD with step "
                 "0.1 (gradient flow up to O(step)), alpha in {a, a/10, a/100}: rho(alpha) strictly decreases, "
                 "rho(a/100) <= rho(a)/4, and the gap between the first and the second escape (component norm >= 0.05) "
                 "strictly increases",
       kind="trajectory", strategy=_inc_strategy,
       hypotheses=[H_BALANCED, ("unique_leader", "one component has the largest initial head start (alignment with "
                                                 "-grad L(0) and norm)")], cost=3.0)
def incremental_learning(inputs, dropped):
    """The three scales run as one GD batch (same problem and directions), in chunks of 16 steps; every event
    (loss <= L0/2, first and second escape) is then located to the exact step by single steps from the last chunk
    boundary. Margins: (rho_k - rho_{k+1})/rho_k, (rho(a)/4 - rho(a/100))/(rho(a)/4) and (gap_{k+1} - gap_k)/gap_{k+1}
    (a second escape not reached in 30000 steps counts as a gap of at least 30000 - e1). Errors: rho to 2 x 8 eps N
    (k+1) relative (GD rounding model); a step count to 1 step."""
    problem, model, dirs, c, _ = _inc_setting(inputs)
    N = model.order
    alphas = [float(inputs["alpha"]) * s for s in INC_LADDER]
    batch = [np.stack([U * (a * c) ** (1.0 / N) for a in alphas]) for U in dirs]
    ms = incremental_measures(problem, model, batch)
    outs = []
    rho = [m["rho"] for m in ms]
    rerr = [2 * 8 * EPS * N * (m["k_half"] + 1) * m["rho"] for m in ms]
    for k in range(len(ms) - 1):
        outs.append(point_outcome((rho[k] - rho[k + 1]) / rho[k], (rerr[k] + rerr[k + 1]) / rho[k], 1.0,
                                  part=f"rho decreases from alpha={alphas[k]:.3g} to {alphas[k + 1]:.3g}"))
    goal = INC_SHRINK * rho[0]
    outs.append(point_outcome((goal - rho[-1]) / goal, (rerr[-1] + INC_SHRINK * rerr[0]) / goal, 1.0,
                              part=f"rho(a/100) <= {INC_SHRINK} rho(a)"))
    gaps, exact = [], []
    for m in ms:
        e2 = m["e2"] if m["e2"] is not None else m["steps"]
        gaps.append(float(e2 - m["e1"]))
        exact.append(m["e2"] is not None)
    for k in range(len(ms) - 1):
        if not exact[k]:
            raise EngineFailure(f"no second escape within {INC_MAX_STEPS} steps at alpha={alphas[k]:.3g}")
        outs.append(point_outcome((gaps[k + 1] - gaps[k]) / max(gaps[k + 1], 1.0), 2.0 / max(gaps[k + 1], 1.0), 1.0,
                                  part=f"escape gap grows from alpha={alphas[k]:.3g} to {alphas[k + 1]:.3g}"))
    return combine(outs, engine=f"gd lr={INC_LR}", alphas=alphas, rho=rho, gaps_steps=gaps,
                   escapes=[[m["e1"], m["e2"]] for m in ms], k_half=[m["k_half"] for m in ms])


# ----------------------------------------------------------------------------------------------------------------
# Low tensor rank from small init (statistical)
# ----------------------------------------------------------------------------------------------------------------
LTR_N = 12
LTR_LEVEL = 0.05
LTR_DIST = 0.05
LTR_LR = 0.2
LTR_STEPS = 3000
LTR_REL_LOSS = 1e-5


def _ltr_strategy(dropped):
    dims = st.one_of(st.lists(st.integers(3, 4), min_size=3, max_size=3),
                     st.lists(st.integers(2, 3), min_size=4, max_size=4))
    return S.fixed_dicts(dims=dims, alpha=S.log_scale(-4.0, -3.0), frac=st.floats(0.75, 0.85), seed=st.integers(0, 10**6))


def ltr_trial(dims, frac, alpha, seed):
    """One seed: (success, details). Rank-1 target of norm 1, ceil(frac * size) observed entries, R = min(4, size /
    max dim), balanced init at component scale alpha, GD (step 0.2) until the loss is 1e-5 of its initial value
    (at most 3000 steps)."""
    total = int(np.prod(dims))
    problem, T = random_tensor_completion(dims, _n_obs(dims, frac), rank=1, seed=seed)
    model = CP(tuple(dims), int(min(4, total // max(dims))))
    init = inits.cp_balanced(model, alpha, seed=seed + 1)
    L0 = problem.loss(cp_tensor(list(init.factors)))
    res = get_engine("gd", lr=LTR_LR, device="cpu", check_every=32).run_batch(
        problem, model, [F[None] for F in init.factors], steps=LTR_STEPS, until_loss=LTR_REL_LOSS * L0)
    if res.status[0] == "diverged":
        raise EngineFailure(f"GD diverged (seed {seed})")
    W = res.final_product[0]
    nT = float(np.linalg.norm(T))
    err = float(np.linalg.norm(W - T)) / nT
    mask = np.zeros(total, bool)
    mask[problem._flat] = True
    lin = float(np.linalg.norm(T.reshape(-1)[~mask])) / nT        # zeros on the unobserved entries
    d1 = M.dist_rank1_tensor(W)
    rnd = float(res.final_product_err[0]) * math.sqrt(total) / max(float(np.linalg.norm(W)), 1e-300)
    ok = (err + rnd < lin) and (d1 + rnd < LTR_DIST)
    return ok, {"seed": seed, "error": err, "linear_error": lin, "dist_rank1": d1, "steps": int(res.final_step[0]),
                "rounding": rnd}


@claim("rmc21.low_tensor_rank",
       title="GD from small init on rank-1 tensor completion ends near rank 1 and beats the linear baseline",
       source=SRC + ", Theorem 2 and experiments; catalog RMC21-Thm2, RC20-Exp-TC ('linear' baseline)",
       statement="rank-1 target (||W*|| = 1), order 3 (dims 3-4) or 4 (dims 2-3), 75-85% of entries observed, R = "
                 "min(4, size / max dim), balanced init of component scale 1e-4..1e-3, GD: the typical run ends with "
                 "relative distance to its best rank-1 fit < 0.05 and relative reconstruction error below the linear "
                 "baseline's (observed entries fitted, zeros elsewhere). Test: n = 12 seeds, one-sided exact binomial "
                 "test of H0: P(success) <= 1/2 at level 0.05 (confidence 95%; needs >= 10 successes)",
       kind="statistical", strategy=_ltr_strategy, cost=1.0)
def low_tensor_rank(inputs, dropped):
    """n = 12 independent seeds (target, observed entries and init from seed*12 + i), each a success when both
    measures clear their thresholds by more than the GD rounding estimate. Margin: log10(level) - log10(p-value)
    (holds when H0 is rejected). Deterministic under the seed."""
    dims = [int(d) for d in inputs["dims"]]
    rows = [ltr_trial(dims, float(inputs["frac"]), float(inputs["alpha"]), int(inputs["seed"]) * LTR_N + i)
            for i in range(LTR_N)]
    k = sum(ok for ok, _ in rows)
    p = binomtest(k, LTR_N, 0.5, alternative="greater").pvalue
    margin = math.log10(LTR_LEVEL) - math.log10(max(p, 1e-300))
    worst = max(rows, key=lambda r: r[1]["dist_rank1"])[1]
    return Outcome(margin, 0.0, {"n": LTR_N, "successes": int(k), "p_value": p, "level": LTR_LEVEL,
                                 "test": "one-sided exact binomial, H0: P(success) <= 1/2",
                                 "median_error": float(np.median([r[1]["error"] for r in rows])),
                                 "median_linear_error": float(np.median([r[1]["linear_error"] for r in rows])),
                                 "failures": [r[1] for r in rows if not r[0]], "worst_dist_rank1": worst},
                   f"gd lr={LTR_LR}", 1.0)


# ----------------------------------------------------------------------------------------------------------------
# CP tensor = one-hidden-layer convolutional arithmetic circuit
# ----------------------------------------------------------------------------------------------------------------
def _net_strategy(dropped):
    return S.fixed_dicts(dims=S.tensor_dims((2, 3, 4, 5), 1, 4), R=st.integers(1, 6), scale=S.log_scale(-2.0, 2.0),
                         seed=S.seeds())


@claim("rmc21.cp_equals_network",
       title="The CP tensor equals the forward pass of the one-hidden-layer convolutional arithmetic circuit on "
             "one-hot inputs",
       source=SRC + ", equivalence with a convolutional arithmetic circuit; catalog RMC21-Def-TC",
       statement="[sum_r w_r^1 (x) ... (x) w_r^N]_{i_1..i_N} = sum_r prod_n <w_r^n, e_{i_n}> for every index tuple",
       kind="exact", strategy=_net_strategy, cost=0.01)
def cp_equals_network(inputs, dropped):
    """Random factors (entries N(0, scale^2)), every index tuple of the tensor fed as one-hot patches to the network
    (locally connected linear layer, product pooling, sum); margin: the rounding bound 2 (N + R) eps sum_r prod_n
    |w_r^n[i_n]| minus the discrepancy, at the worst entry, relative to that entry's bound."""
    dims = tuple(int(d) for d in inputs["dims"])
    R = int(inputs["R"])
    rng = np.random.default_rng(int(inputs["seed"]))
    factors = [float(inputs["scale"]) * rng.standard_normal((d, R)) for d in dims]
    T = cp_tensor(factors)
    tuples = np.stack(np.unravel_index(np.arange(T.size), dims), axis=1)
    net = network_forward(factors, one_hot_inputs(dims, tuples))
    absprod = network_forward([np.abs(U) for U in factors], one_hot_inputs(dims, tuples))
    bound = 2.0 * (len(dims) + R) * EPS * absprod + np.finfo(float).tiny
    diff = np.abs(net - T.reshape(-1))
    k = int(np.argmax(diff / bound))
    return point_outcome(float((bound[k] - diff[k]) / bound[k]), 0.0, 1.0, entry=tuples[k], discrepancy=diff[k],
                         bound=bound[k], entries=int(T.size))
