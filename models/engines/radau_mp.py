"""Kernels of the high-precision Radau IIA solver of :mod:`models.engines.gf_mp` whose cost decides how the run
time grows with the digits asked for (issue 12).

Why a 60-digit run used to stall. ``gf-mp`` integrates with the ``s``-stage Radau IIA method (order ``p = 2s -
1``) at a local tolerance ``tol = 10^-(digits - 10)``. With a fixed ``s`` the number of steps grows like
``tol^(-1/(p+1))``: with ``s = 10`` it is 10x larger at 60 digits (tol 1e-50) than at 40 (tol 1e-30), and each
step is dearer, so a run that took ~30 s at 40 digits needed well over 300 s at 60 (profiled with cProfile on the
RC20 problem, depth 2, scale 1e-2: 634 steps reached only loss 1.8e-2 in 60 s; with ``s = 15`` the whole run to
loss 1e-30 took 579 steps). The step count stays about constant when the order grows with the digits:
:func:`auto_stages` picks ``s`` from the tolerance (about ``0.38`` times its decades). A larger ``s`` then made three
kernels dominate, each quadratic or cubic in ``s`` in Python arithmetic; they are here, in FLINT or in O(s):

- :func:`lagrange_weights`: the Lagrange weights on the ``s + 1`` nodes of a step at any point, in the
  barycentric form (O(s) per point instead of O(s^2) divisions; 33% of a 15-stage run's time before).
- :class:`StageMatrix`: the Newton matrix ``N = I - h (A kron I_n) diag(J_1, .., J_s)`` is assembled by one
  FLINT matrix product instead of ``s^2 n^2`` Python multiplications, and no longer solved once more only to
  detect a singular matrix.
- :func:`interp_many` / :func:`apply_weights`: the predictor (the last step's collocation polynomial at the new
  stage points) as one FLINT matrix product.
- :func:`stage_residual`: ``h (A F)_i - Z_i`` for all stages as one FLINT matrix product.
"""

from __future__ import annotations

import math

import flint
from mpmath.libmp import from_man_exp

_BARY: dict = {}


def _bary(nodes):
    key = tuple(nodes)
    w = _BARY.get(key)
    if w is None:
        w = []
        for j, xj in enumerate(nodes):
            d = 1
            for m, xm in enumerate(nodes):
                if m != j:
                    d = d * (xj - xm)
            w.append(1 / d)
        if len(_BARY) > 256:
            _BARY.clear()
        _BARY[key] = w
    return w


def lagrange_weights(nodes, x) -> list:
    """``[l_j(x)]``: the Lagrange basis polynomials of the (distinct) ``nodes`` at ``x``, by the second
    barycentric formula (the node weights are cached per node tuple). Exact at a node (a unit vector)."""
    bw = _bary(nodes)
    terms = []
    for xj, wj in zip(nodes, bw):
        d = x - xj
        if not d:
            return [1 if m == xj else 0 for m in nodes]
        terms.append(wj / d)
    total = sum(terms)
    return [t / total for t in terms]


def auto_stages(tol: float) -> int:
    """Radau IIA stages for the local tolerance ``tol`` (``D = -log10 tol`` decades): ``round(0.38 D)``, clipped
    to ``[10, 40]``. The step count grows like ``10^(D / 2s)`` and a step's cost (dominated by the Gaussian
    elimination of the ``s n x s n`` Newton system) like ``s^3``: their product is smallest near ``s = D ln(10) /
    6 = 0.38 D``. Measured on RC20, depth 2, scale 1e-2, tol 1e-50 (60 digits), main run alone: 14 / 17 / 20 /
    24 stages took 694 / 472 / 413 / 386 steps and 76 / 51 / 48 / 81 s on the shared 2-core machine (10 stages:
    loss still 1.8e-2 after 634 steps and 60 s)."""
    decades = max(0.0, -math.log10(tol))
    return int(min(40, max(10, round(0.38 * decades))))


def _to_arb(v):
    return flint.arb(v)


def _from_arb(a, ctx):
    man, exp = a.mid().man_exp()
    return ctx.make_mpf(from_man_exp(int(man), int(exp), ctx.prec, "n"))


