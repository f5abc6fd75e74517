"""``verify bench``: measure the engines on fixed workloads, next to the naive alternative a user would pick.

Workloads (one run of each; timings are wall-clock seconds on this machine, single process):

- ``gf`` on the 2x2 problem (balanced init, scale 0.1, det > 0, seed 0) at depths 2, 3, 4, 6, 8 down to loss
  1e-12: seconds (including the error-estimate run), loss reached, det sign kept, |w11| * sqrt(2 loss). Naive
  column: ``scipy.integrate.solve_ivp(method="LSODA")`` on the raw factors with the same tolerances and a wall
  budget; it reports the smallest loss it reached while the det sign (product of the factor dets) was still
  right, and where the det flipped.
- ``gf-mp`` on the same problem at depths 2, 3, 4, 6 (``--mp-depth``) towards loss 1e-30 at 40 digits
  (``--mp-digits D``, repeatable: 60 digits aim at loss 1e-30 too, 100 digits and more at loss 1e-60) within
  ``--mp-budget`` seconds per trajectory (default: the engine's targets, 60 s up to 60 digits, 300 s above):
  seconds (main run plus the error-estimate run; ``main_seconds`` alone), Radau stages, loss levels recorded
  per decade (``--mp-per-decade``, default 4: each level is found inside a step by about two stage solves; it
  used to end a step, so 4 per decade cost 421 steps at 60 digits), the loss reached and the
  status (``budget`` when it did not get there), correct digits of w11 (from the engine's error estimate) and
  |w11| * sqrt(2 loss).
- ``gf-mp-raw``: ``gf-mp`` on the raw factors (``path="raw"``, the engine of ``rc20.lemma.det_sign_raw``) at 30
  digits from an exactly balanced start (scale 1e-2) at depths 4 and 8 (``--mp-depth``) towards loss 1e-30 in 45
  s (``--mp-budget``) per trajectory, with its reference run: the loss reached, the status, wall and CPU seconds,
  steps, Jacobians, Newton matrices and iterations.
- ``gf-e2e``: ``gf`` on random low-rank completion (the ACHL19 generator, half the entries observed, seed 0),
  balanced init 1e-2, down to loss 1e-10, including the error-estimate run: depth 3 on 10x10 rank 1, 20x20
  rank 2 and 50x50 rank 2 (the end-to-end path), depth 1 on 50x50 rank 2 (closed form). Naive column (10x10
  only; raw factors of 50x50 need a 7,500-unknown dense LU): LSODA on the raw factors as above.
- ``gf-raw``: ``gf`` on its raw-factor path to loss 1e-10 with the error-estimate run, Gaussian inits: dense
  complex-step Jacobian on depth 3 10x10 rank-10 completion and CP order 3, dims 5, R = 10; dense against
  matrix-free (MINRES on Hessian-vector products) at the crossovers, depth 3 16x14 (616 unknowns) and CP dims 10,
  R = 20 (600); matrix-free beyond the thresholds: depth 3 50x40 rank 2 (5,200 unknowns; naive column: LSODA and
  BDF without a Jacobian, ``--naive-budget`` seconds each), depth 3 100x80 rank 5 (20,800, where a dense
  Jacobian does not fit), CP dims 15, R = 30 (1,350; both solvers, 60 s each, and LSODA). Wall and CPU seconds,
  steps, Jacobians, Hessian-vector products, MINRES iterations (see :func:`verify.bench.gf.bench_gf_raw`; about
  5 minutes on 2 cores).
- ``gd`` at depth 4: trajectory-steps per second at B = 1, 100, 10 000; CP tensor GD (order 4, dims 5, rank 10):
  steps per second at B = 1, 100, 1000. Naive column: a torch autograd GD loop on the same batch. The B = 1 depth-4 row also shows
  the official RC20 DMF trainer's throughput as stated in issue 12 (2,000-2,800 epochs/s on this machine; one
  epoch is one step of one model) and ``ratio_official`` against its top.
- ``gd-dmf``: depth-3 100x100 completion (ACHL19 generator, rank 5, m = 2,000 and 5,000) at B = 1 and 64,
  marginal trajectory-steps per second of ``gd`` and of the torch autograd loop a user would write (SGD on the
  gathered observed entries), and their ratio (see :mod:`verify.bench.scaling`).
- ``dmf-fast``: the same workload with the dense deep-matrix kernel of the ACHL19 experiments
  (:mod:`models.engines.dmf_fast`) against the same autograd loop, on ``--device`` (see
  :mod:`verify.bench.dmf`).

- ``experiments``: the papers' experiment workloads next to the official trainers' times (RC20 GD at depths 3
  and 4 to loss 1e-4; the RC20 tensor runs, 5 seeds batched, to reconstruction error 1e-6; the RMC21 ladders;
  ACHL19 depth-3 completion at the paper's 100x100 m = 2,000 and reduced); the paper-setting ACHL19 and RMC21
  rows also show the official trainer's throughput measured on this machine (``official_epochs_per_s``, one
  torch thread) and ``ratio_official`` (ours in model steps per second over it); see
  ``verify.bench_experiments``. A few minutes on 2 cores.

``--json PATH`` writes every row (and the machine: CPU count, torch threads, versions) as strict JSON; PATH is
checked writable before anything is measured. All parts take about 17 minutes on a 2-core machine (gf-mp
most of it: up to ``--mp-budget`` seconds for each of its four depths, and 45 s for each gf-mp-raw depth;
gf-raw about 5 minutes).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time

import numpy as np

from models.errors import InvalidInput
from models.stored import jsonio
from verify import outdir
from verify.bench.gf import bench_gf, bench_gf_e2e

HELP = ("measure the engines (gf, gf-mp, gd) and the papers' experiments against naive or official "
        "alternatives and write a table (all parts: about 17 minutes on 2 cores; --only PART for less)")

PARTS = ("gf", "gf-mp", "gf-mp-raw", "gd", "gf-e2e", "gf-raw", "gd-dmf", "dmf-fast", "experiments")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = __doc__.split("\n\n", 1)[1]
    p.add_argument("--json", metavar="PATH", default=None, help="write the rows as JSON to PATH (- for stdout)")
    p.add_argument("--only", metavar="PART", action="append", choices=PARTS, default=None,
                   help="run only this part (gf, gf-mp, gf-mp-raw, gd, gf-e2e, gf-raw, gd-dmf, dmf-fast, experiments); "
                        "repeatable "
                        "(default: all)")
    p.add_argument("--naive-budget", type=float, default=20.0, metavar="S",
                   help="wall budget of each naive run in seconds (LSODA; gf-raw also BDF without a Jacobian; "
                        "default 20)")
    p.add_argument("--mp-budget", type=float, default=None, metavar="S",
                   help="wall budget of each gf-mp trajectory in seconds (default 60 up to 60 digits, else 300; "
                        "gf-mp-raw: 45)")
    p.add_argument("--mp-digits", type=int, action="append", default=None, metavar="D",
                   help="gf-mp digits, repeatable (default 40; 60 aims at loss 1e-30, 100+ at loss 1e-60)")
    p.add_argument("--mp-depth", type=int, action="append", default=None, metavar="L",
                   help="gf-mp depth, repeatable (default 2, 3, 4, 6; gf-mp-raw: 4, 8)")
    p.add_argument("--mp-per-decade", type=int, default=4, metavar="K",
                   help="gf-mp loss levels recorded per decade (default 4; each costs about one step)")
    p.add_argument("--device", choices=("cpu", "cuda"), default=None,
                   help="device of the dmf-fast rows (default: cuda when torch sees one, else cpu)")
    p.add_argument("--seconds", type=float, default=1.0, metavar="S",
                   help="minimum measuring time per gd throughput figure (default 1)")


def _mp_target(digits: int) -> tuple[float, float]:
    """``(until_loss, default budget in s)`` of the gf-mp bench at ``digits`` (the issue-12 targets)."""
    return (1e-30, 60.0) if digits <= 60 else (1e-60, 300.0)


def _bench_gf_mp(budget: float | None, digits=None, depths=None, per_decade: int = 4) -> list[dict]:
    from verify.bench.gf_mp import bench_gf_mp as fn

    rows = []
    for d in digits or [40]:
        loss, default_budget = _mp_target(d)
        rows += fn(depths=tuple(depths or (2, 3, 4, 6)), until_loss=loss, digits=d,
                   wall_budget=default_budget if budget is None else budget, per_decade=per_decade)
    return rows


def _bench_gd(seconds: float) -> list[dict]:
    from verify.bench.gd import bench_gd

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
    if args.mp_budget is not None and not (args.mp_budget > 0 and math.isfinite(args.mp_budget)):
        raise InvalidInput(f"--mp-budget must be a positive number of seconds, got {args.mp_budget!r}")
    for d in args.mp_digits or []:
        if not 20 <= d <= 2000:
            raise InvalidInput(f"--mp-digits must be an integer in [20, 2000], got {d}")
    if not 1 <= args.mp_per_decade <= 100:
        raise InvalidInput(f"--mp-per-decade must be an integer in [1, 100], got {args.mp_per_decade}")
    for L in args.mp_depth or []:
        if not 2 <= L <= 8:
            raise InvalidInput(f"--mp-depth must be an integer in [2, 8], got {L}")
    if not (args.seconds > 0 and math.isfinite(args.seconds)):
        raise InvalidInput(f"--seconds must be a positive number, got {args.seconds!r}")
    if args.json is not None:
        outdir.writable_file(args.json, "--json")
    parts = args.only or list(PARTS)
    if args.device is not None and "dmf-fast" in parts:  # before anything is measured: exit 2 without a GPU
        from models.engines import get_engine
        get_engine("gd-dense", device=args.device)  # the engine resolves (and refuses) the device
    out: dict = {"machine": _machine(), "rows": {}}
    start = time.perf_counter()
    if "gf" in parts:
        rows = bench_gf(naive_budget=args.naive_budget)
        out["rows"]["gf"] = rows
        print(_table(rows, ["workload", "seconds", "loss", "status", "det_kept", "steps", "w11_times_s",
                            "naive_seconds", "naive_outcome", "naive_best_loss_det_kept", "naive_loss_at_det_flip",
                            "ratio"]) + "\n", flush=True)
    if "gf-mp" in parts:
        rows = _bench_gf_mp(args.mp_budget, args.mp_digits, args.mp_depth, args.mp_per_decade)
        out["rows"]["gf-mp"] = rows
        cols = ("workload", "depth", "per_decade", "seconds", "main_seconds", "stages", "loss", "status",
                "w11_rel_err", "w11_digits", "w11_times_s")
        print(_table(rows, [c for c in cols if any(c in r for r in rows)])
              + "\n", flush=True)
    if "gf-mp-raw" in parts:
        from verify.bench.gf_mp import bench_gf_mp_raw
        rows = bench_gf_mp_raw(depths=tuple(args.mp_depth or (4, 8)),
                               wall_budget=45.0 if args.mp_budget is None else args.mp_budget)
        out["rows"]["gf-mp-raw"] = rows
        print(_table(rows, ["workload", "depth", "seconds", "cpu_seconds", "main_seconds", "loss", "status", "steps",
                            "njev", "nlu", "newton"]) + "\n", flush=True)
    if "gd" in parts:
        rows = _bench_gd(args.seconds)
        from verify.bench.scaling import official_ratios
        official_ratios(rows, "rc20_dmf", "depth4")
        out["rows"]["gd"] = rows
        print(_table(rows, ["workload", "steps_per_s", "naive_steps_per_s", "ratio", "official_epochs_per_s",
                            "ratio_official", "device"]) + "\n", flush=True)
    if "gd-dmf" in parts:
        from verify.bench.scaling import bench_gd_dmf
        rows = bench_gd_dmf(seconds=args.seconds)
        out["rows"]["gd-dmf"] = rows
        print(_table(rows, ["workload", "steps_per_s", "naive_steps_per_s", "ratio", "device"]) + "\n", flush=True)
    if "dmf-fast" in parts:
        from verify.bench.dmf import COLUMNS as DMF_COLUMNS, bench_dmf_fast
        rows = bench_dmf_fast(seconds=args.seconds, device=args.device)
        out["rows"]["dmf-fast"] = rows
        print(_table(rows, DMF_COLUMNS) + "\n", flush=True)
    if "gf-e2e" in parts:
        rows = bench_gf_e2e(naive_budget=args.naive_budget)
        out["rows"]["gf-e2e"] = rows
        print(_table(rows, ["workload", "path", "seconds", "loss", "status", "steps", "error_estimate",
                            "naive_seconds", "naive_outcome", "ratio"]) + "\n", flush=True)
    if "gf-raw" in parts:
        from verify.bench.gf import bench_gf_raw
        rows = bench_gf_raw(naive_budget=args.naive_budget)
        out["rows"]["gf-raw"] = rows
        print(_table(rows, ["workload", "solver", "seconds", "cpu_seconds", "loss", "status", "steps", "njev", "jvps",
                            "krylov_iters", "error_estimate", "naive_seconds", "naive_outcome",
                            "naive_bdf_seconds", "naive_bdf_outcome"]) + "\n", flush=True)
    if "experiments" in parts:
        from verify.bench_experiments import COLUMNS, bench_experiments

        rows = bench_experiments()
        out["rows"]["experiments"] = rows
        print(_table(rows, COLUMNS) + "\n", flush=True)
    out["seconds"] = time.perf_counter() - start
    if args.json is not None:
        text = json.dumps(jsonio.strict(out, keep_unknown=True), allow_nan=False, indent=1)
        if args.json == "-":
            sys.stdout.write(text + "\n")
        else:
            outdir.write_text(args.json, text + "\n", "--json")
    return 0
