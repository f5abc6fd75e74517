"""The kernels of :mod:`models.engines.gd`: one batched gradient-descent step on prebound torch calls, for deep
matrix factorizations (elementwise batch-last or ``bmm`` batch-first) and CP tensor completion, and the choice
between them (:func:`build_kernel`)."""

from __future__ import annotations

from functools import partial

import numpy as np
import torch

from ...factorizations import CP, DeepMatrix, cp_tensor
from ...problems import MatrixProblem, TensorProblem

F64 = torch.float64
EPS = float(np.finfo(float).eps)
DET_FLOOR = 64 * EPS
GRAIN = 32768          # torch's at::internal::GRAIN_SIZE: elementwise CPU calls above it fork OpenMP threads
SMALL_DIM = 8          # widest layer the elementwise kernel handles
MIN_CHUNK = 2048       # smallest chunk worth a coarser elementwise layout
CP_CHUNK_ELEMS = 1 << 20  # CP on CPU: members per chunk so that one (m, R, chunk) buffer holds at most this many
CP_DENSE_BATCH = 16     # CP on CPU from this many members (and at most CP_DENSE_FILL entries per observation):
CP_DENSE_FILL = 8       # the dense-product kernel (_CPDense); see build_kernel for the measurements
MIN_BATCH = 64         # below this many members, bmm (fewer calls) beats the unrolled elementwise products
MAX_RUNS = 16         # completion with more runs of consecutive observed entries: gather/scatter (matmul kernel)
KERNELS = ("auto", "elementwise", "matmul")


# ================================================================================================================
# Building blocks for the elementwise (batch-last) kernels
# ================================================================================================================
def _emit_sum(ops: list, c: torch.Tensor, terms: list, acc: float | None) -> None:
    """``c = sum(a * b)`` (acc None) or ``c += acc * sum(a * b)`` as prebound in-place calls."""
    if acc is not None:
        for a, b in terms:
            ops.append(partial(c.addcmul_, a, b, value=acc))
        return
    if not terms:
        return  # structurally zero: the buffer was allocated as zeros and is never written
    a, b = terms[0]
    ops.append(partial(torch.mul, a, b, out=c))
    for a, b in terms[1:]:
        ops.append(partial(c.addcmul_, a, b))


def _emit_mm(ops: list, A, Bm, C, Az: np.ndarray, Bz: np.ndarray, gran: str, acc: float | None = None) -> np.ndarray:
    """``C = A @ Bm`` (or ``C += acc * A @ Bm``) on batch-last tensors ``(ni,nj,b) @ (nj,nk,b) -> (ni,nk,b)``.

    ``Az``/``Bz`` mark structurally zero entries (skipped). Returns the structural-zero mask of the product.
    """
    ni, nj = Az.shape
    nk = Bz.shape[1]
    live = ~Az[:, :, None] & ~Bz[None, :, :]
    Cz = ~live.any(axis=1)
    if gran == "entry":
        for i in range(ni):
            for k in range(nk):
                _emit_sum(ops, C[i, k], [(A[i, j], Bm[j, k]) for j in range(nj) if live[i, j, k]], acc)
    elif gran == "row":
        for i in range(ni):
            _emit_sum(ops, C[i], [(A[i, j:j + 1], Bm[j]) for j in range(nj) if live[i, j, :].any()], acc)
    else:
        _emit_sum(ops, C, [(A[:, j:j + 1], Bm[j:j + 1]) for j in range(nj) if live[:, j, :].any()], acc)
    return Cz


def _emit_axpy(ops: list, W, H, Hz: np.ndarray, gran: str, alpha: float) -> None:
    """``W += alpha * H`` entrywise (batch-last), skipping structural zeros of ``H``."""
    if gran == "entry":
        for i in range(Hz.shape[0]):
            for k in range(Hz.shape[1]):
                if not Hz[i, k]:
                    ops.append(partial(W[i, k].add_, H[i, k], alpha=alpha))
    elif gran == "row":
        for i in range(Hz.shape[0]):
            if not Hz[i].all():
                ops.append(partial(W[i].add_, H[i], alpha=alpha))
    elif not Hz.all():
        ops.append(partial(W.add_, H, alpha=alpha))


