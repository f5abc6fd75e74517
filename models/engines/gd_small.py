"""Compiled gradient descent for small deep matrix factorizations (the RC20 2x2 experiments): one scalar loop.

The RC20 gradient-descent experiment runs millions of steps on a 2x2 matrix (depth 3 to loss 1e-4 from the
official init: about 3.6M steps). Any per-step tensor library call (torch, numpy) costs microseconds of overhead
for a few dozen flops, so such a run takes minutes; this module compiles the whole loop with numba (a JIT
compiler for numeric Python, a dependency of the suite for this reason) and runs it in well under a second.

What it computes, for each member ``b`` of a batch of inits (factors ``W_1 .. W_L``, all ``d x d``) on a
:class:`~models.problems.MatrixProblem` with operator rows ``vec(A_i)`` and targets ``y_i``:

    W = W_L ... W_1,   r_i = <A_i, W> - y_i,   loss = c_l sum r_i^2,   G = c_g sum r_i A_i
    W_j <- W_j - lr * (W_L ... W_{j+1})^T G (W_{j-1} ... W_1)^T      (all layers from the same iterate)

which is full-batch ``torch.optim.SGD`` on that loss, in float64 (tested step for step). Step ``k`` records the
loss and end-to-end matrix *of iterate k* (before the k-th update), every ``record_every`` steps and at the end.
A run stops at the first iterate whose loss is ``<= until_loss`` (status "completed"), after ``steps`` updates
("budget"), or at a non-finite loss ("diverged"; the last finite iterate is kept). The det sign of the end-to-end
matrix is the product of the factors' det signs (0 when a factor's det is exactly 0).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from ..errors import InvalidInput, require

try:  # numba is a declared dependency; the import is guarded so that the error names it
    import numba
except ImportError as exc:  # pragma: no cover
    numba = None
    _NUMBA_ERROR = exc
else:
    _NUMBA_ERROR = None

STATUS_NAMES = ("completed", "budget", "diverged")


def _require_numba():
    if numba is None:
        raise InvalidInput(f"the compiled GD kernel needs numba ({_NUMBA_ERROR}); pip install numba")


def _kernel():
    """The compiled loop (compiled once per process, cached on disk when the package directory is writable)."""
    global _COMPILED
    if _COMPILED is not None:
        return _COMPILED
    _require_numba()

    @numba.njit(cache=True, fastmath=False)
    def deep_gd(F, A, y, lscale, gscale, lr, steps, until_loss, record_every,
                rec_step, rec_loss, rec_prod, rec_det, rec_scale, n_rec, final_step, final_loss, final_prod, final_det,
                status):
        B, L, d, _ = F.shape
        m = A.shape[0]
        dd = d * d
        R = np.zeros((L + 1, d, d))     # R[j] = W_{j-1} ... W_0 (R[0] = I); R[L] = W
        S = np.zeros((d, d))
        S2 = np.zeros((d, d))
        G = np.zeros((d, d))
        Gj = np.zeros((d, d))
        T = np.zeros((d, d))
        r = np.zeros(m)
        prev = np.zeros((L, d, d))
        cap = rec_loss.shape[0]
        for b in range(B):
            W = F[b]
            k = 0
            nr = 0
            st = 1
            last_loss = np.inf
            while True:
                # forward: prefix products
                for i in range(d):
                    for j in range(d):
                        R[0, i, j] = 1.0 if i == j else 0.0
                for l in range(L):
                    for i in range(d):
                        for j in range(d):
                            acc = 0.0
                            for q in range(d):
                                acc += W[l, i, q] * R[l, q, j]
                            R[l + 1, i, j] = acc
                loss = 0.0
                for i in range(m):
                    acc = -y[i]
                    for q in range(dd):
                        a = A[i, q]
                        if a != 0.0:
                            acc += a * R[L, q // d, q % d]
                    r[i] = acc
                    loss += acc * acc
                loss *= lscale
                finite = math.isfinite(loss)
                if not finite:
                    # diverged: restore the previous iterate (kept in prev) as the final state
                    st = 2
                    for l in range(L):
                        for i in range(d):
                            for j in range(d):
                                W[l, i, j] = prev[l, i, j]
                    k -= 1
                    break
                stop = loss <= until_loss or k >= steps
                if (record_every > 0 and k % record_every == 0) or stop:
                    if nr < cap:
                        rec_step[nr, b] = k
                        rec_loss[nr, b] = loss
                        for i in range(d):
                            for j in range(d):
                                rec_prod[nr, b, i, j] = R[L, i, j]
                        sc = 1.0                # prod_l ||W_l||_F, the scale of the rounding-error model
                        for l in range(L):
                            acc = 0.0
                            for i in range(d):
                                for j in range(d):
                                    acc += W[l, i, j] * W[l, i, j]
                            sc *= math.sqrt(acc)
                        rec_scale[nr, b] = sc
                        sg = 1
                        for l in range(L):
                            if d == 2:
                                dt = W[l, 0, 0] * W[l, 1, 1] - W[l, 0, 1] * W[l, 1, 0]
                            else:
                                dt = np.linalg.det(W[l])
                            if dt < 0:
                                sg = -sg
                            elif dt == 0:
                                sg = 0
                        rec_det[nr, b] = sg
                        nr += 1
                if stop:
                    st = 0 if loss <= until_loss else 1
                    last_loss = loss
                    break
                last_loss = loss
                # backward: G, then the layers from the top, S = W_{L-1} ... W_{l+1}
                for i in range(d):
                    for j in range(d):
                        G[i, j] = 0.0
                for i in range(m):
                    for q in range(dd):
                        a = A[i, q]
                        if a != 0.0:
                            G[q // d, q % d] += gscale * r[i] * a
                for i in range(d):
                    for j in range(d):
                        S[i, j] = 1.0 if i == j else 0.0
                for l in range(L):
                    for i in range(d):
                        for j in range(d):
                            prev[l, i, j] = W[l, i, j]
                for l in range(L - 1, -1, -1):
                    # T = S^T G
                    for i in range(d):
                        for j in range(d):
                            acc = 0.0
                            for q in range(d):
                                acc += S[q, i] * G[q, j]
                            T[i, j] = acc
                    # Gj = T R[l]^T
                    for i in range(d):
                        for j in range(d):
                            acc = 0.0
                            for q in range(d):
                                acc += T[i, q] * R[l, j, q]
                            Gj[i, j] = acc
                    # S <- S W_l (old W_l), then update W_l
                    for i in range(d):
                        for j in range(d):
                            acc = 0.0
                            for q in range(d):
                                acc += S[i, q] * W[l, q, j]
                            S2[i, j] = acc
                    for i in range(d):
                        for j in range(d):
                            S[i, j] = S2[i, j]
                            W[l, i, j] -= lr * Gj[i, j]
                k += 1
            n_rec[b] = nr
            final_step[b] = k
            status[b] = st
            # final state: the product of the (possibly restored) factors
            for i in range(d):
                for j in range(d):
                    R[0, i, j] = 1.0 if i == j else 0.0
            for l in range(L):
                for i in range(d):
                    for j in range(d):
                        acc = 0.0
                        for q in range(d):
                            acc += W[l, i, q] * R[l, q, j]
                        R[l + 1, i, j] = acc
            for i in range(d):
                for j in range(d):
                    final_prod[b, i, j] = R[L, i, j]
            final_loss[b] = last_loss
            sg = 1
            for l in range(L):
                dt = np.linalg.det(W[l]) if d != 2 else W[l, 0, 0] * W[l, 1, 1] - W[l, 0, 1] * W[l, 1, 0]
                if dt < 0:
                    sg = -sg
                elif dt == 0:
                    sg = 0
            final_det[b] = sg

    _COMPILED = deep_gd
    return deep_gd


_COMPILED = None


@dataclass
class SmallRun:
    """The recorded points of B runs of :func:`run_deep_gd` (ragged: member ``b`` has ``n_rec[b]`` rows).

    ``step``, ``loss``, ``det_sign`` are (rows, B) arrays and ``product`` (rows, B, d, d), valid for rows
    ``< n_rec[b]``; ``final_*`` are each member's last iterate (the last finite one for "diverged");
    ``status`` names per member; ``factors`` the final factors (B, L, d, d). ``settings`` records the step rule.
    ``scale`` (rows, B): ``prod_l ||W_l||_F`` of each recorded iterate (the scale of the ``gd-small`` engine's
    rounding-error estimate, :mod:`models.engines.fast_gd`).
    """

    step: np.ndarray
    loss: np.ndarray
    product: np.ndarray
    det_sign: np.ndarray
    n_rec: np.ndarray
    final_step: np.ndarray
    final_loss: np.ndarray
    final_product: np.ndarray
    final_det_sign: np.ndarray
    status: list
    factors: np.ndarray
    seconds: float
    settings: dict = field(default_factory=dict)
    scale: np.ndarray | None = None

    def member(self, b: int) -> dict:
        """Member ``b``'s records as plain arrays: ``step``, ``loss``, ``product``, ``det_sign``."""
        n = int(self.n_rec[b])
        return {"step": self.step[:n, b].copy(), "loss": self.loss[:n, b].copy(),
                "product": self.product[:n, b].copy(), "det_sign": self.det_sign[:n, b].copy()}


