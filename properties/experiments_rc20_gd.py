"""The gradient-descent experiment of Razin & Cohen 2020 at the official setting: ``rc20.exp.gd_unobserved``.

The official runner (their ``dmf_experiment_runner.py``) trains a depth-L 2x2 factorization with full-batch
``torch.optim.SGD`` on ``nn.MSELoss`` over the three observed entries (the mean of the squared residuals: this
suite's ``reduction="mean"``), per-layer Gaussian init with std 8e-3 resampled until ``det W(0) > 0``, learning
rate 3e-3 (the issue's setting; the runner's default is 5e-3), loss logged every 50 epochs, stop at loss 1e-4 or
after 5e6 epochs; its figures draw ``|w11|`` against the loss. Here the same run is the compiled float64 loop of
:mod:`models.engines.gd_small` (engine ``gd-small``; one depth-3 run to loss 1e-4, ~3.2M steps, takes about a second), compared with
float64 gradient flow (:mod:`models.engines.gf`) from the *same* init at the same losses.

Problems: the original ``[[*, 1], [1, 0]]`` and the perturbed ``[[*, -2], [0.5, eps]]`` with eps in
{0.5, 0.1, 0.05, 0.01} (the official perturbed datasets). Depths 3 and 4 (the paper's figures show depth 2
plateauing far below: an unbalanced init at depth 2 is not covered by the claim).
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st

from models import inits
from models.engines import get_engine
from models.errors import EngineFailure
from models.factorizations import DeepMatrix
from models.problems import rc20

from . import strategies as S
from ._common import combine, point_outcome
from .api import claim

SRC = "Razin & Cohen 2020 (NeurIPS), arXiv 2005.06398"

#: the official setting (catalog RC20-Exp-MF)
INIT_STD = 8e-3
LR = 3e-3
RECORD_EVERY = 50
MAX_STEPS = 5_000_000
UNTIL_LOSS = 1e-4
PERTURBED_Z = (-2.0, 0.5)
EPSILONS = (0.5, 0.1, 0.05, 0.01)
#: eps > 0 runs long enough to show the saturation: to loss 1e-6 (eps >= 0.05; within the 5e6-step budget)
SATURATION_UNTIL = 1e-6
#: stated tolerances: GD tracks gradient flow from the same init within 2% + 0.02 in |w11| at the same loss (the
#: O(lr) gap of GD from the flow is largest at the escape from the plateau, where |w11| is still small); |w11| never
#: exceeds 1.1 |z z'|/|eps|, and ends within 10% of it when the run reaches loss 1e-6 (eps >= 0.05)
TRACK_RTOL = 0.02
TRACK_ATOL = 0.02
CEILING = 1.1
SATURATION_RTOL = 0.10


def problem_for(eps):
    """The official problem: ``eps`` None for ``[[*, 1], [1, 0]]``, else ``[[*, -2], [0.5, eps]]`` (MSE loss)."""
    if eps is None:
        return rc20(reduction="mean")
    return rc20(PERTURBED_Z[0], PERTURBED_Z[1], float(eps), reduction="mean")


def official_init(depth: int, seed: int):
    """Per-layer Gaussian init, std 8e-3, det W(0) > 0 (the suite's :func:`models.inits.gaussian` makes the det
    positive by negating a row of the last layer, which keeps the law, instead of resampling)."""
    model = DeepMatrix(int(depth), (2, 2))
    return model, inits.gaussian(model, INIT_STD, seed=int(seed), det="positive")


#: inits are resampled (seed, seed + 1, ...; at most this many) until gradient flow from them leaves the initial
#: plateau (loss 0.1) by t = ESCAPE_FRACTION * MAX_STEPS * LR: at depth 4 the plateau lasts 0.8M to 10M steps of
#: lr 3e-3 depending on the init (measured over 12 seeds), so about a third of the inits would not leave it
#: within the official 5e6 epochs.
ESCAPE_TRIES = 20
ESCAPE_FRACTION = 0.5


def escaping_seed(depth: int, seed: int, eps=None) -> int:
    """The first of ``seed, seed + 1, ...`` whose official init leaves the plateau in time (see ESCAPE_TRIES); a
    selection only (gf at rtol 1e-8 without an error run), the evidence comes from the runs that follow."""
    gf = get_engine("gf", rtol=1e-8, loose=0)
    problem = problem_for(eps)
    t_max = ESCAPE_FRACTION * MAX_STEPS * LR
    for s in range(int(seed), int(seed) + ESCAPE_TRIES):
        model, init = official_init(depth, s)
        traj = gf.run(problem, model, init, until_loss=0.1, t_max=t_max, per_decade=1, wall_budget=30.0)
        if traj.points[-1].loss <= 0.1:
            return s
    raise EngineFailure(f"none of seeds {seed}..{seed + ESCAPE_TRIES - 1} leaves the plateau by t = {t_max:g}")


def run_official_gd(depth: int, seed: int, eps=None, until_loss: float | None = None):
    """The official GD run (compiled loop) from the init of ``seed``: ``(problem, model, init, SmallRun)``."""
    problem = problem_for(eps)
    model, init = official_init(depth, seed)
    until = until_loss if until_loss is not None else (UNTIL_LOSS if eps is None or eps < 0.05 else SATURATION_UNTIL)
    batch = get_engine("gd-small", lr=LR).run(problem, model, [init], steps=MAX_STEPS, until_loss=until,
                                               record_every=RECORD_EVERY)
    return problem, model, init, batch.kernel_run


def _interp_w11(losses, w11, at):
    """|w11| of GD at loss ``at``: linear interpolation in log loss between the two records around it, with the
    difference from the quadratic through three neighbouring records as its error; None when ``at`` is outside
    the recorded losses."""
    i = np.flatnonzero(losses <= at)
    if i.size == 0 or i[0] == 0:
        return None
    k = int(i[0])
    x = -math.log(at)
    xs = [-math.log(losses[j]) for j in (k - 1, k)]
    ws = [abs(float(w11[j])) for j in (k - 1, k)]
    f = 0.0 if xs[1] == xs[0] else (x - xs[0]) / (xs[1] - xs[0])
    lin = ws[0] + f * (ws[1] - ws[0])
    j3 = k + 1 if k + 1 < len(losses) else k - 2
    if j3 < 0 or not losses[j3] > 0:
        return lin, abs(ws[1] - ws[0])
    x3, w3 = -math.log(losses[j3]), abs(float(w11[j3]))
    pts = [(xs[0], ws[0]), (xs[1], ws[1]), (x3, w3)]
    if len({p[0] for p in pts}) < 3:
        return lin, abs(ws[1] - ws[0])
    quad = 0.0
    for a, (xa, wa) in enumerate(pts):
        term = wa
        for b, (xb, _) in enumerate(pts):
            if a != b:
                term *= (x - xb) / (xa - xb)
        quad += term
    return lin, abs(quad - lin) + 1e-12 * abs(lin)


def _gf_reference(problem, model, init, until: float):
    """Gradient flow from the same init to ``until``, recorded 4 times per decade. A run that loses float64
    precision (no error estimate) is rerun to twice the loss it reached, so every point kept has an estimate."""
    gf = get_engine("gf", rtol=1e-10)
    traj = gf.run(problem, model, init, until_loss=until, per_decade=4, wall_budget=60.0)
    if not traj.status.trustworthy:
        reached = min(p.loss for p in traj.points)
        traj = gf.run(problem, model, init, until_loss=2.0 * reached, per_decade=4, wall_budget=60.0)
        if not traj.status.trustworthy:
            raise EngineFailure(f"no trustworthy gradient-flow reference: {traj.status.value}: {traj.message}")
    return traj


def _gd_strategy(dropped):
    return S.fixed_dicts(depth=st.sampled_from([3, 4]), seed=st.integers(0, 10_000),
                         eps=st.sampled_from([None, *EPSILONS]))


@claim("rc20.exp.gd_unobserved",
       title="GD at the official RC20 setting: |w11| grows as the loss falls (saturating near |z z'|/|eps|), "
             "as gradient flow from the same init",
       source=SRC + ", the matrix-completion experiment (official runner: depth 3, per-layer Gaussian init std "
                    "8e-3, det > 0, lr 3e-3, MSE loss, stop at 1e-4); catalog RC20-Exp-MF",
       statement="on [[*, 1], [1, 0]] and on [[*, -2], [0.5, eps]] (eps in {0.5, 0.1, 0.05, 0.01}), depth 3 or 4, "
                 "full-batch GD with lr 3e-3 from a per-layer Gaussian init (std 8e-3, det W(0) > 0; resampled "
                 "until gradient flow from it reaches loss 0.1 by t = 7500) to MSE loss "
                 "1e-4 (1e-6 for eps >= 0.05; at most 5e6 steps): (a) GD's |w11| is within 2% + 0.02 of gradient "
                 "flow's "
                 "from the same init at every recorded loss in [final, 0.1]; (b) eps = 0: |w11| increases over each "
                 "decade of loss from 0.1 down to the final loss; (c) eps > 0: |w11| <= 1.1 |z z'|/|eps| all along, "
                 "and within 10% of |z z'|/|eps| when the run reaches loss 1e-6",
       kind="trajectory", strategy=_gd_strategy, cost=4.0)
def gd_unobserved(inputs, dropped):
    """Compiled float64 GD (models.engines.gd_small) recording every 50 steps; float64 gradient flow (gf) from the
    same init to the loss GD reached. Margins, per point: (a) 0.02 |w11_gf| + 0.02 - |w11_gd - w11_gf| at each gf
    record (GD interpolated linearly in log loss; error: gf's product_err plus the gap between the linear and the
    quadratic interpolation); (b) the relative increase of |w11| between consecutive decades of loss (error 1e-9,
    float64 rounding of the recorded entries); (c) 1.1 |zz'|/|eps| - |w11| at every record, and 0.1 - | |w11| /
    (|zz'|/|eps|) - 1 | at the end of runs that reach 1e-6. The detail reports GD's det sign at the start and end,
    the steps taken and the seconds."""
    depth, eps = int(inputs["depth"]), inputs["eps"]
    seed = escaping_seed(depth, int(inputs["seed"]), eps)
    problem, model, init, res = run_official_gd(depth, seed, eps)
    mem = res.member(0)
    losses, w11 = mem["loss"], mem["product"][:, 0, 0]
    final_loss = float(res.final_loss[0])
    if not np.all(np.isfinite(losses)) or res.status[0] == "diverged":
        raise EngineFailure(f"GD diverged at step {int(res.final_step[0])}")
    outs = []
    # (a) against gradient flow from the same init
    traj = _gf_reference(problem, model, init, max(final_loss, 1e-12) * 1.0001)
    for p in traj.points:
        if not (final_loss <= p.loss <= 0.1):
            continue
        got = _interp_w11(losses, w11, p.loss)
        if got is None:
            continue
        v, ierr = got
        ref = abs(float(p.product[0, 0]))
        tol = TRACK_RTOL * ref + TRACK_ATOL
        outs.append(point_outcome(tol - abs(v - ref), p.product_err * (1 + TRACK_RTOL) + ierr, tol,
                                  part="GD tracks GF", loss=p.loss, value=v, gf_w11=ref, tolerance=tol))
    if not any(o.detail.get("part") == "GD tracks GF" for o in outs):
        raise EngineFailure("no gradient-flow point to compare with in [final loss, 0.1]")
    if eps is None:
        # (b) growth over each decade of loss
        levels = [10.0 ** -k for k in range(1, 12) if 10.0 ** -k >= final_loss] + [final_loss]
        vals = []
        for lv in levels:
            i = int(np.flatnonzero(losses <= lv)[0])
            vals.append((float(losses[i]), abs(float(w11[i]))))
        for (l0, a), (l1, b) in zip(vals[:-1], vals[1:]):
            if l1 >= l0:
                continue
            outs.append(point_outcome((b - a) / a, 1e-9, 1.0, part="|w11| grows", loss=l1, value=b, previous=a))
    else:
        target = abs(PERTURBED_Z[0] * PERTURBED_Z[1]) / abs(float(eps))
        cap = CEILING * target
        for k in range(0, len(losses), max(1, len(losses) // 400)):
            outs.append(point_outcome(cap - abs(float(w11[k])), 1e-9 * cap, cap, part="|w11| <= 1.1 |zz'|/|eps|",
                                      loss=float(losses[k]), value=abs(float(w11[k])), bound=cap))
        if final_loss <= SATURATION_UNTIL:
            r = abs(float(res.final_product[0][0, 0])) / target
            outs.append(point_outcome(SATURATION_RTOL - abs(r - 1.0), 1e-9, SATURATION_RTOL,
                                      part="saturates near |zz'|/|eps|", loss=final_loss, ratio=r))
    det0 = int(mem["det_sign"][0])
    return combine(outs, engine="gd-small float64 + gf", steps=int(res.final_step[0]), gd_status=res.status[0],
                   final_loss=final_loss, final_w11=float(res.final_product[0][0, 0]),
                   det_sign_start=det0, det_sign_end=int(res.final_det_sign[0]),
                   det_sign_flips=int(np.sum(np.diff(mem["det_sign"].astype(int)) != 0)),
                   gd_seconds=round(res.seconds, 3), init_seed=seed, step_rule="constant lr 3e-3",
                   reduction="mean (MSELoss)")


__all__ = ["EPSILONS", "INIT_STD", "LR", "MAX_STEPS", "RECORD_EVERY", "UNTIL_LOSS", "official_init", "problem_for",
           "run_official_gd"]