def observed_runs(flat_idx: np.ndarray, width: int) -> list[tuple[int, int, int]]:
    """Split sorted flat indices into runs of consecutive values of at most ``width``: (start, stop, offset)."""
    runs = []
    i = 0
    n = len(flat_idx)
    while i < n:
        j = i + 1
        while j < n and flat_idx[j] == flat_idx[j - 1] + 1 and j - i < width:
            j += 1
        runs.append((int(flat_idx[i]), int(flat_idx[j - 1]) + 1, i))
        i = j
    return runs


def _completion_pattern(problem: MatrixProblem):
    """``(flat indices sorted, targets in that order)`` when every measurement reads one distinct entry, else None.

    Completion problems give their observed indices directly (their dense operator is never built)."""
    if problem.obs_flat is not None:
        order = np.argsort(problem.obs_flat, kind="stable")
        return problem.obs_flat[order], problem.targets[order]
    op = problem.operator
    nz = op != 0
    if not np.all(nz.sum(axis=1) == 1):
        return None
    cols = np.argmax(nz, axis=1)
    if not np.all(op[np.arange(op.shape[0]), cols] == 1.0) or len(set(cols.tolist())) != len(cols):
        return None
    order = np.argsort(cols, kind="stable")
    return cols[order], problem.targets[order]


def det_sign_batch(factors: list[np.ndarray]) -> np.ndarray:
    """Product of the factors' det signs per member (0 when a factor is not square or its det is unresolved)."""
    B = factors[0].shape[0]
    sign = np.ones(B, dtype=np.int8)
    for W in factors:
        n = W.shape[-1]
        if W.shape[-2] != n:
            return np.zeros(B, dtype=np.int8)
        with np.errstate(all="ignore"):
            det = np.linalg.det(W) if np.all(np.isfinite(W)) else np.full(B, np.nan)
            if not np.all(np.isfinite(W)):
                ok_rows = np.all(np.isfinite(W.reshape(B, -1)), axis=1)
                det[ok_rows] = np.linalg.det(W[ok_rows])
            norm = np.linalg.norm(W.reshape(B, -1), axis=1)
            bad = ~np.isfinite(det) | (np.abs(det) <= DET_FLOOR * norm ** n)
        sign = np.where(bad, 0, sign * np.where(det > 0, 1, -1)).astype(np.int8)
    return sign


# ================================================================================================================
# Kernels. Each works on one batch of size b and exposes: fwd_ops (end-to-end product), tail_ops (gradient and
# update, needing fwd_ops run first), ops (both), set_mask; and, for the checks (after fwd_ops), numpy-side
# residuals() (m, b), product(), factors(), finite(), scale(), snapshot(), restore(sel). The checks work on numpy
# views of the torch storage (zero-copy on CPU): numpy is single-threaded, whereas torch reductions over a whole
# batch cross the parallel grain and fork OpenMP threads, which costs milliseconds per call on a busy machine.
# ================================================================================================================
def _host(t: torch.Tensor) -> np.ndarray:
    """A numpy view of a CPU tensor (shares memory) or a host copy of a CUDA tensor."""
    return t.numpy() if t.device.type == "cpu" else t.cpu().numpy()


