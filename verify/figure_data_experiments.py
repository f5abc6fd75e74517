"""The data of the experiment figures (RC20 gradient descent; RC20 tensor completion), in the layout of
:mod:`verify.figure_data`: named specs (:data:`FIGURES`, merged into ``figure_data.FIGURES``) and one compute
function per figure; the report draws them (:mod:`reports.figures_experiments`) from the stored JSON only.

- ``rc20_gd``: the official GD runs of ``rc20.exp.gd_unobserved`` (per-layer Gaussian init std 8e-3 with det > 0,
  lr 3e-3, MSE): the original problem at depths 3 and 4 to loss 1e-4, and ``[[*, -2], [0.5, eps]]`` at depth 3
  for eps in {0.5, 0.1, 0.05, 0.01} to loss 1e-6 (at most 5e6 steps). Stored per point (at most
  ``MAX_POINTS`` per run, evenly spaced in log loss, from the records every 50 steps): step, loss, |w11|, det sign.
- ``rc20_tc_sweep``: the order-3 observation sweep of the RC20 tensor experiment (8^3 rank-1 target of norm 1,
  R = 64, init 1e-3, the claim's step rule (GroupRMSprop lr 1e-2, capped) and stop rule, 5 init seeds batched
  per count): per count the
  5 reconstruction errors, the baseline's error (observed entries, 0 elsewhere) and the rank-1 residuals.
- ``rmc21_incremental``: the ladder of ``rmc21.exp.incremental`` at its order-3 reduction (one seed pair; the
  paper's order-4 setting takes about a minute, too long for every report): per std the ten largest component
  norms every record (``properties.experiments_rmc21.figure_runs``).
"""

from __future__ import annotations

import numpy as np

MAX_POINTS = 300

FIGURES: dict[str, dict] = {
    "rc20_gd": {
        "kind": "experiment",
        "runs": ([{"label": f"depth {L}", "depth": L, "eps": None, "seed": s, "until_loss": 1e-4}
                  for L, s in ((3, 0), (4, 3))]
                 + [{"label": f"eps = {eps:g}", "depth": 3, "eps": eps, "seed": 0, "until_loss": 1e-6}
                    for eps in (0.5, 0.1, 0.05, 0.01)]),
    },
    "rc20_tc_sweep": {
        "kind": "experiment",
        "runs": [{"label": f"{m} observations", "m": m, "data_seed": 0, "init_seed": 0}
                 for m in (50, 100, 200, 300, 400, 511)],
    },
    "rmc21_incremental": {
        "kind": "experiment",
        "runs": [{"label": "order 3, 10^3, rank-3 target", "setting": "order3", "data_seed": 3000, "init_seed": 2458}],
    },
}


def thin(losses: np.ndarray, n: int) -> list[int]:
    """At most ``n`` record indices evenly spaced in log loss (first and last kept)."""
    if len(losses) <= n:
        return list(range(len(losses)))
    logs = np.log10(np.maximum(losses, 1e-300))
    targets = np.linspace(logs[0], logs[-1], n)
    keep = {0, len(losses) - 1}
    for t in targets:
        keep.add(int(np.argmin(np.abs(logs - t))))
    return sorted(keep)


def _gd_run(run: dict) -> dict:
    from properties.experiments_rc20_gd import run_official_gd

    problem, model, init, res = run_official_gd(run["depth"], run["seed"], run["eps"], until_loss=run["until_loss"])
    m = res.member(0)
    points = [{"step": int(m["step"][k]), "loss": float(m["loss"][k]), "w11": abs(float(m["product"][k, 0, 0])),
               "det_sign": int(m["det_sign"][k])} for k in thin(m["loss"], MAX_POINTS)]
    return {"status": res.status[0], "message": f"{int(res.final_step[0])} steps", "engine": "gd-small",
            "seconds": res.seconds, "step_rule": res.settings["step_rule"], "lr": res.settings["lr"],
            "points": points}


def _tc_run(run: dict) -> dict:
    from properties.experiments_rc20_tc import baseline_error, rank1_residual, run_setting

    problem, target, res = run_setting("order3", run["m"], run["data_seed"], run["init_seed"])
    return {"status": "completed" if all(s == "completed" for s in res.status) else "budget",
            "message": ", ".join(res.status), "engine": "cp-fast", "seconds": res.seconds,
            "step_rule": res.settings["step_rule"], "lr": res.settings["lr"],
            "points": [{"m": run["m"], "errors": [float(v) for v in res.reconstruction_error],
                        "baseline": baseline_error(problem, target),
                        "rank1_residuals": [rank1_residual(T) for T in res.tensor],
                        "steps": [int(s) for s in res.final_step]}]}


def _rmc21_run(run: dict) -> dict:
    from properties.experiments_rmc21 import figure_runs

    ladder = figure_runs(run["setting"], run["data_seed"], run["init_seed"])
    return {"status": "completed" if all(r["status"] == "completed" for r in ladder) else "budget",
            "message": ", ".join(f"std {r['std']:g}: {r['status']}" for r in ladder), "engine": "cp-fast",
            "seconds": sum(r["seconds"] for r in ladder), "points": ladder}


def compute_run(name: str, run: dict) -> dict:
    """The data of one run of experiment figure ``name``."""
    if name == "rmc21_incremental":
        return _rmc21_run(run)
    if name in _achl19.FIGURES:
        return _achl19.compute_run(name, run)
    return _gd_run(run) if name == "rc20_gd" else _tc_run(run)


# The ACHL19 experiment figures (achl19_completion, achl19_sv_dynamics): specs and runs in verify.figure_data_achl19.
from verify import figure_data_achl19 as _achl19  # noqa: E402

FIGURES.update(_achl19.FIGURES)


__all__ = ["FIGURES", "MAX_POINTS", "compute_run"]
