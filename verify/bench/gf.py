"""The ``gf`` and ``gf-e2e`` rows of ``verify bench`` and their naive column: ``solve_ivp(LSODA)`` on the raw
factors, what a user would write first (moved here from :mod:`verify.commands.bench`)."""

from __future__ import annotations

import math
import time

import numpy as np


def _rc20_setting(depth: int):
    from models import inits
    from models.factorizations import DeepMatrix
    from models.problems import rc20

    model = DeepMatrix(depth, (2, 2))
    return rc20(), model, inits.balanced(model, 0.1, seed=0, det="positive")


def naive_lsoda(problem, model, init, until_loss: float, budget: float, rtol: float = 1e-10) -> dict:
    """``solve_ivp(LSODA)`` on the flattened raw factors (what a user would write first), in plain time.

    Stops at ``until_loss``, at the wall ``budget`` or when LSODA gives up. Reports the smallest loss reached while
    the det sign (product of factor dets) equals the initial one, and the loss where it first flipped."""
    from scipy.integrate import solve_ivp

    from models.factorizations import factor_grads, product

    shapes = [W.shape for W in init.factors]
    sizes = [int(np.prod(s)) for s in shapes]
    cuts = np.cumsum(sizes)[:-1]

    def unflatten(y):
        return [part.reshape(s) for part, s in zip(np.split(y, cuts), shapes)]

    def sign(fs):
        return int(np.prod([np.sign(np.linalg.det(F)) for F in fs]))

    y0 = np.concatenate([np.ravel(W) for W in init.factors])
    sign0 = sign(unflatten(y0))
    state = {"best": math.inf, "flip": None, "start": time.perf_counter(), "reached": False}

    def fun(t, y):
        fs = unflatten(y)
        return -np.concatenate([g.ravel() for g in factor_grads(fs, problem.grad(product(fs)))])

    def event(t, y):
        fs = unflatten(y)
        loss = float(problem.loss(product(fs)))
        ok = sign(fs) == sign0
        if ok:
            state["best"] = min(state["best"], loss)
        elif state["flip"] is None:
            state["flip"] = loss
        if ok and loss <= until_loss:
            state["reached"] = True
            return 0.0
        if time.perf_counter() - state["start"] > budget:
            return 0.0
        return 1.0

    event.terminal = True
    import warnings

    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # LSODA's convergence-failure chatter; the outcome says what happened
        res = solve_ivp(fun, (0.0, 1e30), y0, method="LSODA", rtol=rtol, atol=1e-14 * float(np.max(np.abs(y0))),
                        events=event)
    seconds = time.perf_counter() - state["start"]
    if state["reached"]:
        outcome = "reached"
    elif state["flip"] is not None:
        outcome = "det flipped"
    elif seconds > budget:
        outcome = "budget"
    else:
        outcome = f"solver stopped ({res.message})"
    return {"seconds": seconds, "best_loss_det_kept": state["best"], "loss_at_det_flip": state["flip"],
            "outcome": outcome, "nfev": int(res.nfev)}


def bench_gf(depths=(2, 3, 4, 6, 8), until_loss: float = 1e-12, naive_budget: float = 20.0,
             naive_depths=(2, 3, 4, 6)) -> list[dict]:
    from models.engines import get_engine

    rows = []
    for L in depths:
        problem, model, init = _rc20_setting(L)
        t0 = time.perf_counter()
        traj = get_engine("gf").run(problem, model, init, until_loss=until_loss, wall_budget=120)
        sec = time.perf_counter() - t0
        f = traj.final
        row = {"workload": f"gf depth {L} to {until_loss:g}", "engine": "gf", "depth": L, "target": until_loss,
               "seconds": sec, "loss": f.loss, "status": traj.status.value,
               "det_kept": f.det_sign == traj.points[0].det_sign, "steps": traj.stats.get("steps"),
               "w11_times_s": abs(float(f.product[0, 0])) * math.sqrt(2 * f.loss),
               "w11_rel_err": float(f.product_err) / abs(float(f.product[0, 0]))}
        if L in naive_depths:
            nv = naive_lsoda(problem, model, init, until_loss, naive_budget)
            row.update({"naive": "solve_ivp LSODA, raw factors", "naive_seconds": nv["seconds"],
                        "naive_outcome": nv["outcome"], "naive_best_loss_det_kept": nv["best_loss_det_kept"],
                        "naive_loss_at_det_flip": nv["loss_at_det_flip"],
                        # naive time / ours; when the naive run never reached the target it is a lower bound
                        # (budget) or meaningless (det flipped: it follows another trajectory)
                        "ratio": nv["seconds"] / sec if nv["outcome"] in ("reached", "budget") else None,
                        "ratio_is_lower_bound": nv["outcome"] == "budget"})
        rows.append(row)
    return rows


