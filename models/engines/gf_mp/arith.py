"""Arithmetic of :mod:`models.engines.gf_mp`: private mpmath contexts, FLINT ``arb`` conversions under a scoped
precision, the FLINT kit the chart's right-hand side runs on, and dense linear algebra on lists of mpf."""

from __future__ import annotations

import contextlib
import threading
from typing import Callable, Sequence

import flint
import mpmath
from mpmath.libmp import from_man_exp


def make_context(dps: int) -> mpmath.ctx_mp.MPContext:
    """A private mpmath context at ``dps`` decimal digits (the global ``mpmath.mp`` is left alone)."""
    ctx = mpmath.MPContext()
    ctx.dps = int(dps)
    return ctx


# ---------------------------------------------------------------------------------------------------------------
# Dense linear algebra on lists of mpf.
# ---------------------------------------------------------------------------------------------------------------
def lu_factor(A: list[list]) -> tuple[list[list], list[int], list]:
    """LU with partial pivoting of a square list-of-rows matrix: ``(LU, perm, inverse pivots)``.

    Raises ``ZeroDivisionError`` on an exactly singular matrix.
    """
    n = len(A)
    a = [list(row) for row in A]
    perm = list(range(n))
    inv = [None] * n
    for k in range(n):
        p, best = k, abs(a[k][k])
        for i in range(k + 1, n):
            v = abs(a[i][k])
            if v > best:
                p, best = i, v
        if not best:
            raise ZeroDivisionError("singular matrix in lu_factor")
        if p != k:
            a[k], a[p] = a[p], a[k]
            perm[k], perm[p] = perm[p], perm[k]
        rk = a[k]
        ik = 1 / rk[k]
        inv[k] = ik
        for i in range(k + 1, n):
            ri = a[i]
            if ri[k]:
                m = ri[k] * ik
                ri[k] = m
                for j in range(k + 1, n):
                    if rk[j]:
                        ri[j] = ri[j] - m * rk[j]
    return a, perm, inv


_ARB_LOCK = threading.RLock()


@contextlib.contextmanager
def arb_prec(prec: int):
    """FLINT's working precision set to ``prec`` bits for the block, and restored after it. FLINT's precision
    is one global setting, so the block also holds a lock: two threads (a dask worker's) running gf-mp at
    different precisions would otherwise compute at each other's."""
    with _ARB_LOCK, flint.ctx.workprec(prec):
        yield


def to_arb(v):
    """An mpmath ``mpf`` (or int/float) as an exact FLINT ``arb`` point."""
    return flint.arb(v)


def from_arb(a, ctx):
    """The midpoint of a FLINT ``arb`` as an ``mpf`` of ``ctx`` (rounded to its precision)."""
    man, exp = a.mid().man_exp()
    return ctx.make_mpf(from_man_exp(int(man), int(exp), ctx.prec, "n"))


def to_arb_mat(rows, prec: int):
    """A list-of-rows matrix of mpf as a FLINT ``arb_mat`` (exact conversion) at ``prec`` bits; an ``arb_mat``
    (an analytic Jacobian, :meth:`models.engines.gf_mp.systems.RawSystem.zjac`) is returned as it is."""
    if isinstance(rows, flint.arb_mat):
        return rows
    with arb_prec(prec):
        return flint.arb_mat([[to_arb(v) for v in row] for row in rows])


def arb_combine(weights, mats, prec: int):
    """``sum_j weights[j] * mats[j]`` for ``arb_mat`` matrices and mpf weights, at ``prec`` bits."""
    with arb_prec(prec):
        out = None
        for w, M in zip(weights, mats):
            term = M * to_arb(w)
            out = term if out is None else out + term
        return out


class _FlintKit:
    """The mpmath-context functions that the chart's right-hand side uses, on FLINT ``arb`` numbers (at FLINT's
    current precision, which the caller scopes)."""

    one = flint.arb(1)

    @staticmethod
    def mpf(v):
        return flint.arb(v)

    @staticmethod
    def exp(x):
        return x.exp()

    @staticmethod
    def expm1(x):
        return x.expm1()

    @staticmethod
    def cos_sin(x):
        s, c = x.sin_cos()
        return c, s


FLINT_KIT = _FlintKit()


def fd_jacobian(fun: Callable, y: Sequence, f0: Sequence, ctx, columns: Sequence[int] | None = None) -> list[list]:
    """Forward-difference Jacobian, step ``2^(-2 prec/3) max(|y_k|, 1)`` (``columns``: which ones; others 0)."""
    n = len(y)
    J = [[ctx.zero] * n for _ in range(len(f0))]
    eps = ctx.ldexp(1, -(2 * ctx.prec // 3))
    for k in (range(n) if columns is None else columns):
        d = eps * max(abs(y[k]), ctx.one)
        yk = list(y)
        yk[k] = y[k] + d
        d = yk[k] - y[k]
        fk = fun(yk)
        for i in range(len(f0)):
            J[i][k] = (fk[i] - f0[i]) / d
    return J


def matmul(A, B):
    """Product of two list-of-rows matrices."""
    cols = list(zip(*B))
    out = []
    for row in A:
        r = []
        for col in cols:
            acc = 0
            for a, b in zip(row, col):
                acc = acc + a * b
            r.append(acc)
        out.append(r)
    return out


def transpose(A):
    return [list(c) for c in zip(*A)]


def mat_det(A, ctx):
    """Determinant of a small square list-of-rows matrix (LU with partial pivoting)."""
    n = len(A)
    if n == 1:
        return A[0][0]
    if n == 2:
        return A[0][0] * A[1][1] - A[0][1] * A[1][0]
    try:
        a, perm, inv = lu_factor(A)
    except ZeroDivisionError:
        return ctx.zero
    det = ctx.one
    for i in range(n):
        det = det / inv[i]
    swaps = sum(1 for i in range(n) for j in range(i) if perm[j] > perm[i])
    return -det if swaps % 2 else det