class _KernelBase:
    """Numpy-side evaluation shared by the kernels; ``state`` are the factor tensors, ``batch_last`` the layout."""

    batch_last = True
    fwd_ops: list
    _res_ops: list
    _mask_targets: list
    _bwd_ops: list

    def _mid_ops(self) -> list:
        """Ops between the (masked) residuals and the backward pass (none by default)."""
        return []

    def set_mask(self, mask: torch.Tensor | None) -> None:
        """Zero the residuals of the members where ``mask`` is 0 (they stop moving), or none (``None``): the step
        is ``fwd_ops``, the residual ops, the mask, :meth:`_mid_ops`, then the backward pass."""
        self.mask = mask
        ops = list(self._res_ops)
        if mask is not None:
            m = mask if self.batch_last else mask.reshape(-1, 1)   # members: the last axis, or the first
            ops += [partial(t.mul_, m) for t in self._mask_targets]
        self.tail_ops = ops + self._mid_ops() + self._bwd_ops
        self.ops = self.fwd_ops + self.tail_ops
    state: list
    device: torch.device
    b: int

    def _members(self, a: np.ndarray) -> np.ndarray:
        """``a`` reshaped to (b, -1) (members first)."""
        return a.reshape(-1, self.b).T if self.batch_last else a.reshape(self.b, -1)

    def factors(self) -> list[np.ndarray]:
        return [np.moveaxis(_host(t), -1, 0).copy() if self.batch_last else _host(t).copy() for t in self.state]

    def _finite_extra(self) -> list[np.ndarray]:
        return []

    def finite(self) -> np.ndarray:
        ok = np.ones(self.b, bool)
        for a in [_host(t) for t in self.state] + self._finite_extra():
            ok &= np.isfinite(self._members(a)).all(axis=1)
        return ok

    def snapshot(self) -> None:
        if getattr(self, "_snap", None) is None:
            self._snap = [np.array(_host(t)) for t in self.state]
        else:
            for S, t in zip(self._snap, self.state):
                np.copyto(S, _host(t))

    def restore(self, sel: np.ndarray) -> None:
        for S, t in zip(self._snap, self.state):
            if t.device.type == "cpu":
                a = t.numpy()
                if self.batch_last:
                    a[..., sel] = S[..., sel]
                else:
                    a[sel] = S[sel]
            else:
                idx = torch.tensor(np.flatnonzero(sel), dtype=torch.long, device=t.device)
                vals = S[..., sel] if self.batch_last else S[sel]
                t.index_copy_(t.ndim - 1 if self.batch_last else 0, idx, torch.tensor(vals, dtype=F64, device=t.device))


class _DeepKernel(_KernelBase):
    """What the two deep-matrix kernels share (either layout): ``P[-1]`` is the end-to-end product."""

    P: list

    def _finite_extra(self) -> list[np.ndarray]:
        return [_host(self.P[-1])]

    def scale(self) -> np.ndarray:
        s = np.ones(self.b)
        for W in self.state:
            s = s * np.sqrt(np.square(self._members(_host(W))).sum(axis=1))
        return s


class _DeepElementwise(_DeepKernel):
    """Deep matrix factorization, batch-last layout, unrolled broadcast products (module docstring)."""

    kind = "elementwise"

    def __init__(self, problem: MatrixProblem, model: DeepMatrix, factors: list[np.ndarray], lr: float,
                 device: torch.device, gran: str):
        self.problem, self.model, self.lr, self.device, self.gran = problem, model, lr, device, gran
        b = factors[0].shape[0]
        self.b = b
        kw = {"dtype": F64, "device": device}
        self.W = [torch.tensor(np.ascontiguousarray(np.moveaxis(F, 0, -1)), **kw) for F in factors]
        dims, L = model.dims, model.depth
        d, dp = model.shape
        Wz = [np.zeros((dims[j + 1], dims[j]), bool) for j in range(L)]
        fwd: list = []
        P = [None, self.W[0]]
        Pz = [None, Wz[0]]
        for j in range(2, L + 1):
            P.append(torch.zeros((dims[j], dims[0], b), **kw))
            Pz.append(_emit_mm(fwd, self.W[j - 1], P[j - 1], P[j], Wz[j - 1], Pz[j - 1], gran))
        self.P = P
        self.Pflat = P[L].view(d * dp, b)
        G = torch.zeros((d, dp, b), **kw)
        Gflat = G.view(d * dp, b)
        self.mask = None
        c = problem.grad_scale
        width = {"entry": 1, "row": dp}.get(gran, d * dp)
        pattern = _completion_pattern(problem)
        self._res_ops: list = []
        self._mask_targets: list = []
        if pattern is not None:
            flat, y = pattern
            self._obs = torch.tensor(flat, dtype=torch.long, device=device)
            self._y = torch.tensor(y, **kw)
            self._obs_np, self._y_np = flat, y
            Gz = np.ones(d * dp, bool)
            Gz[flat] = False
            Gz = Gz.reshape(d, dp)
            for start, stop, off in observed_runs(flat, width):
                n = stop - start
                g = Gflat[start:stop]
                if gran == "entry":
                    self._res_ops.append(partial(torch.sub, self.Pflat[start], float(y[off]), out=Gflat[start]))
                else:
                    self._res_ops.append(partial(torch.sub, self.Pflat[start:stop],
                                                 self._y[off:off + n].reshape(n, 1), out=g))
                if c != 1.0:
                    self._res_ops.append(partial(g.mul_, c))
                self._mask_targets.append(g)
            self._op = None
        else:
            self._obs = None
            self._op = torch.tensor(problem.operator, **kw)
            self._y = torch.tensor(problem.targets, **kw)
            self._r = torch.zeros((problem.m, b), **kw)
            negy = (-self._y).reshape(-1, 1)
            opTc = (c * self._op.T).contiguous()
            self._res_ops.append(partial(torch.addmm, negy, self._op, self.Pflat, out=self._r))
            self._res_tail = [partial(torch.mm, opTc, self._r, out=Gflat)]
            self._mask_targets.append(self._r)
            Gz = (~np.any(problem.operator != 0, axis=0)).reshape(d, dp)
        bwd: list = []
        H = {L: G}
        Hz = {L: Gz}
        for j in range(L, 1, -1):
            H[j - 1] = torch.zeros((dims[j - 1], dims[0], b), **kw)
            Hz[j - 1] = _emit_mm(bwd, self.W[j - 1].transpose(0, 1), H[j], H[j - 1], Wz[j - 1].T, Hz[j], gran)
            _emit_mm(bwd, H[j], P[j - 1].transpose(0, 1), self.W[j - 1], Hz[j], Pz[j - 1].T, gran, acc=-lr)
        _emit_axpy(bwd, self.W[0], H[1], Hz[1], gran, -lr)
        self.fwd_ops, self._bwd_ops = fwd, bwd
        self.state = self.W
        self._snap = None
        self.set_mask(None)

    def _mid_ops(self) -> list:
        return list(self._res_tail) if self._op is not None else []

    # ----- evaluation (after fwd_ops) -----------------------------------------------------------------------
    def residuals(self) -> np.ndarray:
        Pf = _host(self.Pflat)
        if self._obs is not None:
            return Pf[self._obs_np] - self._y_np[:, None]
        return self.problem.operator @ Pf - self.problem.targets[:, None]

    def product(self) -> np.ndarray:
        return np.moveaxis(_host(self.P[-1]), -1, 0).copy()