class StageMatrix:
    """The Newton matrix ``N = I - h (A kron I_n) diag(J_1, .., J_s)`` of an ``s``-stage collocation step as a
    FLINT ``arb_mat``, assembled by one FLINT matrix product (``A kron I_n`` is cached per tableau and
    precision), and solved by floating-point Gaussian elimination with partial pivoting at the context's
    precision (python-flint's ``solve(algorithm="approx")``). ``scope(prec)`` must be
    :func:`models.engines.gf_mp.arb_prec` (FLINT's precision is one global setting: it is set around each call).

    ``solve`` raises ``ZeroDivisionError`` when ``N`` is singular at working precision (a Newton iteration
    makes ~2 solves per matrix: a separate inverse or singularity check would cost more than it saves).
    """

    def __init__(self, h, A, Js, ctx, scope):
        self.ctx, self.prec, self.scope = ctx, ctx.prec, scope
        s, n = len(A), Js[0].nrows()
        self.size = size = s * n
        with scope(self.prec):
            K = _kron_eye(A, n, ctx.prec)
            D = flint.arb_mat(size, size)
            for j, Jj in enumerate(Js):
                o = j * n
                for a in range(n):
                    for b in range(n):
                        D[o + a, o + b] = Jj[a, b]
            self.N = _eye(size) - (K * D) * _to_arb(h)

    def solve(self, b) -> list:
        """``N^-1 b`` for a list ``b`` of mpf."""
        with self.scope(self.prec):
            try:
                x = self.N.solve(flint.arb_mat(self.size, 1, [_to_arb(v) for v in b]), algorithm="approx")
            except ZeroDivisionError:
                raise
            except (ValueError, ArithmeticError) as exc:
                raise ZeroDivisionError(str(exc)) from exc
            return [_from_arb(x[i, 0], self.ctx) for i in range(self.size)]


_EYES: dict = {}
_KRONS: dict = {}


def _eye(n):
    if n not in _EYES:
        _EYES[n] = flint.arb_mat(n, n, [1 if i == j else 0 for i in range(n) for j in range(n)])
    return _EYES[n]


def _kron_eye(A, n, prec):
    """``A kron I_n`` as an arb_mat (cached per tableau object, n and precision)."""
    key = (id(A), n, prec)
    hit = _KRONS.get(key)
    if hit is None or hit[0] is not A:
        s = len(A)
        size = s * n
        entries = [0] * (size * size)
        for i in range(s):
            for j in range(s):
                a = _to_arb(A[i][j])
                for k in range(n):
                    entries[(i * n + k) * size + j * n + k] = a
        if len(_KRONS) > 64:
            _KRONS.clear()
        hit = _KRONS[key] = (A, flint.arb_mat(size, size, entries))
    return hit[1]


def interp_many(nodes, xs, Z, ctx, scope) -> list:
    """``[sum_j l_j(x) Z_j for x in xs]`` where ``l`` is the Lagrange basis on ``nodes`` and ``Z`` the values at
    ``nodes[1:]`` (the value at ``nodes[0]`` is 0): the weights in the barycentric form and the sums as one FLINT
    matrix product at the context's precision. Lists of mpf in and out."""
    W = [lagrange_weights(nodes, x)[1:] for x in xs]
    return apply_weights(W, Z, ctx, scope)


def apply_weights(W, Z, ctx, scope) -> list:
    """``[sum_j W[i][j] Z[j] for i]`` (``W`` rows of mpf weights, ``Z`` rows of mpf), one FLINT product."""
    m, s, n = len(W), len(Z), len(Z[0])
    with scope(ctx.prec):
        Wm = flint.arb_mat(m, s, [_to_arb(v) for row in W for v in row])
        Zm = flint.arb_mat(s, n, [_to_arb(v) for row in Z for v in row])
        P = Wm * Zm
        return [[_from_arb(P[i, k], ctx) for k in range(n)] for i in range(m)]


_AMATS: dict = {}


def stage_residual(h, A, Fs, Z, ctx, scope) -> list:
    """The stage equations' residual ``[h sum_j A_ij F_j[k] - Z_i[k]]`` (stage-major) as mpf, the product
    ``A F`` formed in FLINT at the context's precision (``A`` entries and ``F`` are exact conversions; the
    rounding is that of a dot product at working precision, like ``fsum``)."""
    s, n = len(A), len(Fs[0])
    with scope(ctx.prec):
        key = (id(A), ctx.prec)
        hit = _AMATS.get(key)
        if hit is None or hit[0] is not A:
            if len(_AMATS) > 64:
                _AMATS.clear()
            hit = _AMATS[key] = (A, flint.arb_mat([[_to_arb(a) for a in row] for row in A]))
        F = flint.arb_mat(s, n, [_to_arb(v) for row in Fs for v in row])
        AF = hit[1] * F
        hh = _to_arb(h)
        out = []
        for i in range(s):
            Zi = Z[i]
            for k in range(n):
                out.append(_from_arb(hh * AF[i, k], ctx) - Zi[k])
        return out