def bench_gf_e2e(naive_budget: float = 20.0,
                 workloads=((3, 10, 1, True), (3, 20, 2, False), (3, 50, 2, False), (1, 50, 2, False))) -> list[dict]:
    """``gf`` on random low-rank completion; ``workloads`` are ``(depth, n, rank, with_naive)``."""
    from models import inits
    from models.engines import get_engine
    from models.factorizations import DeepMatrix
    from models.generators import random_completion

    rows = []
    for depth, n, rank, naive in workloads:
        problem, _ = random_completion((n, n), rank, seed=0)
        model = DeepMatrix(depth, (n, n))
        init = inits.balanced(model, 1e-2, seed=0)
        t0 = time.perf_counter()
        traj = get_engine("gf").run(problem, model, init, until_loss=1e-10, wall_budget=300)
        sec = time.perf_counter() - t0
        row = {"workload": f"gf depth {depth} {n}x{n} rank {rank} m={problem.m} to 1e-10", "engine": "gf",
               "seconds": sec, "loss": traj.final.loss, "status": traj.status.value, "path": traj.stats.get("path"),
               "steps": traj.stats.get("steps"), "error_estimate": traj.error_estimate}
        if naive:
            nv = naive_lsoda(problem, model, init, 1e-10, naive_budget)
            row.update({"naive": "solve_ivp LSODA, raw factors", "naive_seconds": nv["seconds"],
                        "naive_outcome": nv["outcome"],
                        "ratio": nv["seconds"] / sec if nv["outcome"] in ("reached", "budget") else None,
                        "ratio_is_lower_bound": nv["outcome"] == "budget"})
        rows.append(row)
    return rows


def bench_gf_raw(until_loss: float = 1e-10, wall: float = 120.0) -> list[dict]:
    """``gf`` on its raw-factor path, the workloads whose stiff solve uses a dense complex-step Jacobian of all
    factor entries (issue 12 asks for Jacobian-vector products there): depth-3 10x10 rank-10 completion from an
    unbalanced Gaussian init (std 0.3, 300 unknowns) and CP order 3, dims 5, R = 10 (Gaussian init 0.1 / sqrt(R),
    150 unknowns) on a rank-1 tensor completion with half the entries, each to ``until_loss`` with the
    error-estimate run, at most ``wall`` seconds."""
    from models import inits
    from models.engines import get_engine
    from models.factorizations import CP, DeepMatrix
    from models.generators import random_completion, random_tensor

    rows = []
    problem, _ = random_completion((10, 10), 10, seed=0)  # full rank: s_min stays resolved (no precision stop)
    model = DeepMatrix(3, (10, 10))
    tproblem, _ = random_tensor((5, 5, 5), 1, seed=0)
    tmodel = CP((5, 5, 5), 10)
    cases = [("gf raw depth 3 10x10 rank 10 gaussian 0.3", problem, model, inits.gaussian(model, 0.3, seed=0)),
             ("gf raw CP order 3 dims 5 R=10", tproblem, tmodel, inits.cp_gaussian(tmodel, 0.1 / math.sqrt(10), seed=0))]
    for label, prob, mdl, init in cases:
        t0 = time.perf_counter()
        traj = get_engine("gf", path="raw").run(prob, mdl, init, until_loss=until_loss, wall_budget=wall)
        rows.append({"workload": f"{label} to {until_loss:g}", "engine": "gf", "seconds": time.perf_counter() - t0,
                     "loss": traj.final.loss, "status": traj.status.value, "path": traj.stats.get("path"),
                     "steps": traj.stats.get("steps"), "njev": traj.stats.get("njev"),
                     "error_estimate": traj.error_estimate})
    return rows
