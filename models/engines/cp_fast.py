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
- ``"group_rmsprop_capped"``: GroupRMSprop whose step size never exceeds the curvature cap
  ``1 / (grad_scale N max_n sum_r prod_{k != n} ||w_r^k||^2)``. Why: GroupRMSprop's step size ``lr / sqrt(v_t)``
  grows without bound as the gradient collapses at a zero-loss minimum, so past some point it exceeds ``2 /
  lambda_max`` of the Hessian and the iterates bounce at a loss floor set by lr (measured at 8^3: members that
  reached 1e-13 relative came back to 1e-4). The cap is a bound on ``1 / lambda_max`` there: at zero residual the
  Hessian is the Gauss-Newton matrix ``grad_scale J^T J`` (``J`` the Jacobian of the observed entries); the
  observed entries' ``J^T J`` is at most the full tensor's; that one is at most ``N`` times its largest
  mode-block, and the block of mode ``n`` is ``I_{d_n} (x) G_n`` with ``G_n[r, s] = prod_{k != n} <w_r^k,
  w_s^k>``, whose largest eigenvalue is at most its trace ``sum_r prod_{k != n} ||w_r^k||^2``. So near a
  zero-loss minimum the capped step is plain gradient descent with a step below ``1 / lambda_max`` (stable,
  linear convergence), while near the origin (the cap ~ 1 / init^{2(N-1)}, astronomically large) the rule is
  GroupRMSprop and crosses the plateaus as it does. The cap costs N column norms per step.

Arithmetic (``dtype``): "float64"; "float32" (the official order-4 runs); "float32-f64": the products (Khatri-Rao
matrices, the tensor, the gradients) in float32 and the factors kept and updated in float64. Why: near a minimum a
float32 update ``-step * grad`` smaller than half a float32 ulp of a factor entry is lost, and with a stable step
the iterates stall there (measured, RC20 order 4 with ``group_rmsprop_capped``: every member stalled at relative
training MSE 2.9e-12, reconstruction error 2.8e-6 in float32; 6e-15 .. 1e-14 and 1.2e-7 .. 1.5e-7 with float64
factors, at the same cost per step).

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

STEP_RULES = ("constant", "group_rmsprop", "group_rmsprop_capped")
#: "float32-f64": float32 products (the Khatri-Rao matrices, the tensor, the gradients) with the factors kept and
#: updated in float64 (module docstring)
DTYPES = ("float64", "float32", "float32-f64")


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


def curvature_cap(factors, grad_scale: float):
    """The step-size cap of ``group_rmsprop_capped`` per member (float64, shape (B,)): ``1 / (grad_scale N max_n
    sum_r prod_{k != n} ||w_r^k||^2)`` for factors (B, d_n, R) (module docstring: a bound on ``1 / lambda_max``
    of the Gauss-Newton Hessian)."""
    import torch

    sq = [(f.double() ** 2).sum(dim=1) for f in factors]  # (B, R) squared column norms per mode
    N = len(sq)
    traces = []
    for n in range(N):
        acc = torch.ones_like(sq[0])
        for k in range(N):
            if k != n:
                acc = acc * sq[k]
        traces.append(acc.sum(dim=1))
    return 1.0 / (float(grad_scale) * N * torch.stack(traces).amax(dim=0))


def run_cp_gd(problem, factors, *, lr: float, steps: int, step_rule: str = "constant", until_loss: float = 0.0,
              target=None, until_reconstruction: float = 0.0, check_every: int = 50, beta: float = 0.99,
              eps: float = 1e-6, dtype: str = "float64", threads: int | None = None,
              norms_every: int = 0) -> CPRun:
    """Gradient descent on CP tensor completion from ``factors``: a list of N arrays (B, d_n, R) (or (d_n, R) for
    one member). See the module docstring for the step rules, stopping and ``norms_every``."""
    import torch

    require(step_rule in STEP_RULES, f"step_rule must be one of {STEP_RULES}, got {step_rule!r}")
    require(dtype in DTYPES, f"dtype must be one of {DTYPES}, got {dtype!r}")
    lr, steps, check_every = float(lr), int(steps), int(check_every)
    require(lr > 0 and math.isfinite(lr), f"lr must be > 0, got {lr!r}")
    require(steps >= 0 and check_every >= 1, "steps must be >= 0 and check_every >= 1")
    norms_every = int(norms_every)
    require(norms_every >= 0, f"norms_every must be >= 0, got {norms_every!r}")
    dims = tuple(problem.dims)
    N = len(dims)
    tdt = torch.float64 if dtype == "float64" else torch.float32   # the products' arithmetic
    mdt = torch.float32 if dtype == "float32" else torch.float64   # the factors kept and updated
    fs = [torch.tensor(np.asarray(f), dtype=mdt) for f in factors]
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
            cw = work if mdt == tdt else [w.to(tdt) for w in work]
            KA, KB = _khatri_rao([cw[i] for i in gA]), _khatri_rao([cw[i] for i in gB])
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
                cw = [w[sel] for w in cw] if mdt != tdt else work
                sq_live = sq_live[sel]
                KA, KB, r = KA[sel], KB[sel], r[sel]
                n = len(live)
            E = torch.zeros(n, nA, nB, dtype=tdt)
            E[:, rows, cols] = gscale * r
            dKA = torch.bmm(E, KB)
            dKB = torch.bmm(E.transpose(1, 2), KA)
            grads = [None] * N
            for i, g in zip(gA, _group_grads(dKA, [cw[i] for i in gA])):
                grads[i] = g.to(mdt)
            for i, g in zip(gB, _group_grads(dKB, [cw[i] for i in gB])):
                grads[i] = g.to(mdt)
            if step_rule == "constant":
                step = torch.full((n,), lr, dtype=mdt)
            else:
                gn = sum((g.double() ** 2).sum(dim=(1, 2)) for g in grads)
                sq_live = beta * sq_live + (1 - beta) * gn
                step = lr / (torch.sqrt(sq_live / (1 - beta ** (k + 1))) + eps)
                if step_rule == "group_rmsprop_capped":
                    step = torch.minimum(step, curvature_cap(work, gscale))
                step = step.to(mdt)
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


__all__ = ["CPRun", "DTYPES", "STEP_RULES", "curvature_cap", "run_cp_gd"]