def run_deep_gd(problem, factors, *, lr: float, steps: int, until_loss: float = 0.0,
                record_every: int | None = None) -> SmallRun:
    """Full-batch gradient descent (step ``lr``) on ``problem`` from ``factors``: an array (B, L, d, d) of B inits
    of a depth-L square factorization, or a list of L arrays (d, d) for one init. See the module docstring."""
    _require_numba()
    F = np.array(factors, dtype=np.float64, copy=True)
    if F.ndim == 3:
        F = F[None]
    require(F.ndim == 4 and F.shape[2] == F.shape[3], f"factors must be (B, L, d, d), got shape {F.shape}")
    B, L, d, _ = F.shape
    require(tuple(problem.shape) == (d, d), f"the factors are {d}x{d} but the problem is {problem.shape}")
    require(L >= 1 and B >= 1, "need at least one layer and one init")
    require(np.all(np.isfinite(F)), "the initial factors must be finite")
    lr, steps = float(lr), int(steps)
    require(lr > 0 and math.isfinite(lr), f"lr must be > 0, got {lr!r}")
    require(steps >= 0, f"steps must be >= 0, got {steps!r}")
    every = 0 if record_every is None else int(record_every)
    require(every >= 0, f"record_every must be >= 1, got {record_every!r}")
    cap = (steps // every + 2) if every else 2
    A = np.ascontiguousarray(problem.operator, dtype=np.float64)
    y = np.ascontiguousarray(problem.targets, dtype=np.float64)
    rec_step = np.zeros((cap, B), dtype=np.int64)
    rec_loss = np.full((cap, B), np.nan)
    rec_prod = np.full((cap, B, d, d), np.nan)
    rec_det = np.zeros((cap, B), dtype=np.int8)
    rec_scale = np.full((cap, B), np.nan)
    n_rec = np.zeros(B, dtype=np.int64)
    final_step = np.zeros(B, dtype=np.int64)
    final_loss = np.zeros(B)
    final_prod = np.zeros((B, d, d))
    final_det = np.zeros(B, dtype=np.int8)
    status = np.zeros(B, dtype=np.int64)
    kern = _kernel()
    t0 = time.perf_counter()
    kern(F, A, y, float(problem.loss_scale), float(problem.grad_scale), lr, steps, float(until_loss), every,
         rec_step, rec_loss, rec_prod, rec_det, rec_scale, n_rec, final_step, final_loss, final_prod, final_det, status)
    seconds = time.perf_counter() - t0
    n = int(n_rec.max()) if B else 0
    return SmallRun(rec_step[:n], rec_loss[:n], rec_prod[:n], rec_det[:n], n_rec, final_step, final_loss, final_prod,
                    final_det, [STATUS_NAMES[int(s)] for s in status], F, seconds,
                    {"engine": "gd-small (numba, float64)", "step_rule": "constant", "lr": lr, "steps": steps,
                     "until_loss": float(until_loss), "record_every": every, "reduction": problem.reduction},
                    rec_scale[:n])


def warm_up() -> float:
    """Compile the kernel (or load it from numba's cache) now; returns the seconds it took."""
    from ..problems import rc20

    t0 = time.perf_counter()
    run_deep_gd(rc20(), np.eye(2)[None].repeat(2, 0) * 0.5, lr=1e-3, steps=2)
    return time.perf_counter() - t0


__all__ = ["SmallRun", "run_deep_gd", "warm_up"]
