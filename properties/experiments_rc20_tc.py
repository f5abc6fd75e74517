"""The tensor-completion experiment of Razin & Cohen 2020: ``rc20.exp.tensor_completion``.

The official runner (their ``tc_experiment_runner.py``): a rank-1 target of Frobenius norm 1 (8^3 or 8^4), CP
factorization with ``R = prod(dims) / max(dims)`` components (64 or 512), per-entry Gaussian init std 1e-3,
``nn.MSELoss`` on the observed entries, ``GroupRMSprop`` (one global normalized step per iteration, lr 1e-2),
float32; order 4 uses 1,000 observations (measured for issue 13: 29,400 epochs, 370 s, reconstruction error
7.8e-7 against 0.869 for the baseline that predicts the observed entries and 0 elsewhere), order 3 a sweep over
the number of observations; the official stop is the training MSE below 1e-6 at three checks 100 epochs apart, so
the official order-4 error is where GroupRMSprop was ~300 epochs after crossing that level (its step then grows
and the iterates bounce). The suite runs it with the batched dense-product loop of :mod:`models.engines.cp_fast`
(engine ``gd-cp``), several init seeds in one run, with GroupRMSprop capped by a curvature bound
(:data:`STEP_RULE`: it converges where GroupRMSprop bounces), and estimates the CP rank of the result by the
residual of its best rank-1 approximation (:func:`rank1_residual`).

Settings (the inputs name them, so a replay needs no profile): ``order3`` (8^3, R = 64, float64, observations
in {200, 300, 400}; error <= 0.05 x the baseline's) under every profile; ``order4`` (the paper's 8^4, R = 512,
1,000 observations, float32 products as the official code with float64 factors, 5 seeds batched, to relative
MSE 1e-13; error <= 1e-6, the paper's) only under ``thorough``.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st

from models.engines import get_engine
from models.errors import EngineFailure
from models.factorizations import CP
from models.problems import random_tensor_completion

from . import strategies as S
from ._common import combine, point_outcome
from .api import claim, current_profile

SRC = "Razin & Cohen 2020 (NeurIPS), arXiv 2005.06398"

INIT_STD = 1e-3
LR = 1e-2
SEEDS_PER_RUN = 5
#: the step rule: the official GroupRMSprop (lr 1e-2) with its step capped by a bound on 1 / the Gauss-Newton
#: curvature (models.engines.cp_fast): the same path across the plateaus (the cap is ~1e14 near the origin), and
#: plain gradient descent with a stable step near the minimum, where GroupRMSprop's own step grows as the gradient
#: collapses and the iterates bounce (measured at 8^3, GroupRMSprop alone: members that reached relative MSE
#: 1e-13 came back to 1e-4; capped, the same members stay at their floor)
STEP_RULE = "group_rmsprop_capped"
#: the paper's reconstruction error at order 4 (init 1e-3, >= 1,000 observations: "about 1e-6"; the official
#: run measured for issue 13: 7.8e-7), the stated per-member bound of the 8^4 setting
PAPER_ERROR_ORDER4 = 1e-6
#: the official rank estimate's tolerance: the smallest CP rank whose CP-ALS fit has MSE over *all* entries of the
#: learned tensor T below 1e-6, i.e. ||T - X|| <= sqrt(1e-6 * prod(dims)) for a rank-1 X: an absolute distance,
#: here relative to the target's norm ||T*|| = 1 (:func:`rank1_distance`; not to ||T||, which differs from 1 by up
#: to the reconstruction error): 0.0226 at 8^3, 0.064 at 8^4
PAPER_RANK_MSE = 1e-6
#: stop when the training MSE is at most this fraction of the mean squared observed value. Order 4: near the
#: target, T - T* lies (to first order) in the tangent space of the rank-1 tensors, on which uniform sampling
#: keeps the mean square (E ||P_obs X||^2 / m = ||X||^2 / prod(dims)), so the relative training MSE is about
#: (reconstruction error)^2: the paper's 1e-6 needs about 1e-12; the stop is 1e-13 (a factor sqrt(10) on the
#: error for the sampling's distortion), 10x above the floor of float32 products (measured 6.4e-15 .. 9.8e-15;
#: hence dtype float32-f64: with float32 factors the run stalls at 2.9e-12, error 2.8e-6). Order 3 (the quick/ci
#: reduction): 1e-5 (about the official 1e-6 absolute there, 5e-4 of it), checked against 0.05 x the baseline.
REL_LOSS_STOP = {"order3": 1e-5, "order4": 1e-13}
#: the order-3 reduction's stated bound: the reconstruction error is at most 0.05 times the baseline's (measured
#: at 8^3, 200-400 observations, 45 members, GroupRMSprop: errors 3.6e-3 .. 1.1e-2 against baselines 0.44 .. 0.79)
FAR_BELOW = 0.05
SETTINGS = {
    "order3": {"dims": (8, 8, 8), "R": 64, "steps": 3000, "dtype": "float64"},
    "order4": {"dims": (8, 8, 8, 8), "R": 512, "m": 1000, "steps": 80000, "dtype": "float32-f64"},
}
#: from the official sweep {50, 100, ..., 450, 511}: up to 150 observations some inits do not recover the
#: target (measured: 3 of 5 members at 100 and 1 of 15 at 150 end with error 0.3 .. 9 after 3000-6000 steps);
#: 450 and 511 observe nearly every entry
ORDER3_OBSERVATIONS = (200, 300, 400)
#: torch threads for the batched products: one. Measured on the shared 2-core machine (load ~3): 4.4 ms per 8^4
#: step of 5 members with one thread, 42 ms with two (the second thread waits for a busy core); with ``--jobs 2``
#: each worker process has a core of its own anyway.
THREADS = 1


def rank_tolerance(setting: str) -> float:
    """The official rank estimate's tolerance as a Frobenius distance relative to ``||T*|| = 1`` (see
    :data:`PAPER_RANK_MSE`)."""
    return math.sqrt(PAPER_RANK_MSE * float(np.prod(SETTINGS[setting]["dims"])))


def rank1_distance(T: np.ndarray, target_norm: float = 1.0) -> float:
    """``||T - X|| / target_norm`` for the rank-1 ``X`` of :func:`rank1_residual`: the distance the official rank
    estimate bounds (its MSE over all entries is ``||T - X||^2 / T.size``), in units of the target's norm; an upper
    bound on the distance of ``T`` to the rank-1 tensors."""
    T = np.asarray(T, dtype=np.float64)
    return rank1_residual(T) * float(np.linalg.norm(T)) / float(target_norm)


def rank_outcome(T: np.ndarray, setting: str, target_norm: float, rounding: float, **detail):
    """The claim's rank part for one final tensor: margin ``rank_tolerance - rank1_distance`` with error
    ``rounding``."""
    r1, rtol = rank1_distance(T, target_norm), rank_tolerance(setting)
    return point_outcome(rtol - r1, rounding, rtol, part="estimated CP rank 1", value=r1, bound=rtol, **detail)


def error_bound(setting: str, baseline: float) -> float:
    """The stated per-member reconstruction-error bound: the paper's 1e-6 at 8^4, 0.05 x the baseline's at 8^3."""
    return PAPER_ERROR_ORDER4 if setting == "order4" else FAR_BELOW * baseline


def baseline_error(problem, target) -> float:
    """Reconstruction error of the baseline that predicts the observed entries and 0 elsewhere (the official
    "memorizer"; the depth-1 / linear solution of minimal norm)."""
    pred = np.zeros(target.size)
    pred[np.ravel_multi_index(tuple(problem.indices.T), problem.dims)] = problem.targets
    return float(np.linalg.norm(pred - target.reshape(-1)) / np.linalg.norm(target))


def rank1_residual(T: np.ndarray, iters: int = 200) -> float:
    """``||T - X|| / ||T||`` for the rank-1 tensor ``X`` found by the higher-order power method (alternating
    least squares for rank 1, started from the leading left singular vector of each unfolding): an upper bound on
    the distance of ``T`` to the rank-1 tensors, so ``rank1_residual(T) <= tol`` certifies estimated CP rank
    <= 1 at tolerance ``tol``."""
    T = np.asarray(T, dtype=np.float64)
    nrm = float(np.linalg.norm(T))
    if nrm == 0.0:
        return 0.0
    N = T.ndim
    letters = "abcdefgh"[:N]
    vs = [np.linalg.svd(np.moveaxis(T, n, 0).reshape(T.shape[n], -1), full_matrices=False)[0][:, 0] for n in range(N)]
    for _ in range(iters):
        for n in range(N):
            spec = letters + "," + ",".join(letters[k] for k in range(N) if k != n) + "->" + letters[n]
            x = np.einsum(spec, T, *[vs[k] for k in range(N) if k != n])
            vs[n] = x / np.linalg.norm(x)
    lam = float(np.einsum(letters + "," + ",".join(letters) + "->", T, *vs))
    X = lam * np.einsum(",".join(letters) + "->" + letters, *vs)
    return float(np.linalg.norm(T - X) / nrm)


def run_setting(setting: str, m: int, data_seed: int, init_seed: int, B: int = SEEDS_PER_RUN,
                init_std: float = INIT_STD):
    """``(problem, target, CPRun)``: B inits (seeds ``init_seed .. init_seed + B - 1``) on one problem
    (``init_std`` other than the paper's: the negative control of tests/quality)."""
    cfg = SETTINGS[setting]
    dims, R = cfg["dims"], cfg["R"]
    problem, target = random_tensor_completion(dims, int(m), rank=1, norm=1.0, seed=int(data_seed),
                                               reduction="mean")
    factors = [np.stack([float(init_std) * np.random.default_rng([int(init_seed) + b, n]).standard_normal((d, R))
                         for b in range(B)]) for n, d in enumerate(dims)]
    stop = REL_LOSS_STOP[setting] * float(np.mean(problem.targets ** 2))
    engine = get_engine("gd-cp", lr=LR, step_rule=STEP_RULE, check_every=100, dtype=cfg["dtype"],
                        threads=THREADS)
    res = engine.run(problem, CP(dims, R), factors, steps=cfg["steps"], until_loss=stop,
                     options={"target": target}).kernel_run
    return problem, target, res


#: examples under ``thorough``, drawn from 8^3 and 8^4 alike (measured: 42-46 s of CPU per 8^4 batch of 5 seeds, about
#: 1.2 s per 8^3 batch, loaded 2-core machine): the profile's rule (1,200 s / cost 4) would draw 300, about half at
#: 8^4, about 1.8 h of CPU; 50 keep thorough near its 1,200 s-per-claim budget in CPU time (about 20 min)
THOROUGH_EXAMPLES = 50


def _tc_strategy(dropped):
    settings = ["order3"] + (["order4"] if current_profile() == "thorough" else [])
    return st.sampled_from(settings).flatmap(lambda s: S.fixed_dicts(
        setting=s, m=st.sampled_from(ORDER3_OBSERVATIONS) if s == "order3" else SETTINGS[s]["m"],
        data_seed=st.integers(0, 10_000), init_seed=st.integers(0, 10_000)))


@claim("rc20.exp.tensor_completion",
       title="Tensor factorization from small init completes a rank-1 tensor far below the baseline, with CP rank 1",
       source=SRC + ", the tensor-completion experiment (official runner: rank-1 target of norm 1, R = 512 for 8^4, "
                    "init 1e-3, GroupRMSprop lr 1e-2, MSE; paper: error about 1e-6 at 8^4); catalog RC20-Exp-TC",
       statement="rank-1 target of Frobenius norm 1, CP factorization with R = 64 (8^3) or 512 (8^4) components, "
                 "per-entry init std 1e-3, GroupRMSprop (lr 1e-2) with its step capped by a bound on 1 / the "
                 "Gauss-Newton curvature, on the MSE of the observed entries, until the MSE is 1e-13 (8^4) or 1e-5 "
                 "(8^3) of the mean squared observation (at most 80000 steps at 8^4, 3000 at 8^3): for each of 5 "
                 "init seeds, the reconstruction error ||T - T*||/||T*|| <= 1e-6 (8^4, the paper's figure) or "
                 "<= 0.05 x the baseline's (observed entries, 0 elsewhere; 8^3), and the best rank-1 approximation "
                 "of T is within sqrt(1e-6 prod(dims)) ||T*|| (0.064 at 8^4, 0.0226 at 8^3: the official rank "
                 "estimate's tolerance, CP-ALS MSE over all entries <= 1e-6): estimated CP rank 1. Settings: 8^3 "
                 "with 200, 300 or 400 observations (every profile); 8^4 with 1,000 observations (thorough only)",
       kind="trajectory", strategy=_tc_strategy, cost=4.0, examples={"thorough": THOROUGH_EXAMPLES})
def tensor_completion(inputs, dropped):
    """One batched run of 5 init seeds (models.engines.cp_fast, step rule group_rmsprop_capped; float64 at 8^3,
    float32 products with float64 factors at 8^4); per member two margins, both computed in float64 from the final
    tensor (formed from the factors in the factors' precision): the error bound minus the reconstruction error, and
    the rank tolerance minus :func:`rank1_distance` (an upper bound on the distance to rank 1, in units of
    ||T*||; :func:`rank_outcome`); error estimate 1e-12 absolute for both (the rounding of a float64 tensor of norm ~1 is ~1e-15; 1e-6 with float32 factors). The
    detail keeps the step rule, steps and seconds."""
    setting = inputs["setting"]
    problem, target, res = run_setting(setting, int(inputs["m"]), int(inputs["data_seed"]), int(inputs["init_seed"]))
    base = baseline_error(problem, target)
    bound = error_bound(setting, base)
    rounding = 1e-6 if SETTINGS[setting]["dtype"] == "float32" else 1e-12
    tnorm = float(np.linalg.norm(target))
    outs, recs = [], []
    for b in range(len(res.status)):
        if res.status[b] == "diverged":
            raise EngineFailure(f"member {b} diverged at step {int(res.final_step[b])}")
        rec = float(np.linalg.norm(res.tensor[b] - target) / tnorm)
        if not math.isfinite(rec):
            raise EngineFailure(f"member {b}: non-finite reconstruction error")
        recs.append(rec)
        outs.append(point_outcome(bound - rec, rounding, bound,
                                  part=f"reconstruction error <= {'1e-6' if setting == 'order4' else '0.05 baseline'}",
                                  member=b, value=rec, bound=bound,
                                  steps=int(res.final_step[b]), run_status=res.status[b]))
        outs.append(rank_outcome(res.tensor[b], setting, tnorm, rounding, member=b))
    return combine(outs, engine=f"cp-fast {SETTINGS[setting]['dtype']}", baseline_error=base,
                   reconstruction_errors=recs, steps=[int(s) for s in res.final_step], statuses=list(res.status),
                   seconds=round(res.seconds, 2), step_rule=res.settings["step_rule"], lr=LR, init_std=INIT_STD,
                   rel_loss_stop=REL_LOSS_STOP[setting], R=SETTINGS[setting]["R"],
                   dims=list(SETTINGS[setting]["dims"]))


__all__ = ["ORDER3_OBSERVATIONS", "SETTINGS", "STEP_RULE", "baseline_error", "error_bound", "rank1_distance",
           "rank1_residual", "rank_outcome", "rank_tolerance", "run_setting"]