class DeepMatmulKernel(_DeepKernel):
    """Deep matrix factorization, batch-first layout, ``torch.bmm``/``baddbmm_`` (for wide layers, small batches)."""

    kind = "matmul"
    batch_last = False

    def __init__(self, problem: MatrixProblem, model: DeepMatrix, factors: list[np.ndarray], lr: float,
                 device: torch.device):
        self.problem, self.model, self.lr, self.device = problem, model, lr, device
        b = factors[0].shape[0]
        self.b = b
        kw = {"dtype": F64, "device": device}
        self.W = [torch.tensor(np.ascontiguousarray(F), **kw) for F in factors]
        dims, L = model.dims, model.depth
        d, dp = model.shape
        fwd: list = []
        P = [None, self.W[0]]
        for j in range(2, L + 1):
            P.append(torch.zeros((b, dims[j], dims[0]), **kw))
            fwd.append(partial(torch.bmm, self.W[j - 1], P[j - 1], out=P[j]))
        self.P = P
        self.Pflat = P[L].view(b, d * dp)
        G = torch.zeros((b, d, dp), **kw)
        self.G = G          # the end-to-end gradient (grad_scale A^T r, masked), for step rules (gd_rules.py)
        Gflat = G.view(b, d * dp)
        c = problem.grad_scale
        pattern = _completion_pattern(problem)
        self._res_ops, self._mask_targets = [], []
        if pattern is not None:
            flat, y = pattern
            self._obs = torch.tensor(flat, dtype=torch.long, device=device)
            self._y = torch.tensor(y, **kw)
            self._obs_np, self._y_np = flat, y
            runs = observed_runs(flat, d * dp)
            if len(runs) <= MAX_RUNS:
                for start, stop, off in runs:
                    g = Gflat[:, start:stop]
                    self._res_ops.append(partial(torch.sub, self.Pflat[:, start:stop],
                                                 self._y[off:off + stop - start], out=g))
                    if c != 1.0:
                        self._res_ops.append(partial(g.mul_, c))
                    self._mask_targets.append(g)
            else:
                # scattered observations (random completion): one gather, the residual in place, one scatter
                # into G (whose unobserved entries stay 0): O(m) work and 3 .. 5 calls, whatever the pattern
                self._r = torch.zeros((b, len(flat)), **kw)
                self._res_ops.append(partial(torch.index_select, self.Pflat, 1, self._obs, out=self._r))
                self._res_ops.append(partial(self._r.sub_, self._y))
                if c != 1.0:
                    self._res_ops.append(partial(self._r.mul_, c))
                self._mask_targets.append(self._r)
                self._scatter = partial(Gflat.index_copy_, 1, self._obs, self._r)
            self._op = None
        else:
            self._obs = None
            self._op = torch.tensor(problem.operator, **kw)
            self._y = torch.tensor(problem.targets, **kw)
            self._r = torch.zeros((b, problem.m), **kw)
            opT = self._op.T.contiguous()
            opc = (c * self._op).contiguous()
            self._res_ops.append(partial(torch.addmm, -self._y, self.Pflat, opT, out=self._r))
            self._res_tail = [partial(torch.mm, self._r, opc, out=Gflat)]
            self._mask_targets.append(self._r)
        bwd: list = []
        H = {L: G}
        for j in range(L, 1, -1):
            H[j - 1] = torch.zeros((b, dims[j - 1], dims[0]), **kw)
            bwd.append(partial(torch.bmm, self.W[j - 1].transpose(1, 2), H[j], out=H[j - 1]))
            bwd.append(partial(self.W[j - 1].baddbmm_, H[j], P[j - 1].transpose(1, 2), alpha=-lr))
        bwd.append(partial(self.W[0].add_, H[1], alpha=-lr))
        self.fwd_ops, self._bwd_ops = fwd, bwd
        self.state = self.W
        self._snap = None
        self.set_mask(None)

    def _mid_ops(self) -> list:
        ops = [self._scatter] if getattr(self, "_scatter", None) is not None else []
        return ops + (list(self._res_tail) if self._op is not None else [])

    def residuals(self) -> np.ndarray:
        Pf = _host(self.Pflat)
        if self._obs is not None:
            return (Pf[:, self._obs_np] - self._y_np).T
        return self.problem.operator @ Pf.T - self.problem.targets[:, None]

    def product(self) -> np.ndarray:
        return _host(self.P[-1]).copy()


