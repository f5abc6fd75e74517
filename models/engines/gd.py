"""``gd``: batched full-batch gradient descent in torch float64 (CPU or CUDA), with analytic gradients.

The map iterated is plain gradient descent on the overparameterized objective,

    W_j  <-  W_j - lr * d phi / d W_j        (every layer, or every CP factor matrix, from the same iterate)

exactly what ``torch.optim.SGD(params, lr)`` does on the autograd loss ``loss_scale * sum(residual^2)``
(:func:`autograd_gd_reference` is that loop; the tests check agreement to float64 rounding).

Kernels (chosen per run; option ``kernel``)
-------------------------------------------
- **elementwise** (deep matrix factorization with every width <= 8): the batch is the LAST axis, each layer a
  contiguous ``(d_j, d_{j-1}, B)`` tensor, and every small matrix product is unrolled into in-place broadcast
  ``mul``/``addcmul_`` calls on preallocated buffers (``C[i,k] (+)= A[i,j] * B[j,k]`` one batch vector at a time,
  one row at a time, or whole slices, whichever keeps each call below torch's parallel grain of 32768 elements:
  above it torch forks OpenMP threads per call, which costs more than it saves for these tiny calls and is
  disastrous when the cores are shared). Batches larger than that are cut into independent chunks. The layer
  updates are fused into the backward pass (``W_j += -lr * H_j P_{j-1}^T`` as ``addcmul_`` terms, computed after
  ``H_{j-1} = W_j^T H_j`` has used the old ``W_j``); entries of the end-to-end gradient that are structurally zero
  (unobserved entries of a completion problem) are skipped. The loop is a flat list of prebound calls.
- **matmul** (deep matrix factorization with a width > 8, or forced): batch-FIRST ``(B, d_j, d_{j-1})`` tensors
  and ``torch.bmm``/``baddbmm_`` with ``out=`` buffers.
- **cp** (CP tensor completion): batch-last factors ``(d_n, R, B)``; only the observed entries are formed
  (``index_select`` gathers of the factor rows, leave-one-out products from prefix/suffix products, so no
  division), the gradient rows are summed back with ``index_add_``, and batches are cut into chunks whose calls stay
  below the parallel grain.

For completion problems the end-to-end gradient ``grad_scale * A^T r`` is formed sparsely (slices of the observed
entries); for sensing problems with ``torch.addmm``/``torch.mm`` on the measurement operator.

Recording and checks
--------------------
The loop runs uninterrupted between *checks* (every ``check_every`` steps, default 128, and at every recorded step).
A check evaluates every trajectory at the current step: a member whose factors, product or loss is non-finite is
*diverged* (its factors are put back to the last checked finite state and frozen; its recorded points stop at the
last finite record); a member whose loss is at or below ``until_loss`` is *done* (frozen there). Frozen members
are masked out of the update (their end-to-end gradient is multiplied by 0, so they stay exactly put) while the
rest continue. Points are recorded at step 0, every ``record_every`` steps (default: none in between) and at the
end; each member's final state (step ``final_step``) is evaluated once more at the end.

Error estimate
--------------
GD is an exact discrete map, so its only error is floating-point rounding. Each step perturbs each factor entry
by a few ulps of the factor scale (the update and the gradient's dot products: we count ``8 eps`` relative per
step), these perturbations accumulate at most linearly when the map is not expanding (``lr`` below the
stability threshold, the regime GD is used in), and a relative perturbation ``delta`` of every factor moves the
product by at most ``L * delta * prod_j ||W_j||_F``. Hence, at step ``k``,

    product_err = 8 * eps * L * (k + 1) * prod_j ||W_j||_F          (deep matrix; L = depth)
    product_err = 8 * eps * N * (k + 1) * sum_r prod_n ||w_r^n||_2   (CP; N = order)
    loss_err    = loss_scale * sum_i (2 |r_i| a_i product_err + (a_i product_err)^2) + 2 m eps loss

(``a_i`` the l1 norm of measurement i, 1 for completion). This is a deterministic first-order estimate, not a
rigorous bound: it ignores amplification of earlier rounding by an expanding map (unstable ``lr``), which is
what ``status="diverged"`` catches in the extreme.

Measured speed
--------------
See :func:`bench_gd` (called by ``verify bench``) and the report of the commit that added this file.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import torch

from ..errors import InvalidInput, require
from ..factorizations import CP, DeepMatrix, cp_tensor
from ..problems import MatrixProblem, TensorProblem
from ..trajectory import Point, Status, Trajectory, relative_error
from .base import AbstractEngine, Result, Spec, _describe_model

F64 = torch.float64
EPS = float(np.finfo(float).eps)
DET_FLOOR = 64 * EPS
GRAIN = 32768          # torch's at::internal::GRAIN_SIZE: elementwise CPU calls above it fork OpenMP threads
SMALL_DIM = 8          # widest layer the elementwise kernel handles
MIN_CHUNK = 2048       # smallest chunk worth a coarser elementwise layout
MIN_BATCH = 64         # below this many members, bmm (fewer calls) beats the unrolled elementwise products
MAX_RUNS = 16         # completion with more runs of consecutive observed entries: gather/scatter (matmul kernel)
KERNELS = ("auto", "elementwise", "matmul")
_MAX_STEPS_NO_LIMIT = 2 ** 62


# ================================================================================================================
# Results
# ================================================================================================================
@dataclass(frozen=True, eq=False)
class BatchResult:
    """Recorded points of B gradient-descent trajectories run together.

    Rows are the recorded steps shared by the batch: ``steps`` (n_rec,), and per row and member ``loss``
    (n_rec, B), ``product`` (n_rec, B, ...), ``det_sign`` (n_rec, B) int8 (+1/-1; 0 where undefined or not
    resolvable in float64), ``recorded`` (n_rec, B) bool (False once a member stopped or diverged: its entries are
    NaN / 0 there), ``loss_err`` and ``product_err`` (n_rec, B). ``final_*`` describe each member's last trusted
    state: ``final_step`` (B,), ``final_loss`` (B,), ``final_product`` (B, ...), ``final_det_sign`` (B,),
    ``final_factors`` (list of (B, ...) arrays, first layer / mode first). ``status`` (B,) holds
    :class:`~models.trajectory.Status` value names ("completed", "diverged", "budget").
    """

    steps: np.ndarray
    loss: np.ndarray
    product: np.ndarray
    det_sign: np.ndarray
    recorded: np.ndarray
    loss_err: np.ndarray
    product_err: np.ndarray
    final_step: np.ndarray
    final_loss: np.ndarray
    final_product: np.ndarray
    final_det_sign: np.ndarray
    final_loss_err: np.ndarray
    final_product_err: np.ndarray
    final_factors: list
    status: np.ndarray
    seconds: float
    settings: dict = field(default_factory=dict)
    stats: dict = field(default_factory=dict)

    @property
    def B(self) -> int:
        return int(self.status.shape[0])

    def trajectory(self, b: int) -> Trajectory:
        """Member ``b`` as a :class:`~models.trajectory.Trajectory` (its recorded rows plus its final state)."""
        require(isinstance(b, (int, np.integer)) and 0 <= b < self.B, f"member index must be in [0, {self.B}), got {b!r}")
        b = int(b)
        points = []
        for r in np.flatnonzero(self.recorded[:, b]):
            points.append(_point(int(self.steps[r]), self.loss[r, b], self.product[r, b], self.det_sign[r, b],
                                 self.loss_err[r, b], self.product_err[r, b], None))
        factors = tuple(np.array(F[b]) for F in self.final_factors)
        fs = int(self.final_step[b])
        if points and points[-1].step == fs:
            last = points[-1]
            points[-1] = Point(None, fs, last.loss, last.product, last.det_sign, factors, last.loss_err,
                               last.product_err)
        elif (not points or points[-1].step < fs) and math.isfinite(float(self.final_loss[b])):
            points.append(_point(fs, self.final_loss[b], self.final_product[b], self.final_det_sign[b],
                                 self.final_loss_err[b], self.final_product_err[b], factors))
        status = Status(str(self.status[b]))
        stats = dict(self.stats)
        stats.update({"steps": fs, "member": b})
        return Trajectory("gd", dict(self.settings), tuple(points), status, status.message, relative_error(points),
                          "float64", {}, stats, self.seconds)


def _point(step, loss, prod, det, lerr, perr, factors) -> Point:
    det = int(det)
    return Point(None, int(step), float(loss), np.array(prod), det if det != 0 else None, factors, float(lerr),
                 float(perr))


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


def _runs(flat_idx: np.ndarray, width: int) -> list[tuple[int, int, int]]:
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


def _det_sign_batch(factors: list[np.ndarray]) -> np.ndarray:
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
            for start, stop, off in _runs(flat, width):
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

    def set_mask(self, mask: torch.Tensor | None) -> None:
        self.mask = mask
        ops = list(self._res_ops)
        if mask is not None:
            ops += [partial(t.mul_, mask) for t in self._mask_targets]
        if self._op is not None:
            ops += self._res_tail
        self.tail_ops = ops + self._bwd_ops
        self.ops = self.fwd_ops + self.tail_ops

    # ----- evaluation (after fwd_ops) -----------------------------------------------------------------------
    def residuals(self) -> np.ndarray:
        Pf = _host(self.Pflat)
        if self._obs is not None:
            return Pf[self._obs_np] - self._y_np[:, None]
        return self.problem.operator @ Pf - self.problem.targets[:, None]

    def product(self) -> np.ndarray:
        return np.moveaxis(_host(self.P[-1]), -1, 0).copy()


class _DeepMatmul(_DeepKernel):
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
            runs = _runs(flat, d * dp)
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

    def set_mask(self, mask: torch.Tensor | None) -> None:
        self.mask = mask
        ops = list(self._res_ops)
        if mask is not None:
            ops += [partial(t.mul_, mask.reshape(-1, 1)) for t in self._mask_targets]
        if getattr(self, "_scatter", None) is not None:
            ops.append(self._scatter)
        if self._op is not None:
            ops += self._res_tail
        self.tail_ops = ops + self._bwd_ops
        self.ops = self.fwd_ops + self.tail_ops

    def residuals(self) -> np.ndarray:
        Pf = _host(self.Pflat)
        if self._obs is not None:
            return (Pf[:, self._obs_np] - self._y_np).T
        return self.problem.operator @ Pf.T - self.problem.targets[:, None]

    def product(self) -> np.ndarray:
        return _host(self.P[-1]).copy()


class _CPSparse(_KernelBase):
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
        self.fwd_ops, self._bwd_ops = fwd, bwd
        self.state = self.U
        self._snap = None
        self.set_mask(None)

    def set_mask(self, mask: torch.Tensor | None) -> None:
        self.mask = mask
        ops = list(self._res_ops)
        if mask is not None:
            ops.append(partial(self._r.mul_, mask))
        self.tail_ops = ops + self._bwd_ops
        self.ops = self.fwd_ops + self.tail_ops

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


class _Chunks:
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


# public names for the step-rule kernels of models.engines.gd_rules and the benchmarks of bench_scaling
DeepMatmulKernel = _DeepMatmul
Chunks = _Chunks


def _split(B: int, size: int) -> list[tuple[int, int]]:
    n = max(1, -(-B // max(1, size)))
    edges = [round(i * B / n) for i in range(n + 1)]
    return [(edges[i], edges[i + 1]) for i in range(n)]


def _build_kernel(problem, model, factors: list[np.ndarray], lr: float, device: torch.device, kernel: str,
                  gran: str | None = None, chunk: int | None = None, rule: dict | None = None) -> _Chunks:
    """Pick and build the kernel (module docstring). ``gran``/``chunk`` force the elementwise layout (benchmarks).
    ``rule``: a step rule other than the constant step (:mod:`models.engines.gd_rules`)."""
    B = factors[0].shape[0]
    if rule is not None and rule.get("step_rule", "constant") != "constant":
        from .gd_rules import build_rule_kernel
        return build_rule_kernel(problem, model, factors, lr, device, rule)
    cpu = device.type == "cpu"
    if isinstance(model, CP):
        per = problem.m * model.rank
        size = chunk or (max(1, GRAIN // per) if cpu else B)
        # chunks below the grain pay only when a chunk still holds a useful number of members
        if cpu and chunk is None and size < 4:
            size = B
        bounds = _split(B, size)
        return _Chunks([_CPSparse(problem, model, [F[s:e] for F in factors], lr, device) for s, e in bounds], bounds)
    dims = model.dims
    use_elementwise = kernel == "elementwise" or (kernel == "auto" and max(dims) <= SMALL_DIM and B >= MIN_BATCH)
    if not use_elementwise:
        bounds = [(0, B)]
        return _Chunks([_DeepMatmul(problem, model, factors, lr, device)], bounds)
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
    return _Chunks([_DeepElementwise(problem, model, [F[s:e] for F in factors], lr, device, gran)
                    for s, e in bounds], bounds)


# ================================================================================================================
# The batched loop
# ================================================================================================================
def _run_loop(K: _Chunks, problem, model, *, steps: int | None, until_loss: float | None, record_every: int | None,
              record_at: tuple[int, ...] | None, per_decade: int | None, check_every: int,
              wall_budget: float | None, settings: dict, device: torch.device) -> BatchResult:
    start = time.perf_counter()
    B = K.b
    depth = model.depth if isinstance(model, DeepMatrix) else model.order
    is_matrix = isinstance(model, DeepMatrix)
    a_rows = problem.measurement_norms() if is_matrix else np.ones(problem.m)
    m = problem.m
    ls = problem.loss_scale
    end_step = steps if steps is not None else _MAX_STEPS_NO_LIMIT
    rec_at = sorted({int(s) for s in record_at if 0 <= s <= end_step}) if record_at else []

    active = np.ones(B, bool)
    status = np.array([Status.COMPLETED.value] * B, dtype=object)
    final_step = np.zeros(B, np.int64)
    last_rec_loss = np.full(B, np.inf)
    rows: list[tuple] = []
    n_checks = 0
    steps_done = 0  # trajectory-steps actually iterated (frozen members included)

    def evaluate(at_step):
        """Loss, product error and loss error per member, at step ``at_step`` (scalar or per member)."""
        with np.errstate(all="ignore"):
            r = K.residuals()
            loss = ls * (r * r).sum(axis=0)
            perr = 8.0 * EPS * depth * (np.asarray(at_step, dtype=float) + 1.0) * K.scale()
            lerr = ls * (2.0 * np.abs(r) * a_rows[:, None] * perr + (a_rows[:, None] * perr) ** 2).sum(axis=0) \
                + 2.0 * m * EPS * loss
        return loss, perr, lerr

    def record(s: int, sel: np.ndarray, loss, perr, lerr):
        with np.errstate(all="ignore"):
            prod = K.product()
        det = _det_sign_batch(K.factors()) if is_matrix else np.zeros(B, np.int8)
        loss_r = np.where(sel, loss, np.nan)
        prod_r = np.where(sel.reshape((B,) + (1,) * (prod.ndim - 1)), prod, np.nan)
        rows.append((s, sel.copy(), loss_r, prod_r, np.where(sel, det, 0).astype(np.int8),
                     np.where(sel, lerr, np.nan), np.where(sel, perr, np.nan)))

    s = 0
    snap_step = 0
    mask_dirty = False
    ptr = 0  # next entry of rec_at
    for op in K.fwd_ops:
        op()
    while True:
        # ---- check at step s (fwd_ops have been run for the current iterate) --------------------------------
        n_checks += 1
        loss, perr, lerr = evaluate(s)
        with np.errstate(all="ignore"):
            fin = K.finite() & np.isfinite(loss) & np.isfinite(lerr)
        newly = active & ~fin
        if newly.any():
            K.restore(newly)
            status[newly] = Status.DIVERGED.value
            final_step[newly] = snap_step
            active &= ~newly
            mask_dirty = True
            for op in K.fwd_ops:  # the restored members need their product recomputed
                op()
            loss, perr, lerr = evaluate(s)
        at_end = s >= end_step
        over_budget = wall_budget is not None and not at_end and time.perf_counter() - start > wall_budget
        while ptr < len(rec_at) and rec_at[ptr] < s:
            ptr += 1
        sel = np.zeros(B, bool)
        if s == 0 or at_end or over_budget or (record_every and s % record_every == 0) \
                or (ptr < len(rec_at) and rec_at[ptr] == s):
            sel |= active
        if per_decade:
            sel |= active & (loss <= last_rec_loss * 10.0 ** (-1.0 / per_decade))
        reached = active & (loss <= until_loss) if until_loss is not None else np.zeros(B, bool)
        sel |= reached
        if sel.any():
            record(s, sel, loss, perr, lerr)
            last_rec_loss = np.where(sel, loss, last_rec_loss)
        if reached.any():
            final_step[reached] = s
            active &= ~reached
            mask_dirty = True
        if at_end or over_budget:
            final_step[active] = s
            if over_budget:
                status[active] = Status.BUDGET.value
            active[:] = False
        if not active.any():
            break
        K.snapshot()
        snap_step = s
        if mask_dirty:
            K.set_mask(torch.tensor(active, dtype=F64, device=device))
            mask_dirty = False
        # ---- run to the next check ------------------------------------------------------------------------
        nxt = min(end_step, s + check_every)
        if record_every:
            nxt = min(nxt, (s // record_every + 1) * record_every)
        while ptr < len(rec_at) and rec_at[ptr] <= s:
            ptr += 1
        if ptr < len(rec_at):
            nxt = min(nxt, rec_at[ptr])
        n = nxt - s
        for op in K.tail_ops:
            op()
        ops = K.ops
        for _ in range(n - 1):
            for op in ops:
                op()
        for op in K.fwd_ops:
            op()
        s = nxt
        steps_done += n * B

    # ---- final states (frozen members sit at their final step; diverged ones at their last finite check) ------
    for op in K.fwd_ops:
        op()
    loss, f_perr, f_lerr = evaluate(final_step)
    factors = K.factors()
    with np.errstate(all="ignore"):
        prod = K.product()
    det = _det_sign_batch(factors) if is_matrix else np.zeros(B, np.int8)
    seconds = time.perf_counter() - start
    shape = tuple(model.shape) if is_matrix else tuple(model.dims)
    if rows:
        steps_arr = np.array([row[0] for row in rows], np.int64)
        stacked = [np.stack([row[i] for row in rows]) for i in range(1, 7)]
    else:
        steps_arr = np.zeros(0, np.int64)
        stacked = [np.zeros((0, B), bool), np.zeros((0, B)), np.zeros((0, B) + shape), np.zeros((0, B), np.int8),
                   np.zeros((0, B)), np.zeros((0, B))]
    recorded, loss_rows, prod_rows, det_rows, lerr_rows, perr_rows = stacked
    stats = {"steps": int(final_step.max()) if B else 0, "B": B, "device": str(device), "kernel": K.kind,
             "granularity": K.gran, "chunks": len(K.kernels), "checks": n_checks,
             "trajectory_steps": int(steps_done), "steps_per_s": steps_done / max(seconds, 1e-12)}
    return BatchResult(steps_arr, loss_rows, prod_rows, det_rows, recorded, lerr_rows, perr_rows, final_step,
                       loss, prod, det, f_lerr, f_perr, factors, status.astype(str), seconds, settings, stats)


# ================================================================================================================
# The engine
# ================================================================================================================
def _resolve_device(device) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    require(device in ("cpu", "cuda") or isinstance(device, torch.device),
            f"device must be None, 'cpu' or 'cuda', got {device!r}")
    dev = torch.device(device)
    require(dev.type in ("cpu", "cuda"), f"device must be None, 'cpu' or 'cuda', got {device!r}")
    if dev.type == "cuda":
        require(torch.cuda.is_available(), "device 'cuda' requested but torch sees no CUDA device")
    return dev


resolve_device = _resolve_device


def _positive_int_or_none(name: str, v) -> int | None:
    if v is None:
        return None
    require(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1,
            f"{name} must be a positive integer or None, got {v!r}")
    return int(v)


class GradientDescent(AbstractEngine):
    """Batched float64 gradient descent (see the module docstring).

    Options: ``lr`` (step size, positive finite), ``device`` (None: CUDA if torch sees one, else CPU; or "cpu",
    "cuda"), ``record_every`` (record every k steps; None: the start and the end only, or ``per_decade`` points per
    decade of loss in :meth:`run`), ``check_every`` (steps between divergence / ``until_loss`` / budget checks),
    ``kernel`` ("auto", "elementwise", "matmul": deep matrix kernels; CP always uses its sparse kernel),
    ``step_rule`` ("constant", the default: ``lr`` every step; "normalized": one global step per iteration,
    ``lr / (sqrt(avg ||grad||^2) + rms_eps)`` with the average's decay ``rms_alpha``, as the official trainers'
    GroupRMSprop; deep matrix factorizations only; see :mod:`models.engines.gd_rules`). The step rule and its
    options are part of every result's settings (``describe_options``).
    """

    name = "gd"

    def __init__(self, lr: float = 1e-2, device=None, record_every: int | None = None, check_every: int = 128,
                 kernel: str = "auto", step_rule: str = "constant", rms_alpha: float = 0.99, rms_eps: float = 1e-6):
        require(isinstance(lr, (int, float, np.floating)) and not isinstance(lr, bool) and math.isfinite(lr)
                and lr > 0, f"lr must be a positive finite number, got {lr!r}")
        self.lr = float(lr)
        self.device = _resolve_device(device)
        self.record_every = _positive_int_or_none("record_every", record_every)
        ce = _positive_int_or_none("check_every", check_every)
        require(ce is not None, f"check_every must be a positive integer, got {check_every!r}")
        self.check_every = ce
        require(kernel in KERNELS, f"kernel must be one of {KERNELS}, got {kernel!r}")
        self.kernel = kernel
        from .gd_rules import check_rule
        self.rule = check_rule(step_rule, rms_alpha, rms_eps)

    def describe_options(self) -> dict:
        return {"lr": self.lr, "device": str(self.device), "record_every": self.record_every,
                "check_every": self.check_every, "kernel": self.kernel, **self.rule}

    # ------------------------------------------------------------------------------------------------------
    def run_batch(self, problem, model, factors_batch, *, steps: int | None, record_every: int | None = None,
                  until_loss: float | None = None, wall_budget: float | None = None) -> BatchResult:
        """Run B trajectories at once; ``factors_batch`` holds one ``(B, *layer_shape)`` array per layer (or per CP
        mode ``(B, d_n, R)``). ``steps`` is the step count (None: until every member reached ``until_loss``, which
        then needs a ``wall_budget``)."""
        factors = self._check_batch(problem, model, factors_batch)
        if steps is not None:
            require(isinstance(steps, (int, np.integer)) and not isinstance(steps, bool) and steps >= 0,
                    f"steps must be an integer >= 0, got {steps!r}")
            steps = int(steps)
        if until_loss is not None:
            require(isinstance(until_loss, (int, float)) and math.isfinite(until_loss) and until_loss > 0,
                    f"until_loss must be a positive number, got {until_loss!r}")
        if wall_budget is not None:
            require(isinstance(wall_budget, (int, float)) and wall_budget > 0,
                    f"wall_budget must be a positive number, got {wall_budget!r}")
        require(steps is not None or (until_loss is not None and wall_budget is not None),
                "gradient descent needs steps, or until_loss together with wall_budget")
        every = _positive_int_or_none("record_every", record_every) or self.record_every
        K = _build_kernel(problem, model, factors, self.lr, self.device, self.kernel, rule=self.rule)
        settings = {"engine": self.name, "problem": problem.describe(), "model": _describe_model(model),
                    "steps": steps, "until_loss": until_loss, **self.describe_options()}
        with torch.no_grad():
            res = _run_loop(K, problem, model, steps=steps, until_loss=until_loss, record_every=every,
                            record_at=None, per_decade=None, check_every=self.check_every,
                            wall_budget=wall_budget, settings=settings, device=self.device)
        if hasattr(K, "rule_time"):
            res.stats["rule_time"] = [float(v) for v in K.rule_time()]
        return res

    @staticmethod
    def _check_batch(problem, model, factors_batch) -> list[np.ndarray]:
        if isinstance(model, DeepMatrix):
            require(isinstance(problem, MatrixProblem), "a deep matrix factorization needs a matrix problem")
            require(model.shape == problem.shape,
                    f"model shape {model.shape} differs from problem shape {problem.shape}")
            shapes, what = model.layer_shapes, "W"
        elif isinstance(model, CP):
            require(isinstance(problem, TensorProblem), "a CP factorization needs a tensor problem")
            require(model.dims == problem.dims, f"model dims {model.dims} differ from problem dims {problem.dims}")
            shapes, what = [(d, model.rank) for d in model.dims], "U"
        else:
            raise InvalidInput(f"unknown model {model!r}")
        require(isinstance(factors_batch, (list, tuple)) and len(factors_batch) == len(shapes),
                f"factors_batch must be a list of {len(shapes)} arrays, got "
                f"{type(factors_batch).__name__} of length {len(factors_batch) if hasattr(factors_batch, '__len__') else '?'}")
        out = []
        B = None
        for j, (F, shp) in enumerate(zip(factors_batch, shapes), start=1):
            F = np.asarray(F, dtype=float)
            require(F.ndim == 3 and F.shape[1:] == tuple(shp),
                    f"factor {what}_{j} batch must have shape (B, {shp[0]}, {shp[1]}), got {F.shape}")
            B = F.shape[0] if B is None else B
            require(F.shape[0] == B and B >= 1, f"factor {what}_{j} batch has {F.shape[0]} members, expected {B}")
            require(bool(np.all(np.isfinite(F))), f"factor {what}_{j} batch has non-finite entries")
            out.append(F)
        return out

    def _run(self, spec: Spec) -> Result:
        steps = spec.steps
        require(spec.t_max is None or self.rule["step_rule"] == "constant",
                "t_max converts to steps only with the constant step rule; give steps or until_loss")
        if spec.t_max is not None:
            from_t = int(math.ceil(spec.t_max / self.lr - 1e-9))
            steps = from_t if steps is None else min(steps, from_t)
        require(steps is not None or spec.until_loss is not None,
                "gradient descent needs steps (or t_max, converted to ceil(t_max / lr) steps) or until_loss")
        opts = dict(spec.options)
        unknown = set(opts) - {"record_every", "check_every"}
        require(not unknown, f"unknown gd run options {sorted(unknown)!r}; allowed: record_every, check_every")
        every = _positive_int_or_none("record_every", opts.get("record_every")) or self.record_every
        check_every = _positive_int_or_none("check_every", opts.get("check_every")) or self.check_every
        record_at = None
        if spec.record_at:
            record_at = []
            for v in spec.record_at:
                require(float(v) >= 0 and float(v) == int(v), f"gd record_at entries must be step numbers, got {v!r}")
                record_at.append(int(v))
            record_at = tuple(record_at)
        per_decade = None if (every or record_at) else spec.per_decade
        factors = [np.asarray(F, dtype=float)[None] for F in spec.init.factors]
        K = _build_kernel(spec.problem, spec.model, factors, self.lr, self.device, self.kernel, rule=self.rule)
        with torch.no_grad():
            res = _run_loop(K, spec.problem, spec.model, steps=steps, until_loss=spec.until_loss, record_every=every,
                            record_at=record_at, per_decade=per_decade, check_every=check_every,
                            wall_budget=spec.wall_budget, settings={}, device=self.device)
        traj = res.trajectory(0)
        stats = dict(res.stats)
        stats["step_rule"] = self.rule["step_rule"]
        if hasattr(K, "rule_time"):
            stats["rule_time"] = float(K.rule_time()[0])
        stats["steps"] = int(res.final_step[0])
        stats["steps_per_s"] = stats["trajectory_steps"] / max(res.seconds, 1e-12)
        stats.pop("member", None)
        return Result(list(traj.points), traj.status, traj.status.message, "float64",
                      {"rounding_model": "8 eps L (k+1) prod ||W_j||_F"}, stats, traj.error_estimate)


# ================================================================================================================
# The naive reference (what a user would write) and the benchmark
# ================================================================================================================
def _torch_loss(problem, model, params, op_T=None, y=None):
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
    dev = _resolve_device(device)
    params = [torch.tensor(np.asarray(F, dtype=float), dtype=F64, device=dev, requires_grad=True)
              for F in factors_batch]
    if isinstance(model, DeepMatrix):
        # completion: gather the observed entries (what a user writes: W[rows, cols] - y), never a dense operator
        op_T = (torch.tensor(problem.obs_flat, dtype=torch.long, device=dev) if problem.obs_flat is not None
                else torch.tensor(problem.operator.T, dtype=F64, device=dev))
    else:
        op_T = torch.tensor(problem._flat, dtype=torch.long, device=dev)
    y = torch.tensor(problem.targets, dtype=F64, device=dev)
    opt = torch.optim.SGD(params, lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        loss = _torch_loss(problem, model, params, op_T, y)
        loss.backward()
        opt.step()
    return [p.detach().cpu().numpy() for p in params]


def _time_rate(fn, min_seconds: float) -> tuple[float, int]:
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
    completion (Gaussian init 0.1 / sqrt(R), lr 5e-2) at B = 1 and 100. ``steps_per_s`` counts trajectory-steps
    (B steps per batched step). Each measurement runs for about ``seconds``.
    """
    from .. import inits
    from ..problems import random_tensor_completion, rc20

    dev = _resolve_device(device)
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
             ("gd cp order4", tproblem, tmodel, 5e-2, cp_batch, (1, 100))]
    for label, prob, mdl, lr, make, Bs in cases:
        eng = GradientDescent(lr=lr, device=dev, check_every=1 << 20)
        for B in Bs:
            fb = make(B)
            sec_per_step, _ = _time_rate(lambda n: eng.run_batch(prob, mdl, fb, steps=n), seconds)
            naive_sec, _ = _time_rate(lambda n: autograd_gd_reference(prob, mdl, fb, lr, n, device=dev),
                                      seconds / 2)
            ours, naive = B / sec_per_step, B / naive_sec
            rows.append({"workload": f"{label} B={B}", "B": B, "steps_per_s": ours, "naive_steps_per_s": naive,
                         "ratio": ours / naive, "device": str(dev)})
    return rows


__all__ = ["BatchResult", "GradientDescent", "autograd_gd_reference", "bench_gd"]
