"""The trajectories behind the report's figures, computed by the runner and stored as JSON.

``reports`` never runs dynamics: it plots what this module wrote under ``DIR/figures/data/``. Each figure's data
is one JSON file made from a fixed, named set of runs (:data:`FIGURES`, data rather than code paths); a file is
recomputed only when it is missing or its ``spec`` changed, so re-rendering and ``--resume`` reuse it.

- ``rc20_depths``: the RC20 problem ``[[*, 1], [1, 0]]``, balanced init with det > 0, depths 2-6, gradient flow
  (``gf``) down to loss 1e-12. Stored per point: loss and the engine's error estimates of the loss and of the
  product's entries (``loss_err``, ``product_err``), ``|w11|``, the bound ``|w11| >= (1 - s)^2 / s`` with
  ``s = sqrt(2 loss)`` that det > 0 forces on this problem (loss = half the sum of squared residuals), ``s``,
  ``w11_s`` = |w11| s and its bound ``bound_s`` = (1 - s)^2 (0 where s >= 1: no bound), the singular values of the
  end-to-end matrix with ``sigma2_err`` = 2 product_err + 2 eps sigma_1 (what the float64 SVD of the stored
  product can resolve of sigma_2), the effective rank and ``erank_minus_one`` (accurate where ``erank`` rounds to
  1), and the engine's det sign. The bounds and measures come from :mod:`properties` (``properties.rc20``,
  ``properties.measures``); the figures only draw them.
- ``det_sign``: the det sign the engine recorded (computed without cancellation, never ``np.linalg.det`` of the
  rounded product) along trajectories from balanced (det > 0, det < 0) and unbalanced Gaussian inits, depths 2
  and 3.
- ``rc20_perturbed``: the perturbed problem ``[[*, 1], [1, eps]]`` for several eps, depth 3, down to loss
  ``eps^2`` (1e-12 for eps = 0): below about ``eps^2 / 2`` the flow with det > 0 crawls (|w11| must pass 1/eps).
- ``rc20_gd``, ``rc20_tc_sweep`` and ``rmc21_incremental``: the papers' experiments
  (:mod:`verify.figure_data_experiments`).
- ``cp_norms``: CP component norms over time, gradient descent (``gd``; ``gf`` when gd is unavailable) on a
  random order-3 rank-1 completion problem from a small Gaussian init.
"""

from __future__ import annotations

import fnmatch

import hashlib
import json
import time
from pathlib import Path

import numpy as np

from properties.measures import erank_excess_from_ratio, erank_of_singular_values
from properties.rc20 import s_of_loss, w11_lower_bound, w11_s_lower_bound
from verify import store

WALL_BUDGET = 60.0
#: Bumped when the stored fields change, so that data files of an older layout are recomputed.
DATA_VERSION = 3
EPS = float(np.finfo(float).eps)

FIGURES: dict[str, dict] = {
    "rc20_depths": {
        "runs": [{"label": f"depth {L}", "depth": L, "init": "balanced", "scale": 0.1, "seed": 1, "det": "positive",
                  "eps": 0.0, "engine": "gf", "until_loss": 1e-12, "per_decade": 4} for L in (2, 3, 4, 5, 6)],
    },
    "det_sign": {
        "runs": [{"label": f"depth {L}, {kind} init, det {det}", "depth": L, "init": kind, "scale": 0.3, "seed": s,
                  "det": det, "eps": 0.0, "engine": "gf", "until_loss": 1e-6, "per_decade": 6}
                 for L in (2, 3) for kind, det, s in (("balanced", "positive", 2), ("balanced", "negative", 2),
                                                      ("gaussian", "positive", 3), ("gaussian", "negative", 3))],
    },
    "rc20_perturbed": {
        "runs": [{"label": f"eps = {eps:g}", "depth": 3, "init": "balanced", "scale": 0.1, "seed": 1,
                  "det": "positive", "eps": eps, "engine": "gf", "until_loss": eps ** 2 if eps else 1e-12,
                  "per_decade": 6}
                 for eps in (0.0, 1e-3, 1e-2, 1e-1)],
    },
    "cp_norms": {
        "runs": [{"label": "order 3, dims 4x4x4, 4 components", "kind": "cp", "dims": [4, 4, 4], "rank": 4,
                  "n_observed": 24, "target_rank": 1, "std": 0.1, "seed": 0, "engine": "gd", "fallback": "gf",
                  "steps": 4000, "lr": 0.05, "record_every": 40}],
    },
}


