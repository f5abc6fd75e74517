"""Batched gradient descent for CP tensor completion at the RC20 / RMC21 experiment sizes (order 3-4, dims 8,
R = 512), on dense matrix products.

The CP tensor ``T = sum_r u_1r (x) ... (x) u_Nr`` is formed as one matrix product: the modes are split into two
groups, each group's factors combined into a Khatri-Rao matrix (``K_A`` of shape ``prod(dims_A) x R``, ``K_B``
likewise), and ``T = K_A K_B^T`` (reshaped). The gradient of the loss with respect to ``T`` is nonzero only at the
observed entries (``E``); then ``dK_A = E K_B``, ``dK_B = E^T K_A`` (two more products), and each factor's
gradient is a contraction of ``dK`` with the other factors of its group. Everything is batched over B inits with
``torch.bmm``: one step of the RC20 order-4 run (8^4, R = 512) is three ``64 x 64 x 512`` products per member.

Step rules (recorded in every result):

- ``"constant"``: plain gradient descent, ``u <- u - lr * grad`` (``torch.optim.SGD``).
- ``"group_rmsprop"``: the official codes' ``GroupRMSprop`` (adapted there from the ACHL19 code): one global step
  size per iteration and member, ``lr / (sqrt(v_t / (1 - beta^t)) + eps)`` with ``v_t = beta v_{t-1} + (1 - beta)
  ||grad||^2`` summed over all factors (beta 0.99, eps 1e-6). It is gradient descent with a time-varying step,
  the same path in the small-step limit; from init 1e-3 at order 4, plain GD would need ~1e12 steps to leave the
  origin, so the experiments use this rule, as the official runs do.

The loss is the problem's (``reduction="mean"`` is ``nn.MSELoss``). A member stops when its loss is at most
``until_loss`` or, when a target tensor is given, when its reconstruction error ``||T - T*|| / ||T*||`` is at
most ``until_reconstruction`` (checked every ``check_every`` steps; the step is recorded). A member that stops keeps
the factors of its last iterate and leaves the batch, so the others run at the cost of their own number.

Component norms (RMC21's figure): with ``norms_every = k > 0`` the run also records, at steps 0, k, 2k, ... (and
the last step, and every step at which a member stops), every member's component norms ``||W_r|| = prod_n
||w_r^n||`` (``CPRun.component_norms``, shape (records, B, R), float64, NaN for a member that has stopped;
``CPRun.norm_steps`` the steps), from the iterate before that step's update: a member's last record is its final
iterate.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from ..errors import require

STEP_RULES = ("constant", "group_rmsprop")


@dataclass
class CPRun:
    """Result of :func:`run_cp_gd` for B members: ``final_step``, ``final_loss``, ``reconstruction_error`` (None
    without a target), ``status`` ("completed", "budget", "diverged"), ``tensor`` (B, *dims) final tensors,
    ``factors`` (list of N arrays (B, d_n, R)), ``history`` (rows ``[step, loss_1..B, rec_1..B]`` every
    ``check_every`` steps), ``seconds`` and ``settings`` (step rule, lr, dtype, ...); with ``norms_every``,
    ``norm_steps`` (records,) and ``component_norms`` (records, B, R)."""

    final_step: np.ndarray
    final_loss: np.ndarray
    reconstruction_error: np.ndarray | None
    status: list
    tensor: np.ndarray
    factors: list
    history: np.ndarray
    seconds: float
    settings: dict = field(default_factory=dict)
    norm_steps: np.ndarray | None = None
    component_norms: np.ndarray | None = None


def _split(order: int) -> tuple[list[int], list[int]]:
    half = order // 2
    return list(range(half)), list(range(half, order))


def _khatri_rao(fs):
    """(B, d_1, R), (B, d_2, R), ... -> (B, d_1 d_2 ..., R) with the first mode slowest (row-major)."""
    out = fs[0]
    for f in fs[1:]:
        B, a, R = out.shape
        out = (out[:, :, None, :] * f[:, None, :, :]).reshape(B, a * f.shape[1], R)
    return out


def _group_grads(dK, fs):
    """Gradients of <dK, khatri_rao(fs)> with respect to each factor of the group (dK: (B, prod d, R))."""
    B, _, R = dK.shape
    dims = [f.shape[1] for f in fs]
    G = dK.reshape(B, *dims, R)
    n_modes = len(fs)
    out = []
    for n in range(n_modes):
        acc = G
        # contract the other modes from the last to the first, so that axis positions stay valid
        for k in range(n_modes - 1, -1, -1):
            if k == n:
                continue
            shape = [B] + [1] * acc.dim()
            shape = [B] + [fs[k].shape[1] if a == k else 1 for a in range(acc.dim() - 2)] + [R]
            acc = (acc * fs[k].reshape(shape)).sum(dim=1 + k)
        out.append(acc)
    return out


def run_cp_gd(problem, factors, *, lr: float, steps: int, step_rule: str = "constant", until_loss: float = 0.0,
              target=None, until_reconstruction: float = 0.0, check_every: int = 50, beta: float = 0.99,
              eps: float = 1e-6, dtype: str = "float64", threads: int | None = None,
              norms_every: int = 0) -> CPRun:
    """Gradient descent on CP tensor completion from ``factors``: a list of N arrays (B, d_n, R) (or (d_n, R) for
    one member). See the module docstring for the step rules, stopping and ``norms_every``."""
    import torch

    require(step_rule in STEP_RULES, f"step_rule must be one of {STEP_RULES}, got {step_rule!r}")
    require(dtype in ("float64", "float32"), f"dtype must be float64 or float32, got {dtype!r}")
    lr, steps, check_every = float(lr), int(steps), int(check_every)
    require(lr > 0 and math.isfinite(lr), f"lr must be > 0, got {lr!r}")
    require(steps >= 0 and check_every >= 1, "steps must be >= 0 and check_every >= 1")
    norms_every = int(norms_every)
    require(norms_every >= 0, f"norms_every must be >= 0, got {norms_every!r}")
    dims = tuple(problem.dims)
    N = len(dims)
    tdt = torch.float64 if dtype == "float64" else torch.float32
    fs = [torch.tensor(np.asarray(f), dtype=tdt) for f in factors]
    fs = [f[None] if f.dim() == 2 else f for f in fs]
    require(len(fs) == N and all(f.shape[1] == d for f, d in zip(fs, dims)),
            f"factors must be {N} arrays (B, d_n, R) with d_n = {dims}")
    B, R = fs[0].shape[0], fs[0].shape[2]
    require(all(f.shape[0] == B and f.shape[2] == R for f in fs), "factors must share B and R")
    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    gA, gB = _split(N)
    nA, nB = int(np.prod([dims[k] for k in gA])), int(np.prod([dims[k] for k in gB]))
    flat = torch.tensor(np.ravel_multi_index(tuple(problem.indices.T), dims), dtype=torch.long)
    rows, cols = flat // nB, flat % nB
    y = torch.tensor(problem.targets, dtype=tdt)
    lscale, gscale = float(problem.loss_scale), float(problem.grad_scale)
    tgt = None
    if target is not None:
        tgt = torch.tensor(np.asarray(target).reshape(nA, nB), dtype=torch.float64)
        tnorm = float(torch.linalg.norm(tgt))
    sq = torch.zeros(B, dtype=torch.float64)
    final_step = np.full(B, steps, dtype=np.int64)
    final_loss = np.full(B, np.nan)
    rec = np.full(B, np.nan)
    status = ["budget"] * B
    history = []
    norm_steps, norm_rows = [], []
    t0 = time.perf_counter()
    try:
        live = list(range(B))              # members still running; the work arrays hold only these
        work = [f.clone() for f in fs]
        sq_live = sq.clone()
        last_loss = np.full(B, np.nan)
        last_rec = np.full(B, np.nan)
        for k in range(steps + 1):
            n = len(live)
            KA, KB = _khatri_rao([work[i] for i in gA]), _khatri_rao([work[i] for i in gB])
            T = torch.bmm(KA, KB.transpose(1, 2))
            r = T[:, rows, cols] - y
            loss = lscale * (r * r).sum(dim=1).double()
            check = (k % check_every == 0) or k == steps
            if check and tgt is not None:
                recs = torch.linalg.norm((T.double() - tgt).reshape(n, -1), dim=1) / tnorm
            done_now = []
            for j, b in enumerate(live):
                lb = float(loss[j])
                last_loss[b] = lb
                if check and tgt is not None:
                    last_rec[b] = float(recs[j])
                if not math.isfinite(lb):
                    status[b], final_step[b] = "diverged", k
                    done_now.append(j)
                    continue
                done = lb <= until_loss or (check and tgt is not None and float(recs[j]) <= until_reconstruction)
                if done or k == steps:
                    status[b] = "completed" if done else "budget"
                    final_step[b], final_loss[b] = k, lb
                    if tgt is not None:
                        rec[b] = float(torch.linalg.norm(T[j].double() - tgt) / tnorm)
                        last_rec[b] = rec[b]
                    done_now.append(j)
            if norms_every and (k % norms_every == 0 or k == steps or done_now):
                row = np.full((B, R), np.nan)
                cn = torch.ones(n, R, dtype=torch.float64)
                for w in work:
                    cn = cn * torch.linalg.vector_norm(w.double(), dim=1)
                row[live] = cn.numpy()
                norm_steps.append(k)
                norm_rows.append(row)
            if check:
                history.append([k, *last_loss.tolist(), *(last_rec.tolist() if tgt is not None else [])])
            if done_now:
                for j in done_now:  # the finished members keep the factors of their last iterate
                    for i in range(N):
                        fs[i][live[j]] = work[i][j]
                keep = [j for j in range(n) if j not in set(done_now)]
                if not keep:
                    break
                sel = torch.tensor(keep, dtype=torch.long)
                live = [live[j] for j in keep]
                work = [w[sel] for w in work]
                sq_live = sq_live[sel]
                KA, KB, r = KA[sel], KB[sel], r[sel]
                n = len(live)
            E = torch.zeros(n, nA, nB, dtype=tdt)
            E[:, rows, cols] = gscale * r
            dKA = torch.bmm(E, KB)
            dKB = torch.bmm(E.transpose(1, 2), KA)
            grads = [None] * N
            for i, g in zip(gA, _group_grads(dKA, [work[i] for i in gA])):
                grads[i] = g
            for i, g in zip(gB, _group_grads(dKB, [work[i] for i in gB])):
                grads[i] = g
            if step_rule == "constant":
                step = torch.full((n,), lr, dtype=tdt)
            else:
                gn = sum((g.double() ** 2).sum(dim=(1, 2)) for g in grads)
                sq_live = beta * sq_live + (1 - beta) * gn
                step = (lr / (torch.sqrt(sq_live / (1 - beta ** (k + 1))) + eps)).to(tdt)
            for i in range(N):
                work[i] = work[i] - step[:, None, None] * grads[i]
    finally:
        if threads:
            torch.set_num_threads(old_threads)
    seconds = time.perf_counter() - t0
    Tfin = torch.bmm(_khatri_rao([fs[i] for i in gA]), _khatri_rao([fs[i] for i in gB]).transpose(1, 2))
    return CPRun(final_step, final_loss, rec if tgt is not None else None, status,
                 Tfin.double().numpy().reshape(B, *dims), [f.double().numpy() for f in fs], np.array(history),
                 seconds, {"engine": "cp-fast (torch bmm)", "step_rule": step_rule, "lr": lr, "beta": beta,
                           "eps": eps, "dtype": dtype, "steps": steps, "until_loss": until_loss,
                           "until_reconstruction": until_reconstruction, "check_every": check_every,
                           "reduction": problem.reduction, "B": B, "R": R, "norms_every": norms_every},
                 np.array(norm_steps, dtype=np.int64) if norms_every else None,
                 np.array(norm_rows) if norms_every else None)


__all__ = ["CPRun", "STEP_RULES", "run_cp_gd"]