class _CPKernel(_KernelBase):
    """What the two CP kernels share: the residual ops (``_res_ops`` into ``_r``), the mask on ``_r`` (members
    along ``_r``'s last axis, or its first where ``batch_last`` is false), ops between the residuals and the backward pass (``_pre_bwd``)."""

    _pre_bwd: list = []

    def _finish(self, fwd: list, bwd: list) -> None:
        self.fwd_ops, self._bwd_ops = fwd, bwd
        self.state = self.U
        self._snap = None
        self.set_mask(None)

    @property
    def _mask_targets(self) -> list:
        return [self._r]

    def _mid_ops(self) -> list:
        return list(self._pre_bwd)


class _CPSparse(_CPKernel):
    """CP tensor completion, batch-last ``(d_n, R, b)`` factors, observed entries only (module docstring)."""

    kind = "cp"

    def __init__(self, problem: TensorProblem, model: CP, factors: list[np.ndarray], lr: float,
                 device: torch.device):
        self.problem, self.model, self.lr, self.device = problem, model, lr, device
        b = factors[0].shape[0]
        self.b = b
        kw = {"dtype": F64, "device": device}
        N, R, m = model.order, model.rank, problem.m
        self.U = [torch.tensor(np.ascontiguousarray(np.moveaxis(F, 0, -1)), **kw) for F in factors]
        idx = [torch.tensor(problem.indices[:, n], dtype=torch.long, device=device) for n in range(N)]
        self._y = torch.tensor(problem.targets, **kw)
        self._idx = idx
        A = [torch.zeros((m, R, b), **kw) for _ in range(N)]
        suf = [None] * (N + 1)
        suf[N - 1] = A[N - 1]
        for k in range(N - 2, 0, -1):
            suf[k] = torch.zeros((m, R, b), **kw)
        full = torch.zeros((m, R, b), **kw)
        self._t = torch.zeros((m, b), **kw)
        r = torch.zeros((m, b), **kw)
        r3 = r.view(m, 1, b)
        pre = [torch.zeros((m, R, b), **kw) for _ in range(max(N - 1, 1))]
        X = [torch.zeros((m, R, b), **kw) for _ in range(N)]
        fwd = [partial(torch.index_select, self.U[n], 0, idx[n], out=A[n]) for n in range(N)]
        for k in range(N - 2, 0, -1):
            fwd.append(partial(torch.mul, A[k], suf[k + 1], out=suf[k]))
        fwd.append(partial(torch.mul, A[0], suf[1], out=full))
        fwd.append(partial(torch.sum, full, 1, out=self._t))
        self._res_ops = [partial(torch.sub, self._t, self._y.reshape(m, 1), out=r)]
        if problem.grad_scale != 1.0:
            self._res_ops.append(partial(r.mul_, problem.grad_scale))
        self._r = r
        bwd = [partial(torch.mul, A[0], r3, out=pre[0])]
        for k in range(1, N - 1):
            bwd.append(partial(torch.mul, pre[k - 1], A[k], out=pre[k]))
        # X_n = r * prod_{k != n} A_k
        bwd.append(partial(torch.mul, suf[1], r3, out=X[0]))
        for n in range(1, N - 1):
            bwd.append(partial(torch.mul, pre[n - 1], suf[n + 1], out=X[n]))
        X[N - 1] = pre[N - 2]
        # gradient rows: g_n = sum over observations of X_n rows (index_add_ runs serially over the index, one
        # vectorized row add each; a 0/1 matrix product would hand MKL tiny gemms, whose thread pool stalls on a
        # busy machine); then U_n += -lr * g_n as torch.optim.SGD does.
        grads = [torch.zeros((model.dims[n], R, b), **kw) for n in range(N)]
        for n in range(N):
            bwd.append(grads[n].zero_)
            bwd.append(partial(grads[n].index_add_, 0, idx[n], X[n]))
            bwd.append(partial(self.U[n].add_, grads[n], alpha=-lr))
        self._finish(fwd, bwd)

    def residuals(self) -> np.ndarray:
        return _host(self._t) - self.problem.targets[:, None]

    def product(self) -> np.ndarray:
        return cp_tensor(self.factors())

    def _finite_extra(self) -> list[np.ndarray]:
        return [_host(self._t)]

    def scale(self) -> np.ndarray:
        s = np.ones((self.model.rank, self.b))
        for U in self.state:
            s = s * np.sqrt(np.square(_host(U)).sum(axis=0))
        return s.sum(axis=0)


