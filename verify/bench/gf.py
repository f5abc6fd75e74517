"""The ``gf``, ``gf-e2e`` and ``gf-raw`` rows of ``verify bench`` and their naive column: ``solve_ivp(LSODA)`` (for
``gf-raw`` also ``BDF`` without a Jacobian) on the raw factors, what a user would write first (moved here from
:mod:`verify.commands.bench`)."""

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


def naive_lsoda(problem, model, init, until_loss: float, budget: float, rtol: float = 1e-10,
                method: str = "LSODA") -> dict:
    """``solve_ivp(method)`` (default LSODA; no Jacobian given) on the flattened raw factors (what a user would
    write first), in plain time, with the gradient of :class:`models.engines.gf.RawField` (the same as gf's).

    Stops at ``until_loss``, at the wall ``budget`` or when the solver gives up. Reports the smallest loss reached
    while the det sign (product of factor dets; tracked for square factors only) equals the initial one, the loss
    where it first flipped, and wall and CPU seconds."""
    from scipy.integrate import solve_ivp

    from models.engines.gf import RawField
    from models.factorizations import CP, cp_tensor, product

    raw = RawField(problem, model, init.factors)
    square = all(len(s) == 2 and s[0] == s[1] for s in raw.shapes) and not isinstance(model, CP)

    def loss_of(fs):
        return float(problem.loss(cp_tensor(fs) if isinstance(model, CP) else product(fs)))

    def sign(fs):
        return int(np.prod([np.sign(np.linalg.det(F)) for F in fs])) if square else 1

    y0 = raw.flatten(init.factors)
    sign0 = sign(raw.unflatten(y0))
    state = {"best": math.inf, "flip": None, "start": time.perf_counter(), "reached": False}
    cpu0 = time.process_time()

    def fun(t, y):
        return -raw.grad(y)

    def event(t, y):
        fs = raw.unflatten(y)
        loss = loss_of(fs)
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
        res = solve_ivp(fun, (0.0, 1e30), y0, method=method, rtol=rtol, atol=1e-14 * float(np.max(np.abs(y0))),
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
    return {"seconds": seconds, "cpu_seconds": time.process_time() - cpu0, "best_loss_det_kept": state["best"],
            "loss_at_det_flip": state["flip"], "outcome": outcome, "nfev": int(res.nfev)}


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


def bench_gf_raw(until_loss: float = 1e-10, wall: float = 120.0, naive_budget: float = 20.0,
                 large: bool = True) -> list[dict]:
    """``gf`` on its raw-factor path, each run to ``until_loss`` with the error-estimate run, at most ``wall``
    seconds (60 s for the CP pair at 1,350 unknowns), on Gaussian (unbalanced) inits; every row reports wall and
    CPU seconds, steps, Jacobians (dense) or frozen operators, Hessian-vector products and MINRES iterations
    (Krylov), main run and error-estimate run together:

    - below the thresholds (dense): depth-3 10x10 rank-10 completion (std 0.3, 300 unknowns) and CP order 3,
      dims 5, R = 10 (std 0.1 / sqrt(R), 150 unknowns) on a rank-1 tensor completion with half the entries;
    - dense against Krylov at the crossovers: depth 3 on 16x14 rank-2 completion (616 unknowns) and CP order 3,
      dims 10, R = 20 (600), each with both solvers;
    - ``large``: beyond the thresholds. Depth 3 on 50x40 rank-2 completion (5,200 unknowns; the dense path's
      complex Jacobian batch alone is 430 MB) with the naive column (``solve_ivp`` LSODA and BDF without a Jacobian on
      the raw factors, same rtol, ``naive_budget`` seconds each), depth 3 on 100x80 rank-5 completion (20,800
      unknowns; 6.9 GB dense), and CP order 3, dims 15, R = 30 (1,350 unknowns) with both solvers and LSODA.

    The new matrix workloads are rectangular: on square ones the raw path's det-sign precision stop ends the run
    (``precision_lost``) where ``s_min / s_max`` of ``W`` passes ``1e3 eps`` or the det changes sign from below
    ``sqrt(1e3 eps)``, and whether a run stops there can depend on its tolerance (15x15 rank 15: the rtol-1e-9
    error-estimate run of the dense solver stopped there, the Krylov one did not), which would compare stops
    rather than solvers.
    """
    from models import inits
    from models.engines import get_engine
    from models.factorizations import CP, DeepMatrix
    from models.generators import random_completion, random_tensor

    def dmf(shape, rank, std=0.3):
        problem, _ = random_completion(shape, rank, seed=0)
        model = DeepMatrix(3, shape)
        return problem, model, inits.gaussian(model, std, seed=0)

    def cp(d, R):
        problem, _ = random_tensor((d, d, d), 1, seed=0)
        model = CP((d, d, d), R)
        return problem, model, inits.cp_gaussian(model, 0.1 / math.sqrt(R), seed=0)

    # (label, setting, gf's raw_solver option ("auto": its size rule), wall, naive methods)
    cases = [("depth 3 10x10 rank 10", dmf((10, 10), 10), "auto", wall, ()),
             ("CP order 3 dims 5 R=10", cp(5, 10), "auto", wall, ()),
             ("depth 3 16x14 rank 2", dmf((16, 14), 2), "dense", wall, ()),
             ("depth 3 16x14 rank 2", dmf((16, 14), 2), "krylov", wall, ()),
             ("CP order 3 dims 10 R=20", cp(10, 20), "dense", wall, ()),
             ("CP order 3 dims 10 R=20", cp(10, 20), "krylov", wall, ())]
    if large:
        cases += [("depth 3 50x40 rank 2", dmf((50, 40), 2), "auto", wall, ("LSODA", "BDF")),
                  ("depth 3 100x80 rank 5", dmf((100, 80), 5), "auto", wall, ()),
                  ("CP order 3 dims 15 R=30", cp(15, 30), "dense", 60.0, ()),
                  ("CP order 3 dims 15 R=30", cp(15, 30), "krylov", 60.0, ("LSODA",))]
    rows = []
    for label, (prob, mdl, init), solver, limit, naive in cases:
        n = sum(int(np.size(F)) for F in init.factors)
        t0, c0 = time.perf_counter(), time.process_time()
        traj = get_engine("gf", path="raw", raw_solver=solver).run(prob, mdl, init, until_loss=until_loss,
                                                                   wall_budget=limit)
        sec, cpu = time.perf_counter() - t0, time.process_time() - c0
        st, comp = traj.stats, traj.stats.get("error_run", {})

        def both(key):
            vals = [d.get(key) for d in (st, comp) if d.get(key) is not None]
            return sum(vals) if vals else None

        row = {"workload": f"gf raw {label} ({n} unknowns) to {until_loss:g}", "engine": "gf",
               "solver": st.get("raw_solver", "dense"), "unknowns": n, "seconds": sec, "cpu_seconds": cpu,
               "loss": traj.final.loss, "status": traj.status.value, "path": st.get("path"),
               "steps": both("steps"), "njev": both("njev") or both("jacobians"), "nlu": both("nlu"),
               "jvps": both("jvps"), "krylov_iters": both("krylov_iters"),
               "krylov_max_iters": max(st.get("krylov_max_iters", 0), comp.get("krylov_max_iters", 0)) or None,
               "krylov_failures": both("krylov_failures"), "error_estimate": traj.error_estimate}
        for method in naive:
            nv = naive_lsoda(prob, mdl, init, until_loss, naive_budget, method=method)
            key = "naive" if method == "LSODA" else f"naive_{method.lower()}"
            row.update({key: f"solve_ivp {method}, raw factors, no Jacobian", f"{key}_seconds": nv["seconds"],
                        f"{key}_cpu_seconds": nv["cpu_seconds"], f"{key}_outcome": nv["outcome"],
                        f"{key}_best_loss": nv["best_loss_det_kept"], f"{key}_nfev": nv["nfev"]})
            if method == "LSODA":  # a ratio only where gf reached the target (else both ran out of time)
                ok = traj.final.loss <= until_loss and nv["outcome"] in ("reached", "budget")
                row.update({"ratio": nv["seconds"] / sec if ok else None,
                            "ratio_is_lower_bound": ok and nv["outcome"] == "budget"})
        rows.append(row)
    return rows
