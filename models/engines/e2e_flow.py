"""Balanced deep matrix factorization of any ``d x d'`` through the end-to-end flow (the ``gf`` engine's ``e2e``
path).

For balanced factors (``W_{j+1}^T W_{j+1} = W_j W_j^T``, preserved by gradient flow) the end-to-end matrix
``W = W_N ... W_1`` obeys a closed equation (Arora, Cohen & Hazan 2018, Theorem 1):

    dW/dt = -P_W(grad l(W)),   P_W(G) = sum_{j=1}^N (W W^T)^{(j-1)/N} G (W^T W)^{(N-j)/N}.

With the full SVD ``W = U S V^T`` (``U`` ``d x d``, ``V`` ``d' x d'``, ``s_k = 0`` beyond ``min(d, d')``) the
operator is diagonal in the basis ``u_k v_l^T``:

    P_W(G) = U ((U^T G V) o K) V^T,   K_kl = sum_{j=1}^N s_k^{2(j-1)/N} s_l^{2(N-j)/N}   (0^0 = 1),

summed term by term (no cancellation; ``K_kk = N s_k^{2 - 2/N}``, the singular-value dynamics of ACHL19). So the
flow has ``d d'`` unknowns whatever the depth (the raw factors have ``N`` times as many, and their
Jacobian is dense), and one right-hand side costs one SVD and four matrix products. The state is ``W``
itself, integrated in log-time ``tau = log(1 + t)`` by scipy's BDF like the other paths.

Stiff linear algebra. BDF's Newton iteration needs ``(I - c J)^{-1}``. The Jacobian used is the structured
``J ~ -P_W H`` (``H`` the loss's Hessian in ``W``: the observed-entry mask times ``grad_scale`` for completion,
``grad_scale A^T A`` for sensing); it drops the term ``(D P_W)[dW] grad l``, which vanishes as the loss does
(the stiffness is a late-flow effect) and only slows the simplified Newton iteration (BDF then re-evaluates the
Jacobian or shortens the step; the error control is unaffected). Measured on rc20_larger depth 3 at loss 1e-3: it
differs from a finite-difference Jacobian by ~1e-3 (Frobenius, relative), and the exact Jacobian (divided
differences of the powers) saves ~15% of the LU factorizations on 10x10, not worth its ``(d d')^2`` cost. Two ways to solve with it:

- ``d d' <= DENSE_MAX`` (256; measured: 15x15 is faster dense, 20x20 matrix-free): the ``d d' x d d'`` matrix
  ``-P_W H`` is formed from the SVD (``P_W = Q diag(K) Q^T`` with ``Q = U kron V``) and BDF factors it as usual.
- larger: matrix-free. ``(I + a P_W H) x = b`` is the symmetric positive definite system ``(P_W^{-1} + a H) x =
  P_W^{-1} b``, solved by preconditioned conjugate gradients in the singular basis (``Y = U^T X V``): the
  operator is ``Y / K + a U^T H(U Y V^T) V``, the preconditioner ``K / (1 + a h K)`` with ``h`` the mean diagonal
  of ``H``; an iteration costs four ``d x d x d'`` products. Nothing of size ``(d d')^2`` is formed. BDF's LU is
  replaced by this solve through :class:`models.engines.krylov.KrylovBDF` (shared with the raw path's MINRES).

Cost: one SVD per right-hand side dominates; on a loaded 2-core machine a multithreaded BLAS made the 50x50 SVD
10-30x slower than one thread (set ``OPENBLAS_NUM_THREADS=1`` there; the engine leaves the thread pool alone).
Measured single-threaded, balanced init 1e-2, depth 3, to loss 1e-10, with the error-estimate run: 10x10 rank 1
in 1.4 s, 50x50 rank 2 in 17 s (``verify bench --only gf-e2e``); 100x100 rank 5 with 5,000 entries in 91 s
without the error-estimate run.

Small singular values: ``W`` is stored directly with an absolute tolerance ``1e-14`` times its current largest
entry (the ``gf`` engine restarts BDF with a new one when that entry grows 10x: entries computed from an SVD carry
a rounding error ~ eps times the largest, and a tolerance kept at the start's scale while ``W`` grows 1000x made
BDF crawl), so singular values far below the largest are still resolved; for square ``W`` the run stops with
``precision_lost`` (as the raw path does) once ``s_min / s_max`` falls below ``1e3 eps``, where float64 could flip
the det. The log-singular-value chart of :mod:`models.chart` remains the path for the 2x2 problem.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.integrate import BDF

from ..factorizations import DeepMatrix
from ..inits import is_balanced
from ..problems import MatrixProblem
from .krylov import KrylovBDF

DENSE_MAX = 256
CG_RTOL = 1e-10
CG_MAXITER = 2000


def applies(problem, model, factors) -> bool:
    """Whether the end-to-end flow describes this run: balanced, full-width, depth >= 2 deep factorization."""
    return (isinstance(model, DeepMatrix) and isinstance(problem, MatrixProblem) and model.depth >= 2
            and model.full_width and is_balanced(factors))


def kernel(s_rows: np.ndarray, s_cols: np.ndarray, depth: int) -> np.ndarray:
    """``K_kl = sum_j s_rows[k]^{2(j-1)/N} s_cols[l]^{2(N-j)/N}`` (``N = depth``; ``0^0 = 1``)."""
    N = depth
    K = np.zeros((s_rows.shape[0], s_cols.shape[0]))
    for j in range(1, N + 1):
        K += np.outer(s_rows ** (2.0 * (j - 1) / N), s_cols ** (2.0 * (N - j) / N))
    return K


class EndToEnd:
    """The end-to-end flow of one problem at one depth (see the module docstring)."""

    def __init__(self, problem: MatrixProblem, depth: int):
        self.problem, self.depth = problem, int(depth)
        self.shape = problem.shape
        d, dp = self.shape
        self.n = d * dp
        c = problem.grad_scale
        if problem.observed is not None:   # completion: indices only, never the dense operator
            self.mask = np.zeros(self.n)
            idx = [i * dp + j for i, j in problem.observed]
            self.mask[idx] = c
            self.mask2d = self.mask.reshape(self.shape)
            self.flat = np.asarray(idx, dtype=np.int64)
            self.Y = np.zeros(self.shape)
            self.Y.reshape(-1)[self.flat] = problem.targets
            self.h_mean = float(self.mask.mean())
        else:
            self.mask = None
            op = problem.operator
            self.A = op
            self.c = c
            self.h_mean = c * float(np.sum(op * op)) / self.n
        self.stats = {"svd": 0, "cg_solves": 0, "cg_iters": 0, "cg_max_iters": 0}

    # ----- the loss (completion by indexing: the dense operator costs m d d' per product) -------------------------
    def grad(self, W: np.ndarray) -> np.ndarray:
        if self.mask is not None:
            return self.mask2d * (W - self.Y)
        return self.problem.grad(W)

    def loss(self, W: np.ndarray) -> float:
        if self.mask is not None:
            r = W.reshape(-1)[self.flat] - self.problem.targets
            return float(self.problem.loss_scale * np.dot(r, r))
        return float(self.problem.loss(W))

    # ----- the flow -------------------------------------------------------------------------------------------
    def svd(self, W: np.ndarray):
        d, dp = self.shape
        U, s, Vt = np.linalg.svd(W, full_matrices=True)
        self.stats["svd"] += 1
        sr = np.zeros(d)
        sc = np.zeros(dp)
        sr[: s.shape[0]] = s
        sc[: s.shape[0]] = s
        return U, Vt.T, kernel(sr, sc, self.depth)

    def velocity(self, W: np.ndarray) -> np.ndarray:
        """``dW/dt = -P_W(grad l(W))``."""
        U, V, K = self.svd(W)
        G = self.grad(W)
        return -(U @ ((U.T @ G @ V) * K) @ V.T)

    def hess(self, X: np.ndarray) -> np.ndarray:
        """``H(X)``: the loss's Hessian applied to a ``d x d'`` matrix (or a batch)."""
        if self.mask is not None:
            return X * self.mask.reshape(self.shape)
        flat = X.reshape(X.shape[:-2] + (-1,))
        return (self.c * ((flat @ self.A.T) @ self.A)).reshape(X.shape)

    def dense_jacobian(self, W: np.ndarray) -> np.ndarray:
        """``-P_W H`` as a ``d d' x d d'`` matrix (row-major vec)."""
        U, V, K = self.svd(W)
        Q = np.kron(U, V)
        P = (Q * K.reshape(-1)) @ Q.T
        if self.mask is not None:
            return -(P * self.mask)
        return -(P @ (self.c * (self.A.T @ self.A)))

    # ----- matrix-free solves ---------------------------------------------------------------------------------
    def solve(self, U, V, K, a: float, b: np.ndarray) -> np.ndarray:
        """``x`` with ``(I + a P_W H) x = b`` by preconditioned CG in the singular basis (flat vectors)."""
        shape = self.shape
        B = b.reshape(shape)
        Kc = np.maximum(K, np.finfo(float).tiny)
        rhs = (U.T @ B @ V) / Kc
        prec = Kc / (1.0 + a * self.h_mean * Kc)

        def A(Y):
            return Y / Kc + a * (U.T @ self.hess(U @ Y @ V.T) @ V)

        Y = rhs * prec  # the preconditioner's solution as the start
        r = rhs - A(Y)
        z = r * prec
        p = z.copy()
        rz = float(np.vdot(r, z))
        ref = float(np.vdot(rhs, rhs * prec))
        it = 0
        while rz > (CG_RTOL ** 2) * ref and it < CG_MAXITER:
            Ap = A(p)
            alpha = rz / float(np.vdot(p, Ap))
            Y = Y + alpha * p
            r = r - alpha * Ap
            z = r * prec
            rz_new = float(np.vdot(r, z))
            p = z + (rz_new / rz) * p
            rz = rz_new
            it += 1
        self.stats["cg_solves"] += 1
        self.stats["cg_iters"] += it
        self.stats["cg_max_iters"] = max(self.stats["cg_max_iters"], it)
        return (U @ Y @ V.T).reshape(-1)


class _JacobianOp:
    """``J = -scale * P_W H`` at one state (``scale = e^tau`` in log-time); BDF only multiplies it by scalars."""

    def __init__(self, flow: EndToEnd, U, V, K, scale: float):
        self.flow, self.U, self.V, self.K, self.scale = flow, U, V, K, scale

    def __rmul__(self, c: float):
        return _JacobianOp(self.flow, self.U, self.V, self.K, self.scale * float(c))

    __mul__ = __rmul__

    def system(self) -> "_System":
        """``I - J`` (what :class:`models.engines.krylov.KrylovBDF` solves with)."""
        return _System(self.flow, self.U, self.V, self.K, self.scale)


class _System:
    """``I - J`` with ``J = -a P_W H``: solved by :meth:`EndToEnd.solve`."""

    def __init__(self, flow, U, V, K, a):
        self.flow, self.U, self.V, self.K, self.a = flow, U, V, K, a

    def solve(self, b):
        return self.flow.solve(self.U, self.V, self.K, self.a, b)


def make_solver(flow: EndToEnd, tau0: float, y0: np.ndarray, tau_end: float, *, rtol: float, atol, fun):
    """A BDF solver in log-time for ``dW/dtau = e^tau velocity(W)`` (dense or matrix-free by size)."""
    shape = flow.shape
    if flow.n <= DENSE_MAX:
        jac = lambda tau, y: math.exp(tau) * flow.dense_jacobian(np.asarray(y).reshape(shape))
        return BDF(fun, tau0, np.array(y0, dtype=float), tau_end, rtol=rtol, atol=atol, jac=jac)

    def jac_op(tau, y):
        flow.stats["jacobians"] = flow.stats.get("jacobians", 0) + 1  # (scipy's njev counts only its own wrapper)
        U, V, K = flow.svd(np.asarray(y, dtype=float).reshape(shape))
        return _JacobianOp(flow, U, V, K, math.exp(tau))

    return KrylovBDF(fun, tau0, np.array(y0, dtype=float), tau_end, jac_op=jac_op, rtol=rtol, atol=atol)


__all__ = ["DENSE_MAX", "EndToEnd", "KrylovBDF", "applies", "kernel", "make_solver"]