class _CPDense(_CPKernel):
    """CP tensor completion, batch-first ``(b, d_n, R)`` factors, on dense products (for large batches on a CPU).

    The modes are split into two groups; each group's factors form a Khatri-Rao matrix (``K_A``: ``(b, prod d_A,
    R)``, ``K_B`` likewise) and the tensor is ``T = K_A K_B^T`` (one ``bmm``). The residuals are gathered at the
    observed entries and scattered into ``E`` (its other entries stay 0), ``dK_A = E K_B``, ``dK_B = E^T K_A``, and
    each factor's gradient is ``dK`` of its group contracted with the group's other factors; then ``U_n += -lr
    g_n`` for every mode (all gradients first, as ``torch.optim.SGD``). Per member and step it streams a few
    ``prod(dims)``-sized arrays where :class:`_CPSparse` streams ~14 arrays of ``m R`` entries (measurements in
    :func:`build_kernel`)."""

    kind = "cp-dense"
    batch_last = False

    def __init__(self, problem: TensorProblem, model: CP, factors: list[np.ndarray], lr: float,
                 device: torch.device):
        self.problem, self.model, self.lr, self.device = problem, model, lr, device
        b = factors[0].shape[0]
        self.b = b
        kw = {"dtype": F64, "device": device}
        N, R, dims = model.order, model.rank, tuple(model.dims)
        self.U = [torch.tensor(np.ascontiguousarray(F), **kw) for F in factors]
        groups = [list(range(N // 2)), list(range(N // 2, N))]
        fwd: list = []
        K = []
        for g in groups:  # Khatri-Rao matrix of each group: (b, prod d_g, R), first mode slowest
            if len(g) == 1:
                K.append(self.U[g[0]])
                continue
            acc = self.U[g[0]]
            for n in g[1:]:
                a = acc.shape[1]
                out = torch.zeros((b, a, dims[n], R), **kw)
                fwd.append(partial(torch.mul, acc[:, :, None, :], self.U[n][:, None, :, :], out=out))
                acc = out.view(b, a * dims[n], R)
            K.append(acc)
        nA, nB = K[0].shape[1], K[1].shape[1]
        self.T = torch.zeros((b, nA, nB), **kw)
        fwd.append(partial(torch.bmm, K[0], K[1].transpose(1, 2), out=self.T))
        Tflat = self.T.view(b, nA * nB)
        self._obs_np = np.ravel_multi_index(tuple(problem.indices.T), dims)
        obs = torch.tensor(self._obs_np, dtype=torch.long, device=device)
        self._y = torch.tensor(problem.targets, **kw)
        self._r = torch.zeros((b, problem.m), **kw)
        self._res_ops = [partial(torch.index_select, Tflat, 1, obs, out=self._r), partial(self._r.sub_, self._y)]
        if problem.grad_scale != 1.0:
            self._res_ops.append(partial(self._r.mul_, problem.grad_scale))
        E = torch.zeros((b, nA, nB), **kw)
        self._pre_bwd = [partial(E.view(b, nA * nB).index_copy_, 1, obs, self._r)]
        dK = [torch.zeros((b, nA, R), **kw), torch.zeros((b, nB, R), **kw)]
        bwd = [partial(torch.bmm, E, K[1], out=dK[0]), partial(torch.bmm, E.transpose(1, 2), K[0], out=dK[1])]
        grads = [torch.zeros((b, dims[n], R), **kw) for n in range(N)]
        for g, dKg in zip(groups, dK):
            if len(g) == 1:
                grads[g[0]] = dKg
                continue
            G = dKg.view(b, *[dims[n] for n in g], R)
            for i, n in enumerate(g):
                # g_n = sum over the group's other modes of G * (the outer product of their factors)
                others = [j for j in range(len(g)) if j != i]
                w = None
                for j in others:
                    shape = [b] + [dims[g[j]] if k == j else 1 for k in range(len(g))] + [R]
                    f = self.U[g[j]].view(shape)
                    if w is None:
                        w = f
                    else:
                        nxt = torch.zeros(torch.broadcast_shapes(w.shape, f.shape), **kw)
                        bwd.append(partial(torch.mul, w, f, out=nxt))
                        w = nxt
                prod = torch.zeros(G.shape, **kw)
                bwd.append(partial(torch.mul, G, w, out=prod))
                bwd.append(partial(torch.sum, prod, tuple(1 + j for j in others), out=grads[n]))
        for n in range(N):
            bwd.append(partial(self.U[n].add_, grads[n], alpha=-lr))
        self._finish(fwd, bwd)

    def residuals(self) -> np.ndarray:
        return (_host(self.T).reshape(self.b, -1)[:, self._obs_np] - self.problem.targets).T

    def product(self) -> np.ndarray:
        return _host(self.T).reshape((self.b,) + tuple(self.model.dims)).copy()

    def _finite_extra(self) -> list[np.ndarray]:
        return [_host(self.T)]

    def scale(self) -> np.ndarray:
        s = np.ones((self.b, self.model.rank))
        for U in self.state:
            s = s * np.sqrt(np.square(_host(U)).sum(axis=1))
        return s.sum(axis=1)


class Chunks:
    """Independent kernels over consecutive slices of the batch, presented as one."""

    def __init__(self, kernels: list, bounds: list[tuple[int, int]]):
        self.kernels, self.bounds = kernels, bounds
        self.b = bounds[-1][1]
        self.kind = kernels[0].kind
        self.gran = getattr(kernels[0], "gran", None)
        self._rebuild()

    def _rebuild(self) -> None:
        self.fwd_ops = [op for k in self.kernels for op in k.fwd_ops]
        self.tail_ops = [op for k in self.kernels for op in k.tail_ops]
        self.ops = [op for k in self.kernels for op in k.ops]

    def set_mask(self, mask: torch.Tensor | None) -> None:
        for k, (s, e) in zip(self.kernels, self.bounds):
            k.set_mask(None if mask is None else mask[s:e].clone())
        self._rebuild()

    def residuals(self) -> np.ndarray:
        return np.concatenate([k.residuals() for k in self.kernels], axis=1)

    def product(self) -> np.ndarray:
        return np.concatenate([k.product() for k in self.kernels], axis=0)

    def factors(self) -> list[np.ndarray]:
        parts = [k.factors() for k in self.kernels]
        return [np.concatenate([p[i] for p in parts], axis=0) for i in range(len(parts[0]))]

    def finite(self) -> np.ndarray:
        return np.concatenate([k.finite() for k in self.kernels])

    def scale(self) -> np.ndarray:
        return np.concatenate([k.scale() for k in self.kernels])

    def snapshot(self) -> None:
        for k in self.kernels:
            k.snapshot()

    def restore(self, sel: np.ndarray) -> None:
        for k, (s, e) in zip(self.kernels, self.bounds):
            if sel[s:e].any():
                k.restore(sel[s:e])


def _split(B: int, size: int) -> list[tuple[int, int]]:
    n = max(1, -(-B // max(1, size)))
    edges = [round(i * B / n) for i in range(n + 1)]
    return [(edges[i], edges[i + 1]) for i in range(n)]


def build_kernel(problem, model, factors: list[np.ndarray], lr: float, device: torch.device, kernel: str,
                  gran: str | None = None, chunk: int | None = None, rule: dict | None = None) -> Chunks:
    """Pick and build the kernel (module docstring). ``gran``/``chunk`` force the elementwise layout (benchmarks).
    ``rule``: a step rule other than the constant step (:mod:`models.engines.gd_rules`)."""
    B = factors[0].shape[0]
    if rule is not None and rule.get("step_rule", "constant") != "constant":
        from ..gd_rules import build_rule_kernel
        return build_rule_kernel(problem, model, factors, lr, device, rule)
    cpu = device.type == "cpu"
    if isinstance(model, CP):
        # chunks bound the memory of the (m, R, chunk) buffers only: chunks below torch's grain made index_add_
        # stall on a busy 2-core machine (measured, CP order 4 dims 5 R 10 m 188, B = 100 in chunks of 17:
        # 0.2-0.5x torch autograd, one chunk: 1.7x)
        # dense products (_CPDense) on a CPU for batches: it streams ~3 prod(dims) numbers per member and step where
        # _CPSparse streams ~14 m R, whose (m, R, b) buffers outgrow the caches (measured, CP order 4, dims 5, R 10,
        # m 188, on the loaded 2-core machine, ms per step wall (CPU) with 2 torch threads: B = 16 sparse 7.4
        # (2.8), dense 3.1 (1.0); B = 100 33 (11) against 8.1 (3.2); B = 1000 249 (99) against 59 (24), torch
        # autograd 101 (40); B = 1 sparse 0.08, dense 1.4: one member's tiny products pay for the thread pool)
        dense_fits = int(np.prod(model.dims)) <= CP_DENSE_FILL * problem.m
        if kernel == "matmul" or (kernel == "auto" and cpu and B >= CP_DENSE_BATCH and dense_fits):
            return Chunks([_CPDense(problem, model, factors, lr, device)], [(0, B)])
        per = problem.m * model.rank
        size = chunk or (max(1, CP_CHUNK_ELEMS // per) if cpu else B)
        bounds = _split(B, size)
        return Chunks([_CPSparse(problem, model, [F[s:e] for F in factors], lr, device) for s, e in bounds], bounds)
    dims = model.dims
    use_elementwise = kernel == "elementwise" or (kernel == "auto" and max(dims) <= SMALL_DIM and B >= MIN_BATCH)
    if not use_elementwise:
        bounds = [(0, B)]
        return Chunks([DeepMatmulKernel(problem, model, factors, lr, device)], bounds)
    wmax = max(dims)
    widths = {"entry": 1, "row": wmax, "full": wmax * wmax}
    if gran is None:
        if not cpu:
            gran = "full"
        else:
            # the coarsest layout whose calls stay below the grain with chunks of at least MIN_CHUNK members
            # (measured: two chunks of 5000 "full" beat one chunk of 10000 "row" or "entry" for 2x2 layers)
            gran = next((g for g in ("full", "row") if GRAIN // widths[g] >= min(B, MIN_CHUNK)), "entry")
    if chunk is None:
        chunk = max(1, GRAIN // widths[gran]) if cpu else B
    bounds = _split(B, chunk)
    return Chunks([_DeepElementwise(problem, model, [F[s:e] for F in factors], lr, device, gran)
                    for s, e in bounds], bounds)
