"""Batched gradient descent for dense deep matrix factorization (completion and sensing) at the ACHL19 experiment
sizes (100x100, depths 1-4, B inits at once), with hand-written gradients.

For ``W = W_L ... W_1`` and ``G = grad l(W)`` the layer gradients are ``(W_L ... W_{j+1})^T G (W_{j-1} ... W_1)^T``.
One step forms the left products ``A_j = W_L ... W_j`` (``A_1 = W``, ``L - 1`` batched products), the gradient
``G`` (completion: the residuals scattered into the observed positions of a zero matrix kept between steps;
sensing: ``sum_i r_i A_i``), then ``H_1 = G``, ``H_j = H_{j-1} W_{j-1}^T`` and ``grad_j = A_{j+1}^T H_j``
(``grad_L = H_L``): ``3 (L - 1)`` products of ``d x d`` matrices per member, the same count as autograd, without
the graph, the optimizer pass or any allocation (every buffer is kept, every update in place).

Why not exploit the sparsity of ``G`` further: on CPU, measured with one thread at 100x100 (torch
2.13, a loaded 2-core machine), a block-diagonal CSR product with ``m = 2,000`` nonzeros costs 0.7x a dense product at B = 64 and 2.3x
at ``m = 5,000``, and the sampled forward product (gathering rows and columns) costs 25-100x a dense product; the
observed fractions of the ACHL19 runs (20% and 50%) are too dense for sparse kernels to pay, so the kernel is
dense (the scatter of the residuals is the only sparse operation).

On CUDA the steps between two checks are captured once in a CUDA graph and replayed (``cuda_graph=True``, the
default there): a 100x100 step is ~10 tiny kernels whose launch cost dominates.

Step rules (``step_rule``, recorded in :attr:`DMFRun.settings`): ``"constant"`` (``torch.optim.SGD``) and
``"group_rmsprop"``, the official ACHL19 / RC20 trainers' ``GroupRMSprop``: one global step per member and
iteration, ``lr / (sqrt(v_k / (1 - alpha^k)) + eps)`` with ``v_k = alpha v_{k-1} + (1 - alpha) sum_j
||grad_j||^2`` (alpha 0.99; eps 1e-4 in the ACHL19 runner, 1e-6 in the class default).

A member stops (its factors frozen; the batch keeps its shape) when its loss is at most ``until_loss`` at a
check (every ``check_every`` steps) or becomes non-finite ("diverged"). Records every ``record_every`` steps
(step 0 included, and each member's last step): the loss, and optionally the ``record_svals`` largest singular
values of ``W`` and, with ``record_alignment``, the ACHL19 figure-3 statistics of ``|U^T G V|`` (mean of the
diagonal entries, mean of the off-diagonal entries, over the whole square matrix as in their runner). Memory: what is recorded only,
``8 (1 + k + 2)`` bytes per member and record for ``k = record_svals``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import require

STEP_RULES = ("constant", "group_rmsprop")
DTYPES = {"float64": torch.float64, "float32": torch.float32}


@dataclass
class DMFRun:
    """Result of :func:`run_dmf_gd` for B members. ``steps`` (n,) recorded steps; ``loss`` (n, B); ``svals``
    (n, B, k) or None; ``diag_mean`` / ``offdiag_mean`` (n, B) or None; ``final_step``, ``final_loss`` (B,);
    ``status`` ("completed", "budget", "diverged"); ``factors`` (list of L arrays (B, ...)); ``product`` (B, d,
    d'); ``seconds``; ``settings``."""

    steps: np.ndarray
    loss: np.ndarray
    svals: np.ndarray | None
    diag_mean: np.ndarray | None
    offdiag_mean: np.ndarray | None
    final_step: np.ndarray
    final_loss: np.ndarray
    status: list
    factors: list
    product: np.ndarray
    seconds: float
    settings: dict = field(default_factory=dict)
    #: (n, B): ``prod_j ||W_j||_F`` at each recorded step (the scale of the ``gd`` engine's rounding-error model)
    scale: np.ndarray | None = None
    #: (n, B, d, d'): the end-to-end matrix at each recorded step (``record_products``), else None
    products: np.ndarray | None = None


def resolve_device(device) -> torch.device:
    """``None`` (cuda when torch sees one, else cpu), ``"cpu"``, ``"cuda"`` or a ``torch.device``."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        dev = None
    require(dev is not None and dev.type in ("cpu", "cuda"), f"device must be None, 'cpu' or 'cuda', got {device!r}")
    if dev.type == "cuda":
        require(torch.cuda.is_available(), "device 'cuda' requested but torch sees no CUDA device")
    return dev


class DMFKernel:
    """The state of B runs and one in-place step (module docstring). ``factors``: L arrays ``(B, d_j, d_{j-1})``
    in the order ``W_1 .. W_L``."""

    def __init__(self, problem, factors, *, lr: float, step_rule: str = "constant", rms_alpha: float = 0.99,
                 rms_eps: float = 1e-4, device=None, dtype: str = "float64"):
        require(step_rule in STEP_RULES, f"step_rule must be one of {STEP_RULES}, got {step_rule!r}")
        require(dtype in DTYPES, f"dtype must be one of {tuple(DTYPES)}, got {dtype!r}")
        require(isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0, f"lr must be > 0, got {lr!r}")
        self.dev = resolve_device(device)
        dt = DTYPES[dtype]
        kw = {"dtype": dt, "device": self.dev}
        fs = [np.asarray(F, dtype=float) for F in factors]
        require(len(fs) >= 1 and all(F.ndim == 3 for F in fs), "factors must be L >= 1 arrays of shape (B, d_j, d_j-1)")
        B = fs[0].shape[0]
        for a, b in zip(fs, fs[1:]):
            require(b.shape[0] == B and b.shape[2] == a.shape[1], "factor shapes do not chain")
        d, dp = problem.shape
        require(fs[-1].shape[1] == d and fs[0].shape[2] == dp, f"factors give {fs[-1].shape[1]}x{fs[0].shape[2]}, "
                                                                 f"the problem is {d}x{dp}")
        self.B, self.L, self.shape = B, len(fs), (d, dp)
        self.W = [torch.tensor(F, **kw) for F in fs]
        self.y = torch.tensor(np.asarray(problem.targets, dtype=float), **kw)
        self.loss_scale, self.grad_scale = float(problem.loss_scale), float(problem.grad_scale)
        self.completion = problem.obs_flat is not None
        if self.completion:
            self.obs = torch.tensor(problem.obs_flat, dtype=torch.long, device=self.dev)
        else:
            self.op = torch.tensor(np.asarray(problem.operator, dtype=float), **kw)  # (m, d d')
        self.G = torch.zeros((B, d, dp), **kw)
        self.A = [torch.empty((B, d, F.shape[2]), **kw) for F in fs]  # A[j] = W[L-1] @ .. @ W[j] (0-based)
        self.H = [torch.empty((B, d, F.shape[2]), **kw) for F in fs]
        self.grads = [torch.empty_like(W) for W in self.W]
        self.r = torch.empty((B, self.y.shape[0]), **kw)
        self.loss = torch.zeros(B, **kw)
        self.lr, self.step_rule = float(lr), step_rule
        self.alpha, self.eps = float(rms_alpha), float(rms_eps)
        self.v = torch.zeros(B, **kw)
        self.k = torch.zeros((), **kw)  # steps taken (for the bias correction)
        self.active = torch.ones(B, **kw)  # 0 for members that stopped
        self.eta = torch.empty(B, **kw)
        self.sq = torch.empty(B, **kw)

    # ------------------------------------------------------------------------------------------------------------
    def forward(self, loss: bool = True) -> torch.Tensor:
        """Left products and the end-to-end matrix; sets the residuals, ``G`` and (``loss``) the loss. Returns
        ``W``."""
        L, W, A = self.L, self.W, self.A
        A[L - 1] = W[L - 1]  # an alias: A[j] = W_L .. W_{j+1} (1-based), W_L itself for the top layer
        if L >= 2:
            torch.bmm(W[L - 1], W[L - 2], out=A[L - 2])
            for j in range(L - 3, -1, -1):
                torch.bmm(A[j + 1], W[j], out=A[j])
        E = A[0]
        if self.completion:
            flat = E.reshape(self.B, -1)
            torch.sub(flat.index_select(1, self.obs), self.y, out=self.r)
            self.G.view(self.B, -1).index_copy_(1, self.obs, self.r)
            self.G.mul_(self.grad_scale)
        else:
            torch.sub(E.reshape(self.B, -1) @ self.op.T, self.y, out=self.r)
            torch.matmul(self.r, self.op, out=self.G.view(self.B, -1))
            self.G.mul_(self.grad_scale)
        if loss:
            torch.sum(self.r * self.r, dim=1, out=self.loss)
            self.loss.mul_(self.loss_scale)
        return E

    def gradients(self) -> list:
        """Layer gradients at the current factors (after :meth:`forward`)."""
        L, W, A, H, g = self.L, self.W, self.A, self.H, self.grads
        if L == 1:
            g[0].copy_(self.G)
            return g
        H[0] = self.G
        torch.bmm(A[1].transpose(1, 2), self.G, out=g[0])
        for j in range(1, L):
            torch.bmm(H[j - 1], W[j - 1].transpose(1, 2), out=H[j])
            if j < L - 1:
                torch.bmm(A[j + 1].transpose(1, 2), H[j], out=g[j])
        g[L - 1].copy_(H[L - 1])
        return g

    def step(self) -> None:
        """One GD step of every active member (forward, gradients, step size, update; all in place; the loss is
        formed at checks and records only)."""
        self.forward(loss=False)
        g = self.gradients()
        self.k.add_(1.0)
        if self.step_rule == "constant":
            torch.mul(self.active, self.lr, out=self.eta)
        else:
            self.sq.zero_()
            for gj in g:
                self.sq.add_(gj.reshape(self.B, -1).pow(2).sum(1))
            self.v.mul_(self.alpha).add_(self.sq, alpha=1.0 - self.alpha)
            corr = 1.0 - torch.pow(torch.full_like(self.k, self.alpha), self.k)
            torch.div(self.v, corr, out=self.eta)
            self.eta.sqrt_().add_(self.eps).reciprocal_().mul_(self.lr).mul_(self.active)
        e = self.eta.view(self.B, 1, 1)
        for Wj, gj in zip(self.W, g):
            Wj.addcmul_(gj, e, value=-1.0)

    def product(self) -> torch.Tensor:
        E = self.W[0]
        for Wj in self.W[1:]:
            E = torch.bmm(Wj, E)
        return E


def _alignment(E: torch.Tensor, G: torch.Tensor, k: int):
    """ACHL19 figure 3 (their runner's statistic): with ``W = U S V^T`` (full SVD), the mean of the diagonal
    entries of ``|U^T G V|`` and the mean of its off-diagonal entries; and the ``k`` largest singular values."""
    U, S, Vh = torch.linalg.svd(E, full_matrices=False)
    M = (U.transpose(1, 2) @ G @ Vh.transpose(1, 2)).abs()
    n = M.shape[1]
    diag = torch.diagonal(M, dim1=1, dim2=2)
    off = (M.sum((1, 2)) - diag.sum(1)) / max(n * n - n, 1)
    return S[:, :k], diag.mean(1), off


def run_dmf_gd(problem, factors, *, lr: float, steps: int, step_rule: str = "constant", until_loss: float = 0.0,
               record_every: int = 0, record_svals: int = 0, record_alignment: bool = False,
               check_every: int = 100, rms_alpha: float = 0.99, rms_eps: float = 1e-4, device=None,
               dtype: str = "float64", threads: int | None = None, cuda_graph: bool | None = None,
               wall_budget: float | None = None, record_products: bool = False) -> DMFRun:
    """Run B members of GD for at most ``steps`` steps (module docstring); ``record_every = 0`` records the start
    and the end only. ``wall_budget`` (seconds) ends the run at the first check past it (members still running
    end with status "budget", as at the step budget)."""
    require(isinstance(steps, (int, np.integer)) and steps >= 0, f"steps must be an integer >= 0, got {steps!r}")
    require(isinstance(check_every, (int, np.integer)) and check_every >= 1,
            f"check_every must be an integer >= 1, got {check_every!r}")
    require(isinstance(record_every, (int, np.integer)) and record_every >= 0,
            f"record_every must be an integer >= 0, got {record_every!r}")
    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        return _run(problem, factors, lr=lr, steps=int(steps), step_rule=step_rule, until_loss=float(until_loss),
                    record_every=int(record_every), record_svals=int(record_svals),
                    record_alignment=bool(record_alignment), check_every=int(check_every), rms_alpha=rms_alpha,
                    rms_eps=rms_eps, device=device, dtype=dtype, cuda_graph=cuda_graph, wall_budget=wall_budget,
                    record_products=bool(record_products))
    finally:
        torch.set_num_threads(old_threads)


def _run(problem, factors, *, lr, steps, step_rule, until_loss, record_every, record_svals, record_alignment,
         check_every, rms_alpha, rms_eps, device, dtype, cuda_graph, wall_budget, record_products) -> DMFRun:
    t0 = time.perf_counter()
    K = DMFKernel(problem, factors, lr=lr, step_rule=step_rule, rms_alpha=rms_alpha, rms_eps=rms_eps,
                  device=device, dtype=dtype)
    B = K.B
    k_sv = min(int(record_svals), *K.shape) if record_svals else 0
    use_graph = (K.dev.type == "cuda") if cuda_graph is None else bool(cuda_graph)
    require(not use_graph or K.dev.type == "cuda", "cuda_graph needs device 'cuda'")
    # check and record on a common grid: a chunk of steps runs between two of them
    chunk = check_every if record_every == 0 else math.gcd(check_every, record_every)
    rec_steps, rec_loss, rec_sv, rec_dg, rec_off, rec_scale, rec_prod = [], [], [], [], [], [], []
    final_step = np.zeros(B, dtype=np.int64)
    final_loss = np.full(B, np.nan)
    status = ["budget"] * B

    def record(step):
        E = K.forward()
        rec_steps.append(step)
        rec_loss.append(K.loss.detach().cpu().numpy().copy())
        scale = torch.ones(B, dtype=torch.float64, device=K.dev)
        for Wj in K.W:
            scale = scale * torch.linalg.vector_norm(Wj.reshape(B, -1), dim=1).to(torch.float64)
        rec_scale.append(scale.cpu().numpy())
        if record_products:
            rec_prod.append(E.detach().cpu().numpy().astype(np.float64, copy=True))
        if k_sv:
            if record_alignment:
                s, dg, off = _alignment(E, K.G, k_sv)
                rec_dg.append(dg.cpu().numpy())
                rec_off.append(off.cpu().numpy())
            else:
                s = torch.linalg.svdvals(E)[:, :k_sv]
            rec_sv.append(s.cpu().numpy())

    graph = None
    if use_graph and steps > 0:
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        saved = [W.clone() for W in K.W] + [K.v.clone(), K.k.clone()]
        with torch.cuda.stream(stream):
            for _ in range(2):
                K.step()
        torch.cuda.current_stream().wait_stream(stream)
        for dst, src in zip(K.W + [K.v, K.k], saved):
            dst.copy_(src)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            for _ in range(chunk):
                K.step()

    record(0)
    done = 0
    stopped = np.zeros(B, dtype=bool)
    while done < steps:
        n = min(chunk, steps - done)
        if graph is not None and n == chunk:
            graph.replay()
        else:
            for _ in range(n):
                K.step()
        done += n
        at_check = done % check_every == 0 or done == steps
        at_record = record_every and done % record_every == 0
        if at_check or at_record:
            K.forward()
            loss = K.loss.detach().cpu().numpy()
            newly = ~stopped & (~np.isfinite(loss) | (loss <= until_loss))
            if at_record:
                record(done)
            if at_check and newly.any():
                for b in np.flatnonzero(newly):
                    status[b] = "completed" if np.isfinite(loss[b]) else "diverged"
                    final_step[b], final_loss[b] = done, loss[b]
                stopped |= newly
                K.active.copy_(torch.tensor((~stopped).astype(float), dtype=K.active.dtype, device=K.dev))
                if stopped.all():
                    break
            if at_check and wall_budget is not None and time.perf_counter() - t0 > wall_budget:
                break
    if not rec_steps or rec_steps[-1] != done:
        record(done)
    loss = rec_loss[-1]
    for b in range(B):
        if not stopped[b]:
            final_step[b], final_loss[b] = done, loss[b]
            if not np.isfinite(loss[b]):
                status[b] = "diverged"
    prod = K.product().detach().cpu().numpy()
    if K.dev.type == "cuda":
        torch.cuda.synchronize()
    return DMFRun(
        steps=np.array(rec_steps, dtype=np.int64), loss=np.array(rec_loss),
        svals=np.array(rec_sv) if k_sv else None,
        diag_mean=np.array(rec_dg) if rec_dg else None, offdiag_mean=np.array(rec_off) if rec_off else None,
        final_step=final_step, final_loss=final_loss, status=status,
        factors=[W.detach().cpu().numpy() for W in K.W], product=prod, seconds=time.perf_counter() - t0,
        settings={"step_rule": step_rule, "lr": float(lr), "rms_alpha": float(rms_alpha), "rms_eps": float(rms_eps),
                  "dtype": dtype, "device": str(K.dev), "cuda_graph": graph is not None, "depth": K.L,
                  "reduction": problem.reduction, "check_every": check_every, "record_every": record_every,
                  "engine": "dmf-fast"},
        scale=np.array(rec_scale), products=np.array(rec_prod) if record_products else None)


__all__ = ["DMFKernel", "DMFRun", "STEP_RULES", "resolve_device", "run_dmf_gd"]
