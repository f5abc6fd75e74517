"""Tensor rank measures: :func:`best_rank1` (HOSVD-initialised higher-order power iteration, i.e. rank-1 ALS),
:func:`rank1_tensor`, :func:`dist_rank1_tensor` (an upper bound on the distance to the best rank-1 tensor: the fit
found is feasible), :func:`cp_als` and :func:`cp_rank_estimate` (smallest r at which CP-ALS reaches a relative
error below ``tol``: an upper-bound estimate of the CP rank)."""

from __future__ import annotations

import math

import numpy as np


def _unfold(T: np.ndarray, n: int) -> np.ndarray:
    return np.moveaxis(T, n, 0).reshape(T.shape[n], -1)


def _contract_except(T: np.ndarray, vecs, n: int) -> np.ndarray:
    out = T
    for k in reversed(range(T.ndim)):
        if k != n:
            out = np.tensordot(out, vecs[k], axes=([k], [0]))
    return out


def best_rank1(T, iters: int = 200, tol: float = 1e-13):
    """Best rank-1 fit ``lambda * v_1 (x) ... (x) v_N`` by HOSVD-initialised higher-order power iteration (rank-1
    ALS). Returns ``(lambda, vectors)``; the fit is a local optimum (globally optimal for the nearly-rank-1
    tensors we use it on), and in every case a feasible rank-1 tensor."""
    T = np.asarray(T, dtype=float)
    vecs = []
    for n in range(T.ndim):
        U, _, _ = np.linalg.svd(_unfold(T, n), full_matrices=False)
        vecs.append(U[:, 0].copy())
    lam = 0.0
    for _ in range(iters):
        for n in range(T.ndim):
            v = _contract_except(T, vecs, n)
            nv = np.linalg.norm(v)
            if nv == 0:
                return 0.0, vecs
            vecs[n] = v / nv
        new = float(_contract_except(T, vecs, 0) @ vecs[0])
        if abs(new - lam) <= tol * max(abs(new), 1e-300):
            lam = new
            break
        lam = new
    return lam, vecs


def rank1_tensor(lam: float, vecs) -> np.ndarray:
    out = np.asarray(vecs[0]) * lam
    for v in vecs[1:]:
        out = np.multiply.outer(out, v)
    return out


def dist_rank1_tensor(T, relative: bool = True) -> float:
    """Frobenius distance from ``T`` to its best rank-1 fit (:func:`best_rank1`), relative to ``||T||`` by default.

    An upper bound on the true distance to the set of rank-1 tensors (the fit is feasible)."""
    T = np.asarray(T, dtype=float)
    lam, vecs = best_rank1(T)
    d = float(np.linalg.norm(T - rank1_tensor(lam, vecs)))
    nT = float(np.linalg.norm(T))
    return d / nT if relative and nT > 0 else d


def cp_als(T, rank: int, iters: int = 500, seed: int = 0, tol: float = 1e-12):
    """CP-ALS with ``rank`` components (random init). Returns ``(factors, relative_error)``."""
    T = np.asarray(T, dtype=float)
    N = T.ndim
    rng = np.random.default_rng(seed)
    fs = [rng.standard_normal((d, rank)) for d in T.shape]
    nT = float(np.linalg.norm(T)) or 1.0
    prev = math.inf
    err = math.inf
    letters = "abcdefghij"[:N]
    for _ in range(iters):
        for n in range(N):
            others = [fs[k] for k in range(N) if k != n]
            spec = letters + "," + ",".join(f"{letters[k]}z" for k in range(N) if k != n) + f"->{letters[n]}z"
            mttkrp = np.einsum(spec, T, *others, optimize=True)
            gram = np.ones((rank, rank))
            for F in others:
                gram *= F.T @ F
            fs[n] = np.linalg.lstsq(gram, mttkrp.T, rcond=None)[0].T
        rec = np.einsum(",".join(f"{c}z" for c in letters) + "->" + letters, *fs, optimize=True)
        err = float(np.linalg.norm(T - rec)) / nT
        if abs(prev - err) < tol:
            break
        prev = err
    return fs, err


def cp_rank_estimate(T, tol: float = 1e-3, max_rank: int | None = None, seed: int = 0) -> int:
    """Smallest r at which CP-ALS reaches relative Frobenius error below ``tol`` (an upper-bound estimate of the
    CP rank; 0 for the zero tensor)."""
    T = np.asarray(T, dtype=float)
    if float(np.linalg.norm(T)) == 0.0:
        return 0
    if max_rank is None:
        max_rank = int(np.prod(T.shape) // max(T.shape))
    for r in range(1, max_rank + 1):
        if r == 1:
            if dist_rank1_tensor(T) < tol:
                return 1
            continue
        _, err = cp_als(T, r, seed=seed)
        if err < tol:
            return r
    return max_rank


__all__ = ["best_rank1", "cp_als", "cp_rank_estimate", "dist_rank1_tensor", "rank1_tensor"]
