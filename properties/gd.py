"""Gradient descent versus gradient flow: GD with step eta is a first-order method for the gradient-flow ODE.

``gd.tracks_gf``: on [0, T], ``max_t ||W_GD(t) - W_GF(t)||_max <= C eta`` with an order that is exactly 1: the
error is measured at eta, eta/2 and eta/4 against the float64 gradient-flow engine at a tight tolerance, and its
log-log slope in eta and both halving ratios must show order 1. Deep matrix factorizations (random sensing loss,
per-layer Gaussian init) and CP tensor factorizations (random completion loss) are both drawn.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st

from models import inits
from models.cp_tools import random_problem
from models.engines import get_engine
from models.errors import EngineFailure
from models.factorizations import CP, DeepMatrix
from models.problems import sensing

from . import strategies as S
from ._common import combine, point_outcome
from .api import claim

SRC = "gradient descent as a forward-Euler discretization of gradient flow (the step-size assumption behind every " \
      "GD experiment of RC20, ACHL19 and RMC21; catalog ACH18-Lem-Conservation 'Check', RC20-Lem-DetSign)"

LADDER = (1, 2, 4)            # eta, eta/2, eta/4
GRID = 8                      # comparison times j T / 8, j = 1..8
SLOPE = (0.8, 1.2)            # the admissible log-log slope (order 1)
RATIO = (2.0 ** SLOPE[0], 2.0 ** SLOPE[1])
GF_RTOL = 1e-12


def _strategy(dropped):
    return S.fixed_dicts(
        model=st.sampled_from(["deep", "cp"]),
        depth=S.depths(2, 4), shape=st.sampled_from([[2, 2], [2, 3], [3, 2]]),
        dims=S.tensor_dims((3,), 2, 2), R=st.integers(1, 2),
        scale=S.log_scale(-0.5, 0.0), eta=S.log_scale(-2.5, -1.5), T=S.log_scale(0.0, 0.5), seed=S.seeds(),
    )


def setting(inputs):
    """(problem, model, init, gf problem) of a drawn setting."""
    rng = np.random.default_rng(int(inputs["seed"]))
    if inputs["model"] == "deep":
        d, dp = (int(x) for x in inputs["shape"])
        model = DeepMatrix(int(inputs["depth"]), (d, dp))
        m = d * dp - 1
        problem = sensing(rng.standard_normal((m, d, dp)) / math.sqrt(d * dp), rng.standard_normal(m))
        init = inits.gaussian(model, float(inputs["scale"]) ** (1.0 / model.depth) / math.sqrt(max(d, dp)),
                              seed=int(inputs["seed"]))
        return problem, model, init, problem
    dims = tuple(int(x) for x in inputs["dims"])
    model = CP(dims, int(inputs["R"]))
    problem = random_problem(dims, int(np.prod(dims)) - 1, rng)
    init = inits.cp_balanced(model, float(inputs["scale"]), seed=int(inputs["seed"]))
    return problem, model, init, problem


def gd_at(problem, model, init, eta: float, steps: int, every: int):
    """GD products (and their rounding estimates) at steps every, 2 every, ..., steps."""
    res = get_engine("gd", lr=eta, device="cpu").run(problem, model, [init], steps=steps, record_every=every,
                                                    wall_budget=math.inf)
    if res.status[0] != "completed":
        raise EngineFailure(f"GD with eta={eta:g} ended {res.status[0]}")
    rows = [k for k in range(len(res.steps)) if res.steps[k] > 0 and res.steps[k] % every == 0]
    return (np.stack([res.product[k, 0] for k in rows]), np.array([res.product_err[k, 0] for k in rows]),
            [int(res.steps[k]) for k in rows])


def gf_at(problem, model, init, times):
    tr = get_engine("gf", rtol=GF_RTOL, path="raw").run(problem, model, init, record_at=tuple(times),
                                                        wall_budget=60.0)
    if not tr.status.trustworthy:
        raise EngineFailure(f"gf ended {tr.status.value}: {tr.message}")
    out, errs = [], []
    for t in times:
        hit = [p for p in tr.points if abs(p.t - t) <= 1e-9 * max(1.0, t)]
        if not hit:
            raise EngineFailure(f"gf recorded no point at t = {t:g}")
        out.append(hit[0].product)
        errs.append(hit[0].product_err)
    if not all(math.isfinite(e) for e in errs):
        raise EngineFailure("gf has no error estimate at some comparison time")
    return np.stack(out), np.array(errs)


def slope_and_error(etas, errs, deltas):
    """Least-squares slope of log err against log eta, and a first-order bound on its change when each err_i moves
    by at most deltas_i."""
    x = np.log(np.asarray(etas, dtype=float))
    y = np.log(np.asarray(errs, dtype=float))
    w = (x - x.mean()) / np.sum((x - x.mean()) ** 2)
    return float(np.sum(w * y)), float(np.sum(np.abs(w) * np.asarray(deltas) / np.asarray(errs)))


def tracks(inputs):
    """The measurements of gd.tracks_gf: (etas, errs, deltas, C)."""
    problem, model, init, gfp = setting(inputs)
    eta0 = float(inputs["eta"])
    K = GRID * max(1, int(round(float(inputs["T"]) / eta0 / GRID)))   # steps at eta0, a multiple of GRID
    T = K * eta0
    times = [j * T / GRID for j in range(1, GRID + 1)]
    ref, ref_err = gf_at(gfp, model, init, times)
    etas, errs, deltas = [], [], []
    for f in LADDER:
        eta = eta0 / f
        W, werr, steps = gd_at(problem, model, init, eta, K * f, K * f // GRID)
        if len(steps) != GRID:
            raise EngineFailure(f"GD recorded {len(steps)} comparison points, expected {GRID}")
        diff = np.max(np.abs(W - ref).reshape(GRID, -1), axis=1)
        etas.append(eta)
        errs.append(float(np.max(diff)))
        deltas.append(float(np.max(ref_err + werr)))                     # |err - computed err| over every time
    return etas, errs, deltas, T


@claim("gd.tracks_gf",
       title="Gradient descent with step eta stays within C eta of gradient flow on [0, T], with order exactly 1",
       source=SRC,
       statement="for a smooth loss of a deep matrix or CP factorization and a fixed horizon T: max_{k eta <= T} "
                 "||W_GD(k) - W_GF(k eta)||_max <= C eta for small eta, and the error is first order: measured at eta, "
                 "eta/2, eta/4 (eta in [10^-2.5, 10^-1.5], T in [1, 10^0.5]) its log-log slope lies in [0.8, 1.2] and "
                 "both ratios err(eta)/err(eta/2) lie in [2^0.8, 2^1.2]",
       kind="trajectory", strategy=_strategy, cost=1.0)
def tracks_gf(inputs, dropped):
    """GD (torch float64) at eta, eta/2 and eta/4 recorded at the 8 times j T/8, against one float64 gradient-flow
    run (raw factors, rtol 1e-12) recorded at the same times. err(eta) = max over the 8 times of the largest entry
    difference; its numerical error is bounded by the gf engine's product_err plus the GD rounding estimate there.
    Margins (normalized by the width of the admissible interval): the slope's distance to [0.8, 1.2] and each ratio's
    distance to [2^0.8, 2^1.2], with errors propagated to first order through the logarithms."""
    etas, errs, deltas, T = tracks(inputs)
    if min(errs) <= 0:
        raise EngineFailure("GD and GF agree exactly: nothing to measure")
    slope, serr = slope_and_error(etas, errs, deltas)
    C = max(e / h for e, h in zip(errs, etas))
    lo, hi = SLOPE
    outs = [point_outcome(min(slope - lo, hi - slope), serr, (hi - lo) / 2, part="log-log slope", slope=slope)]
    rlo, rhi = math.log(RATIO[0]), math.log(RATIO[1])
    for k in range(len(errs) - 1):
        lr = math.log(errs[k] / errs[k + 1])
        lerr = deltas[k] / errs[k] + deltas[k + 1] / errs[k + 1]
        outs.append(point_outcome(min(lr - rlo, rhi - lr), lerr, (rhi - rlo) / 2,
                                  part=f"ratio err(eta/{LADDER[k]})/err(eta/{LADDER[k + 1]})",
                                  ratio=errs[k] / errs[k + 1]))
    return combine(outs, engine=f"gd vs gf rtol={GF_RTOL:g}", etas=etas, errors=errs, error_bounds=deltas, C=C, T=T,
                   model=inputs["model"])
