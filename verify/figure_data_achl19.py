"""The data of the ACHL19 experiment figures, in the layout of :mod:`verify.figure_data` (named specs merged into
``figure_data.FIGURES`` through :mod:`verify.figure_data_experiments`); :mod:`reports.figures_achl19` draws them
from the stored JSON only.

- ``achl19_completion``: the reduced completion setting of ``achl19.exp.depth_low_rank`` (30x30 rank 2, Gaussian
  init 1e-3, GroupRMSprop lr 1e-2 to MSE 1e-5, at most 12,000 steps; 2 init seeds per depth, data seed 0) over
  observation counts 150-600: per count and depth the members' reconstruction errors and effective ranks, and the
  minimum-nuclear-norm completion's (SCS, certified gap).
- ``achl19_sv_dynamics``: the reduced run of ``achl19.exp.sv_dynamics`` (20x20 rank 3, m = 230, identity init
  1e-3, GD lr 0.02 to MSE 1e-4, at most 60,000 steps, data seed 0) at depths 2 and 3: the top 5 singular values and the |U^T grad V|
  statistics every 50 steps (at most ``MAX_POINTS`` records kept, evenly spaced).
"""

from __future__ import annotations

import numpy as np

MAX_POINTS = 400
COMPLETION_COUNTS = (150, 200, 240, 300, 400, 600)

FIGURES: dict[str, dict] = {
    "achl19_completion": {
        "kind": "experiment",
        "runs": [{"label": f"{m} observations", "m": m, "data_seed": 0, "init_seed": 0, "seeds": 2}
                 for m in COMPLETION_COUNTS],
    },
    "achl19_sv_dynamics": {
        "kind": "experiment",
        "runs": [{"label": "20x20 rank 3, m = 230", "setting": "reduced", "data_seed": 0}],
    },
}


def _completion_run(run: dict) -> dict:
    from properties import experiments_achl19 as E

    cfg = E.SETTINGS["reduced"]
    problem, target, base, runs = E.run_completion("reduced", "few", run["data_seed"], run["init_seed"],
                                                   run["seeds"], m=int(run["m"]))
    s = E.summary("reduced", "few", problem, target, base, runs)
    statuses = [st for d in s["depths"].values() for st in d["status"]]
    return {"status": "completed" if all(st == "completed" for st in statuses) else "budget",
            "message": ", ".join(sorted(set(statuses))), "engine": "dmf-fast + cvxpy SCS",
            "seconds": sum(d["seconds"] for d in s["depths"].values()) + s["nuclear"]["seconds"],
            "step_rule": "group_rmsprop", "lr": cfg["lr"],
            "points": [{"m": int(run["m"]), "nuclear": s["nuclear"], "target_erank": s["target_erank"],
                        "depths": {L: {"rec": d["rec"], "erank": d["erank"], "steps": d["steps"]}
                                   for L, d in s["depths"].items()}}]}


def _thin(n: int, k: int) -> list[int]:
    if n <= k:
        return list(range(n))
    return sorted({int(round(v)) for v in np.linspace(0, n - 1, k)})


def _dynamics_run(run: dict) -> dict:
    from properties.experiments_achl19_dynamics import SETTINGS, rise_times, run_dynamics

    cfg = SETTINGS[run["setting"]]
    problem, target, runs = run_dynamics(run["setting"], run["data_seed"])
    depths = {}
    for L, r in runs.items():
        keep = _thin(len(r.steps), MAX_POINTS)
        depths[str(L)] = {"steps": [int(r.steps[k]) for k in keep],
                          "svals": [[float(v) for v in r.svals[k, 0]] for k in keep],
                          "loss": [float(r.loss[k, 0]) for k in keep],
                          "diag": [float(r.diag_mean[k, 0]) for k in keep],
                          "offdiag": [float(r.offdiag_mean[k, 0]) for k in keep],
                          "rises": rise_times(r.steps, r.svals[:, 0, :], cfg["rank"])}
    return {"status": "completed" if all(r.status[0] == "completed" for r in runs.values()) else "budget",
            "message": ", ".join(f"depth {L}: {int(r.final_step[0])} steps" for L, r in runs.items()), "engine": "dmf-fast",
            "seconds": sum(r.seconds for r in runs.values()), "step_rule": "constant", "lr": cfg["lr"],
            "points": [{"depths": depths, "rank": cfg["rank"],
                        "target_singular_values": [float(v) for v in
                                                   np.linalg.svd(target, compute_uv=False)[:cfg["rank"]]]}]}


def compute_run(name: str, run: dict) -> dict:
    """The data of one run of ACHL19 figure ``name``."""
    return _completion_run(run) if name == "achl19_completion" else _dynamics_run(run)


__all__ = ["COMPLETION_COUNTS", "FIGURES", "MAX_POINTS", "compute_run"]