# The experiment figures (rc20_gd, rc20_tc_sweep): specs and runs in verify.figure_data_experiments.
from verify import figure_data_experiments as _experiments  # noqa: E402

FIGURES.update(_experiments.FIGURES)

#: The claims each built-in figure illustrates (``fnmatch`` patterns): a run computes a figure's data only when it
#: selects one of them, so ``verify run 'rc20.thm1.*'`` does not pay for the tensor or ACHL19 experiment runs. A
#: figure not named here (a user's, or a test's reduced spec) is computed by every run.
FIGURE_CLAIMS: dict[str, tuple[str, ...]] = {
    "rc20_depths": ("rc20.thm1.*", "rc20.cor.*", "rc20.ext.*"),
    "det_sign": ("rc20.lemma.det_sign*", "rc20.neg.det_negative", "rc20.neg.unbalanced", "rc20.prop.det_half"),
    "rc20_perturbed": ("rc20.thm2.*",),
    "cp_norms": ("rmc21.*",),
    "rc20_gd": ("rc20.exp.gd_unobserved",),
    "rc20_tc_sweep": ("rc20.exp.tensor_completion",),
    "rmc21_incremental": ("rmc21.exp.incremental",),
    "achl19_completion": ("achl19.exp.depth_low_rank", "achl19.exp.nuclear_not_minimized"),
    "achl19_sv_dynamics": ("achl19.exp.sv_dynamics",),
}


def figures_for(claim_ids) -> list[str]:
    """The figures a run of ``claim_ids`` draws: those whose :data:`FIGURE_CLAIMS` patterns match one of the ids,
    and every figure :data:`FIGURE_CLAIMS` does not name."""
    ids = list(claim_ids)
    return [name for name in FIGURES
            if name not in FIGURE_CLAIMS or any(fnmatch.fnmatchcase(c, pat) for c in ids for pat in FIGURE_CLAIMS[name])]


def spec_hash(spec: dict) -> str:
    return hashlib.sha256(json.dumps({"spec": spec, "data_version": DATA_VERSION},
                                     sort_keys=True).encode()).hexdigest()[:16]


def matrix_run(run: dict) -> dict:
    """One 2x2 run of a figure spec (``FIGURES[name]["runs"][k]``): the points as the figure data stores them."""
    from models import DeepMatrix, get_engine, inits, rc20

    model = DeepMatrix(run["depth"], (2, 2))
    init = inits.by_name(model, run["init"], run["scale"], seed=run["seed"], det=run["det"])
    problem = rc20(1.0, 1.0, run["eps"])
    traj = get_engine(run["engine"]).run(problem, model, init, until_loss=run["until_loss"],
                                         per_decade=run["per_decade"], wall_budget=WALL_BUDGET)
    points = []
    for p in traj.points:
        W = np.asarray(p.product, dtype=float)
        s = np.linalg.svd(W, compute_uv=False)
        w11, r = abs(float(W[0, 0])), s_of_loss(p.loss)
        points.append({
            "t": p.t, "loss": p.loss, "loss_err": p.loss_err, "product_err": p.product_err,
            "w11": w11, "bound": w11_lower_bound(p.loss), "s": r, "w11_s": w11 * r,
            "bound_s": w11_s_lower_bound(p.loss), "sigma": s.tolist(),
            "sigma2_err": 2.0 * p.product_err + 2.0 * EPS * float(s[0]), "erank": erank_of_singular_values(s),
            "erank_minus_one": erank_excess_from_ratio(float(s[1]) / float(s[0])) if s[0] > 0 else None,
            "det_sign": p.det_sign, "norm": float(np.linalg.norm(W)),
        })
    return {"status": traj.status.value, "message": traj.message, "engine": traj.engine,
            "error_estimate": traj.error_estimate, "seconds": traj.seconds, "points": points}


