"""The naive reference for ``gd`` (what a user would write: ``torch.optim.SGD`` on the autograd loss) and the ``gd``
rows of ``verify bench``; moved here from :mod:`models.engines.gd` (benchmark code is not engine code)."""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from models import inits
from models.engines.gd import GradientDescent, resolve_device
from models.engines.gd.kernels import F64
from models.factorizations import CP, DeepMatrix
from models.problems import random_tensor_completion, rc20


def torch_loss(problem, model, params, op_T=None, y=None):
    """Per-member loss of batch-first torch factors (autograd-friendly), summed over the batch."""
    if isinstance(model, DeepMatrix):
        P = params[0]
        for W in params[1:]:
            P = torch.matmul(W, P)
        Pf = P.reshape(P.shape[0], -1)
        r = (Pf[:, op_T] if op_T.dtype == torch.long else Pf @ op_T) - y
    else:
        letters = "abcdefghijklmnopqrstuvwxy"[: model.order]
        T = torch.einsum(",".join(f"...{c}z" for c in letters) + "->..." + letters, *params)
        r = T.reshape(T.shape[0], -1)[:, op_T] - y
    return problem.loss_scale * (r * r).sum()


def autograd_gd_reference(problem, model, factors_batch, lr: float, steps: int, device=None) -> list[np.ndarray]:
    """The naive batched loop: ``torch.optim.SGD`` on the autograd loss, batch-first ``torch.matmul``/``einsum``.

    Returns the final factors (list of ``(B, ...)`` arrays). The summed batch loss has independent members, so each
    member follows its own GD trajectory.
    """
    dev = resolve_device(device)
    params = [torch.tensor(np.asarray(F, dtype=float), dtype=F64, device=dev, requires_grad=True)
              for F in factors_batch]
    if isinstance(model, DeepMatrix):
        # completion: gather the observed entries (what a user writes: W[rows, cols] - y), never a dense operator
        op_T = (torch.tensor(problem.obs_flat, dtype=torch.long, device=dev) if problem.obs_flat is not None
                else torch.tensor(problem.operator.T, dtype=F64, device=dev))
    else:
        op_T = torch.tensor(problem.obs_flat, dtype=torch.long, device=dev)
    y = torch.tensor(problem.targets, dtype=F64, device=dev)
    opt = torch.optim.SGD(params, lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        loss = torch_loss(problem, model, params, op_T, y)
        loss.backward()
        opt.step()
    return [p.detach().cpu().numpy() for p in params]


def time_rate(fn, min_seconds: float) -> tuple[float, int]:
    """Run ``fn(n)`` with growing n until it takes ``min_seconds``; returns (seconds per unit, n).

    ``fn(2)`` runs once first as a warm-up (lazy imports and first-call initialization are not timed).
    """
    fn(2)
    n = 1
    while True:
        t = time.perf_counter()
        fn(n)
        el = time.perf_counter() - t
        if el >= min_seconds or n >= 1 << 24:
            return el / n, n
        n = max(n * 2, int(n * min_seconds / max(el, 1e-6) * 1.2))


def bench_gd(seconds: float = 1.0, device=None) -> list[dict]:
    """Steps per second of this engine and of :func:`autograd_gd_reference` (rows for ``verify bench``).

    Workloads: depth-4 deep matrix factorization on :func:`~models.problems.rc20` at B = 1, 100, 10 000 (balanced
    Gaussian inits of scale 0.1, lr 1e-2), and CP order 4, dims 5, rank 10 on a 30%-observed rank-1 tensor
    completion (Gaussian init 0.1 / sqrt(R), lr 5e-2) at B = 1, 100 and 1000 (on a CPU the engine's sparse CP
    kernel below :data:`~models.engines.gd.kernels.CP_DENSE_BATCH` members, its dense-product kernel from there). ``steps_per_s`` counts trajectory-steps
    (B steps per batched step). Each measurement runs for about ``seconds``.
    """
    dev = resolve_device(device)
    rows = []
    problem = rc20()
    model = DeepMatrix(4, (2, 2))

    def deep_batch(B):
        fs = [inits.balanced(model, 0.1, seed=s).factors for s in range(min(B, 64))]
        return [np.stack([fs[i % len(fs)][j] for i in range(B)]) for j in range(model.depth)]

    tproblem, _ = random_tensor_completion((5, 5, 5, 5), int(round(0.3 * 625)), rank=1, norm=2.0, seed=0)
    tmodel = CP((5, 5, 5, 5), 10)

    def cp_batch(B):
        fs = [inits.cp_gaussian(tmodel, 0.1 / math.sqrt(10), seed=s).factors for s in range(min(B, 64))]
        return [np.stack([fs[i % len(fs)][j] for i in range(B)]) for j in range(tmodel.order)]

    cases = [("gd depth4", problem, model, 1e-2, deep_batch, (1, 100, 10_000)),
             ("gd cp order4", tproblem, tmodel, 5e-2, cp_batch, (1, 100, 1000))]
    for label, prob, mdl, lr, make, Bs in cases:
        eng = GradientDescent(lr=lr, device=dev, check_every=1 << 20)
        for B in Bs:
            fb = make(B)
            sec_per_step, _ = time_rate(lambda n: eng.run(prob, mdl, fb, steps=n, wall_budget=math.inf), seconds)
            naive_sec, _ = time_rate(lambda n: autograd_gd_reference(prob, mdl, fb, lr, n, device=dev),
                                      seconds / 2)
            ours, naive = B / sec_per_step, B / naive_sec
            rows.append({"workload": f"{label} B={B}", "B": B, "steps_per_s": ours, "naive_steps_per_s": naive,
                         "ratio": ours / naive, "device": str(dev)})
    return rows


__all__ = ["autograd_gd_reference", "bench_gd", "time_rate", "torch_loss"]
