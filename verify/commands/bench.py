"""``verify bench``: measure the engines on fixed workloads, next to the naive alternative a user would pick.

Workloads (one run of each; timings are wall-clock seconds on this machine, single process):

- ``gf`` on the 2x2 problem (balanced init, scale 0.1, det > 0, seed 0) at depths 2, 3, 4, 6, 8 down to loss
  1e-12: seconds (including the error-estimate run), loss reached, det sign kept, |w11| * sqrt(2 loss). Naive
  column: ``scipy.integrate.solve_ivp(method="LSODA")`` on the raw factors with the same tolerances and a wall
  budget; it reports the smallest loss it reached while the det sign (product of the factor dets) was still
  right, and where the det flipped.
- ``gf-mp`` on the same problem at depths 2, 3, 4, 6 towards loss 1e-30 within ``--mp-budget`` seconds per
  trajectory (default 60, the engine's target): seconds, the loss reached and the status (``budget`` when it did
  not get there), correct digits of w11 (from the engine's error estimate) and |w11| * sqrt(2 loss).
- ``gd`` at depth 4: trajectory-steps per second at B = 1, 100, 10 000; CP tensor GD (order 4, dims 5, rank 10):
  steps per second. Naive column: a torch autograd GD loop on the same batch.

- ``experiments``: the papers' experiment workloads next to the official trainers' times (RC20 GD at depths 3
  and 4 to loss 1e-4; the RC20 tensor runs, 5 seeds batched, to reconstruction error 1e-6); see
  ``verify.bench_experiments``. A few minutes on 2 cores.

``--json PATH`` writes every row (and the machine: CPU count, torch threads, versions) as strict JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from models.errors import InvalidInput

HELP = "measure the engines (gf, gf-mp, gd) and the papers' experiments against naive or official alternatives"

PARTS = ("gf", "gf-mp", "gd", "experiments")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = __doc__.split("\n\n", 1)[1]
    p.add_argument("--json", metavar="PATH", default=None, help="write the rows as JSON to PATH (- for stdout)")
    p.add_argument("--only", metavar="PART", action="append", choices=PARTS, default=None,
                   help="run only this part (gf, gf-mp, gd, experiments); repeatable (default: all)")
    p.add_argument("--naive-budget", type=float, default=20.0, metavar="S",
                   help="wall budget of each naive LSODA run in seconds (default 20)")
    p.add_argument("--mp-budget", type=float, default=60.0, metavar="S",
                   help="wall budget of each gf-mp trajectory in seconds (default 60)")
    p.add_argument("--seconds", type=float, default=1.0, metavar="S",
                   help="minimum measuring time per gd throughput figure (default 1)")


# ----------------------------------------------------------------------------------------------------------------
# gf, and the naive LSODA run on the raw factors
# ----------------------------------------------------------------------------------------------------------------
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


def _bench_gf_mp(budget: float) -> list[dict]:
    from models.engines import gf_mp

    fn = getattr(gf_mp, "bench_gf_mp", None)
    if fn is None:
        return [{"workload": "gf-mp", "status": "not measured: models.engines.gf_mp has no bench_gf_mp"}]
    return fn(wall_budget=budget)


def _bench_gd(seconds: float) -> list[dict]:
    from models.engines.gd import bench_gd

    rows = bench_gd(seconds=seconds)
    for r in rows:
        r.setdefault("engine", "gd")
        r.setdefault("naive", "torch autograd GD loop")
    return rows


# ----------------------------------------------------------------------------------------------------------------
def _fmt(v, row=None, col=None) -> str:
    if col == "ratio" and v is not None and row.get("ratio_is_lower_bound"):
        return f">={v:.3g}"
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "NO"
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        return f"{v:.3g}"
    return str(v)


def _table(rows: list[dict], cols: list[str]) -> str:
    cells = [[_fmt(r.get(c), r, c) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    line = lambda vals: "  ".join(v.ljust(w) for v, w in zip(vals, widths)).rstrip()
    return "\n".join([line(cols), line(["-" * w for w in widths])] + [line(r) for r in cells])


def _strict(x):
    if isinstance(x, dict):
        return {k: _strict(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_strict(v) for v in x]
    if isinstance(x, (float, np.floating)):
        v = float(x)
        return v if math.isfinite(v) else ("nan" if math.isnan(v) else ("inf" if v > 0 else "-inf"))
    if isinstance(x, np.integer):
        return int(x)
    return x


def _machine() -> dict:
    import mpmath
    import scipy
    import torch

    return {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.is_available(), "numpy": np.__version__, "scipy": scipy.__version__,
            "mpmath": mpmath.__version__}


def run(args) -> int:
    if not (args.naive_budget > 0 and math.isfinite(args.naive_budget)):
        raise InvalidInput(f"--naive-budget must be a positive number of seconds, got {args.naive_budget!r}")
    if not (args.mp_budget > 0 and math.isfinite(args.mp_budget)):
        raise InvalidInput(f"--mp-budget must be a positive number of seconds, got {args.mp_budget!r}")
    if not (args.seconds > 0 and math.isfinite(args.seconds)):
        raise InvalidInput(f"--seconds must be a positive number, got {args.seconds!r}")
    parts = args.only or list(PARTS)
    out: dict = {"machine": _machine(), "rows": {}}
    start = time.perf_counter()
    if "gf" in parts:
        rows = bench_gf(naive_budget=args.naive_budget)
        out["rows"]["gf"] = rows
        print(_table(rows, ["workload", "seconds", "loss", "status", "det_kept", "steps", "w11_times_s",
                            "naive_seconds", "naive_outcome", "naive_best_loss_det_kept", "naive_loss_at_det_flip",
                            "ratio"]) + "\n", flush=True)
    if "gf-mp" in parts:
        rows = _bench_gf_mp(args.mp_budget)
        out["rows"]["gf-mp"] = rows
        print(_table(rows, [c for c in ("workload", "depth", "seconds", "loss", "status", "w11_rel_err", "w11_digits",
                                        "w11_times_s") if any(c in r for r in rows)]) + "\n", flush=True)
    if "gd" in parts:
        rows = _bench_gd(args.seconds)
        out["rows"]["gd"] = rows
        print(_table(rows, ["workload", "steps_per_s", "naive_steps_per_s", "ratio", "device"]) + "\n", flush=True)
    if "experiments" in parts:
        from verify.bench_experiments import COLUMNS, bench_experiments

        rows = bench_experiments()
        out["rows"]["experiments"] = rows
        print(_table(rows, COLUMNS) + "\n", flush=True)
    out["seconds"] = time.perf_counter() - start
    if args.json is not None:
        text = json.dumps(_strict(out), allow_nan=False, indent=1)
        if args.json == "-":
            sys.stdout.write(text + "\n")
        else:
            try:
                Path(args.json).write_text(text + "\n")
            except OSError as exc:
                raise InvalidInput(f"cannot write {args.json!r}: {exc.strerror or exc}") from None
    return 0