def _cp_run(run: dict) -> dict:
    """GD on CP completion, run in segments of ``record_every`` steps so that every record has its factors.

    GD is a deterministic map, so continuing from each segment's final factors is the same run. Each segment is
    asked for by its flow time ``record_every * lr`` (what ``record_every`` steps of size ``lr`` stand for), which
    every engine stops by: ``gd`` makes exactly ``record_every`` steps of it, and the ``fallback`` engine (used
    when ``gd`` is unavailable) integrates the gradient flow for that time. Positions are GD steps either way.
    """
    from models import CP, component_norms, cp_tensor, inits, random_tensor_completion
    from models.engines import engine_class
    from models.trajectory import Status

    problem, _ = random_tensor_completion(run["dims"], run["n_observed"], rank=run["target_rank"], seed=run["seed"])
    model = CP(tuple(run["dims"]), run["rank"])
    init = inits.cp_gaussian(model, run["std"], seed=run["seed"])
    every = run["record_every"]

    def row(step, factors, loss=None) -> dict:
        factors = list(factors)
        loss = float(problem.loss(cp_tensor(factors))) if loss is None else loss
        return {"t": step, "loss": loss, "norms": sorted((float(x) for x in component_norms(factors)), reverse=True)}

    try:
        engine_name, cls = run["engine"], engine_class(run["engine"])
    except ImportError:
        engine_name, cls = run["fallback"], engine_class(run["fallback"])
    engine = cls(**{k: run[k] for k in ("lr",) if k in cls.options})
    points, status, message, seconds = [row(0, init.factors)], Status.COMPLETED, "", 0.0
    current = init
    for step in range(every, run["steps"] + 1, every):
        traj = engine.run(problem, model, current, t_max=every * run["lr"], wall_budget=WALL_BUDGET)
        seconds += traj.seconds
        if not traj.status.trustworthy or traj.final.factors is None:
            status, message = traj.status, traj.message
            break
        points.append(row(step, traj.final.factors, traj.final.loss))
        current = inits.explicit(model, traj.final.factors, "continued")
    return {"status": status.value, "message": message or status.message, "engine": engine_name,
            "x_label": "step", "error_estimate": None, "seconds": seconds, "points": points}


def compute(name: str) -> dict:
    """The data of figure ``name`` (runs the dynamics)."""
    spec = FIGURES[name]
    start = time.perf_counter()
    runs = []
    for run in spec["runs"]:
        try:
            if spec.get("kind") == "experiment":
                data = _experiments.compute_run(name, run)
            else:
                data = _cp_run(run) if run.get("kind") == "cp" else matrix_run(run)
        except Exception as exc:  # noqa: BLE001 -- a figure that cannot be made is reported, not fatal
            data = {"status": "error", "message": f"{type(exc).__name__}: {exc}", "points": []}
        runs.append({"label": run["label"], "settings": run, **data})
    return {"figure": name, "spec": spec, "spec_hash": spec_hash(spec), "runs": runs,
            "seconds": round(time.perf_counter() - start, 3), **{"versions": store.package_versions(),
                                                                 "git_commit": store.git_commit()}}


def missing(data_dir: str | Path, names=None) -> list[str]:
    """The figures whose data file in ``data_dir`` is missing or was made from another spec."""
    data_dir = Path(data_dir)
    out = []
    for name in FIGURES if names is None else names:
        path = data_dir / f"{name}.json"
        try:
            if store.loads(path.read_text()).get("spec_hash") == spec_hash(FIGURES[name]):
                continue
        except (OSError, ValueError, AttributeError):
            pass
        out.append(name)
    return out


def ensure(data_dir: str | Path, names=None, progress=None, executor=None) -> Path:
    """Compute the figure data missing (or stale) in ``data_dir`` (of ``names``, default every figure), on
    ``executor`` when given."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    todo = missing(data_dir, names)
    if todo and progress is not None:
        progress.note(f"figure data: computing {', '.join(todo)}")
    results = executor.map(compute, todo) if executor is not None else map(compute, todo)
    for name, data in zip(todo, results):
        store.write_json(data_dir / f"{name}.json", data)
    return data_dir
