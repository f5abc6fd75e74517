"""``gf-mp``: high-precision gradient flow (mpmath): trajectories with 20+ correct digits.

Status: correct, with an honest error estimate, but slow. It agrees with the float64 engine where that one is
reliable and carries ~18 correct digits of ``w11`` at loss 1e-10 (depth 3: 120 s incl. the reference run), but
loss 1e-30 costs many minutes per trajectory, far from the 60 s target; the claims therefore use it only as the
last escalation step (see ``properties._common.GF_LADDER``) and rc20.cor.norms_diverge stops at loss 1e-12.

Solver.
    :class:`Radau`: the ``s``-stage Radau IIA collocation method (option ``stages``, default 7: order ``2s - 1``,
    stiffly accurate, L-stable), solved by Newton's method on the full ``s n x s n`` stage system with one
    Jacobian per stage (forward differences at half the working precision). The stage Jacobians are taken at the
    predicted stages and refreshed once if the iteration contracts slowly; the flow's stiffness grows like
    ``loss^-(L-1)/L`` and changes by O(1) factors within one step late in the flow, which is why a single Jacobian
    per step (simplified Newton with the eigen-decomposition of ``A``) does not converge at useful step sizes.
    Step-size control by step doubling: each step is done once with ``h`` and twice with ``h / 2`` (the half
    steps' Jacobians are interpolated from the full step's), the half-step result is kept and its error is
    estimated as the difference over ``2^(s+1) - 1``. The predictor is the previous step's collocation
    polynomial. The 5x5 .. 35x35 linear algebra is plain Python lists of mpf. Cost (2-core machine, 65 digits):
    about 85 evaluations of the right-hand side and three ``s n`` LU factorizations per step; late in the flow
    the steps are about 0.08 in the loss clock at tol 1e-30 (s = 7), i.e. several hundred steps per decade-range
    of 20 decades: loss 1e-30 costs minutes, not seconds (see ``bench_gf_mp``).

Chart path (balanced, full-width, 2x2 deep factorization, the RC20 setting).
    The *scaled* chart of :mod:`models.chart`: ``W = R(theta) diag(s1 e^rho1, s2 e^rho2) R(phi)^T`` with state
    ``(p, q, rho1, rho2) = (e^rho1 theta, e^rho1 phi, rho1, rho2)``, plus ``tau = log(1 + t)``. The det sign is
    fixed by construction, the tiny singular value is stored through its logarithm, the residuals are formed
    without cancellation, and late in the flow the fast (stiff) modes are the coordinates ``p, q`` themselves
    (they are nearly ``w21, w12``), so the Jacobian is well conditioned although ``h * lambda_max`` reaches
    ``1e60`` at loss 1e-30: a handful of guard digits suffices. Two clocks, both autonomous:

    - log-time ``tau`` (``dz/dtau = e^tau f(z)``) through the plateau and to land on explicit times
      (``record_at``, ``t_max``);
    - the loss clock ``u = -log(loss)`` once the loss falls steadily (``d(-log loss)/dtau >= 0.2``):
      ``dz/du = f(z) loss / diss`` with ``diss = -dloss/dt = sum_ab K_ab G^_ab^2 > 0`` (a sum of positive terms,
      no cancellation) and ``dtau/du = e^-tau loss / diss``. Each step starts from ``u = -log(loss(z))`` (the
      clock is re-synchronized with the state), so every loss level ``10^(-k/per_decade)`` and the final
      ``until_loss`` are step endpoints: no event location, no dense output.

    In the loss clock the state's ``tau`` is carried as the quadrature ``q = 1 + t`` (``dq/du = loss / diss``);
    in log-time ``tau`` is the independent variable itself, so Newton works on the chart variables only.
    A step in one clock that passes an event of the other kind (a loss level inside a log-time step, a record
    time inside a loss-clock step) is undone and redone in the other clock, which then ends exactly on the
    event. A start with (nearly) equal singular values (``alpha * I``, where the chart is singular) is first
    integrated on the raw factors until the relative gap ``1 - (sigma2/sigma1)^(2/L)`` exceeds 1e-3.

Raw path (everything else deep-matrix: unbalanced inits, other shapes).
    The flattened factors with the same solver and clocks (``diss = sum_j ||grad_j||^2``). The det sign (square
    factors) is the product of the factor dets, exact in mpmath; the run stops with ``Status.PRECISION_LOST``
    when ``|det W| / ||W||_F^n`` falls below ``10^(10 - digits)``. It is slow (a Jacobian costs ``4 L`` extra
    evaluations): it is there for unbalanced starts and cross-checks at moderate loss.

Precision.
    Everything happens in a private ``mpmath.MPContext``; the global ``mpmath.mp`` is never read or changed.
    The working precision is ``digits + guard`` decimal digits, ``guard`` defaulting to ``10 +
    decades(until_loss)/2`` (the residuals ``w12 - 1`` etc. lose ``-log10 sqrt(loss)`` digits to cancellation).

Error estimate.
    A *reference* run repeats the integration with ``extra_digits`` more digits and a tolerance ``tighter``
    times smaller, recording the same events (the same loss levels, the same times). At each point
    ``product_err = 2 (max_ij |W_ij - W'_ij| + max_ij |dW_ij/dtau| |tau - tau'|) + |W| 10^-digits`` (the second
    term converts a difference in the time at which a loss level is reached into a difference of ``W`` at the
    main run's time) and likewise ``loss_err``. The reference is far more accurate than the main run, so the
    difference is the main run's error; the factor 2 covers the reference's own error.
"""

from __future__ import annotations

import math
import time
from typing import Callable, Sequence

import mpmath
import numpy as np

from .. import chart
from ..errors import InvalidInput, require
from ..factorizations import DeepMatrix
from ..inits import is_balanced
from ..trajectory import Point, Status
from .base import AbstractEngine, Result, Spec

PATHS = ("auto", "chart", "raw")


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


def lu_solve(fac, b: Sequence) -> list:
    """Solve ``A x = b`` with the output of :func:`lu_factor`."""
    a, perm, inv = fac
    n = len(a)
    x = [b[p] for p in perm]
    for i in range(1, n):
        ri = a[i]
        acc = x[i]
        for j in range(i):
            if ri[j]:
                acc = acc - ri[j] * x[j]
        x[i] = acc
    for i in range(n - 1, -1, -1):
        ri = a[i]
        acc = x[i]
        for j in range(i + 1, n):
            if ri[j]:
                acc = acc - ri[j] * x[j]
        x[i] = acc * inv[i]
    return x


# ---------------------------------------------------------------------------------------------------------------
# The stiff solver: Radau IIA.
# ---------------------------------------------------------------------------------------------------------------
class StepFailure(Exception):
    """The step size collapsed, or the Newton iteration failed at every step size tried."""


_TABLEAUS: dict = {}


def radau_tableau(s: int, ctx) -> tuple[list, list[list]]:
    """Nodes ``c`` and matrix ``A`` of the ``s``-stage Radau IIA method at the context's precision.

    ``c`` are the zeros of ``P_s(2x - 1) - P_{s-1}(2x - 1)`` (Legendre), ``c_s = 1``; ``A_ij = int_0^{c_i} l_j``
    with ``l_j`` the Lagrange basis on ``c``. Computed with 60 guard digits and cached per ``(s, precision)``.
    """
    key = (s, ctx.prec)
    if key not in _TABLEAUS:
        with ctx.workprec(ctx.prec + 200):
            coeffs = ctx.taylor(lambda x: ctx.legendre(s, 2 * x - 1) - ctx.legendre(s - 1, 2 * x - 1), 0, s)
            roots = ctx.polyroots(coeffs[::-1], maxsteps=500, extraprec=2 * ctx.prec)
            c = sorted(ctx.re(r) for r in roots)
            c[-1] = ctx.one
            A = [[None] * s for _ in range(s)]
            for j in range(s):
                num, den = [ctx.one], ctx.one          # l_j(x) * den as ascending coefficients
                for m in range(s):
                    if m != j:
                        new = [ctx.zero] * (len(num) + 1)
                        for k, a in enumerate(num):
                            new[k + 1] += a
                            new[k] -= c[m] * a
                        num, den = new, den * (c[j] - c[m])
                for i in range(s):
                    A[i][j] = ctx.fsum(a * c[i] ** (k + 1) / (k + 1) for k, a in enumerate(num)) / den
        _TABLEAUS[key] = ([+v for v in c], [[+v for v in row] for row in A])
    return _TABLEAUS[key]


def _lagrange(nodes, x):
    out = []
    for j, xj in enumerate(nodes):
        w = 1
        for m, xm in enumerate(nodes):
            if m != j:
                w = w * (x - xm) / (xj - xm)
        out.append(w)
    return out


class Radau:
    """Radau IIA with ``s`` stages (order ``2s - 1``, stiffly accurate, L-stable) for ``z' = fun(x, z)`` plus an
    optional quadrature ``q' = g(z)`` (see the module docstring).

    ``fun(x, z) -> (dz, g)`` (``g`` None without a quadrature), ``jac(x, z, dz) -> dF/dz`` (rows). The state seen
    by the driver is ``y = z + [tau]``: in the clock ``"tau"`` tau is ``x`` itself, in the clock ``"u"`` it is
    ``log q`` with ``q = 1 + t`` the quadrature. ``rtol``/``atol`` (one per component of ``y``) define the scaled
    max norm. :meth:`step` makes one accepted step of at most ``x_limit - x``; :meth:`rewind` undoes it.
    """

    FAC_MIN, FAC_MAX, SAFETY = 0.2, 4.0, 0.8
    KAPPA = 0.01     # Newton stops when its estimated remaining error is below KAPPA (in tolerance units)

    def __init__(self, fun, jac, y0, x0, *, ctx, clock, rtol, atol, stages=7, h0=None, valid=None, stats=None,
                 maxit=10):
        self.ctx, self.fun, self.jac, self.clock = ctx, fun, jac, clock
        self.s = int(stages)
        self.c, self.A = radau_tableau(self.s, ctx)
        self.rtol = ctx.mpf(rtol)
        self.atol = [ctx.mpf(a) for a in atol]
        self.h = None if h0 is None else ctx.mpf(h0)
        self.valid = valid or (lambda z: True)
        self.maxit = maxit
        self.stats = stats if stats is not None else {}
        for key in ("steps", "rejected", "nfev", "njev", "nlu", "newton"):
            self.stats.setdefault(key, 0)
        self.set_state(x0, y0)
        self._prev = None

    # ----- state ----------------------------------------------------------------------------------------------
    def set_state(self, x, y) -> None:
        """Restart from a new point (after a re-chart); keeps ``h``."""
        ctx = self.ctx
        self.x = ctx.mpf(x)
        self.z = [ctx.mpf(v) for v in y[:-1]]
        self.q = ctx.exp(ctx.mpf(y[-1])) if self.clock == "u" else None
        self._J = self._f0 = None
        self._poly = None

    @property
    def y(self) -> list:
        return self.z + [self.x if self.clock == "tau" else self.ctx.log(self.q)]

    @property
    def k(self) -> int:
        return self.s

    def _prepare(self):
        if self._J is None:
            self._f0 = self.fun(self.x, self.z)[0]
            self._J = self.jac(self.x, self.z, self._f0)
            self.stats["nfev"] += 1
            self.stats["njev"] += 1

    def _scales(self, za, zb):
        r = self.rtol
        return [a + r * max(abs(u), abs(v)) for a, u, v in zip(self.atol, za, zb)]

    @staticmethod
    def _norm(d, sc):
        worst = 0
        for e, s in zip(d, sc):
            v = abs(e) / s
            if v > worst:
                worst = v
        return worst

    # ----- one Radau step from (x0, z0) of length h --------------------------------------------------------------
    def _interp(self, poly, x):
        """The collocation polynomial ``poly = (x_start, h, base, Z)`` (values ``base + Z_i`` at ``x_start + c_i
        h``, ``base`` at ``x_start``) at ``x``, minus ``base``."""
        xs, hp, base, Z = poly
        w = _lagrange([0] + self.c, (x - xs) / hp)
        n = len(base)
        return [sum(w[j + 1] * Z[j][k] for j in range(self.s)) for k in range(n)]

    def _solve(self, x0, z0, h, Zpred, Js, sc):
        """Newton iteration for the stages (stage Jacobians ``Js`` or None: computed at the predicted stages).
        Returns ``(Z, F-values, Js)`` or None when the iteration does not converge."""
        ctx, s, A, c = self.ctx, self.s, self.A, self.c
        n = len(z0)
        Z = [list(v) for v in Zpred]
        xs = [x0 + ci * h for ci in c]
        refreshed = Js is None
        fac = None
        prev = None
        for it in range(self.maxit):
            Ys = [[a + b for a, b in zip(z0, Zi)] for Zi in Z]
            Fs = []
            for xi, Yi in zip(xs, Ys):
                try:
                    if not self.valid(Yi):
                        return None
                    Fs.append(self.fun(xi, Yi))
                except (ZeroDivisionError, ValueError, OverflowError):
                    return None
            self.stats["nfev"] += s
            if Js is None:
                Js = [self.jac(xi, Yi, Fi[0]) for xi, Yi, Fi in zip(xs, Ys, Fs)]
                self.stats["njev"] += s
                fac = None
            if fac is None:
                N = [[0] * (s * n) for _ in range(s * n)]
                for i in range(s):
                    for j in range(s):
                        ha = h * A[i][j]
                        Jj = Js[j]
                        for k in range(n):
                            row = N[i * n + k]
                            Jjk = Jj[k]
                            for l in range(n):
                                if Jjk[l]:
                                    row[j * n + l] = -ha * Jjk[l]
                for m in range(s * n):
                    N[m][m] += 1
                try:
                    fac = lu_factor(N)
                except ZeroDivisionError:
                    return None
                self.stats["nlu"] += 1
            R = []
            for i in range(s):
                Ai = A[i]
                for k in range(n):
                    R.append(h * ctx.fsum(Ai[j] * Fs[j][0][k] for j in range(s)) - Z[i][k])
            d = lu_solve(fac, R)
            self.stats["newton"] += 1
            dZ = [d[i * n:(i + 1) * n] for i in range(s)]
            Z = [[a + b for a, b in zip(Zi, di)] for Zi, di in zip(Z, dZ)]
            nd = max(self._norm(di, sc) for di in dZ)
            if nd == 0:
                return Z, Fs, Js
            if prev is not None:
                theta = nd / prev
                if theta >= 0.5 and not refreshed:   # stale Jacobians: recompute at the current stages
                    Js, refreshed, prev = None, True, None
                    continue
                if theta >= 0.9:
                    self.stats["diverged"] = self.stats.get("diverged", 0) + 1
                    return None
                if theta / (1 - theta) * nd <= self.KAPPA:
                    Ys = [[a + b for a, b in zip(z0, Zi)] for Zi in Z]
                    return Z, None, Js
            elif nd <= self.KAPPA * 1e-3:
                return Z, None, Js
            prev = nd
        return None

    def _stage_g(self, x0, z0, h, Z):
        """Quadrature increments ``h sum_j a_ij g(Y_j)`` (u clock) at converged stages."""
        if self.clock != "u":
            return None
        gs = [self.fun(x0 + ci * h, [a + b for a, b in zip(z0, Zi)])[1] for ci, Zi in zip(self.c, Z)]
        self.stats["nfev"] += self.s
        return h * self.ctx.fsum(a * g for a, g in zip(self.A[-1], gs))

    def _try(self, h):
        """Full step and two half steps from the current state; ``(err, z1, q1, poly)`` or None."""
        ctx, s = self.ctx, self.s
        x0, z0 = self.x, self.z
        sc = self._scales(z0, z0)
        if self._poly is not None:
            Zp = [self._interp(self._poly, x0 + ci * h) for ci in self.c]
            off = [a - b for a, b in zip(z0, self._poly[2])]
            Zp = [[a - o for a, o in zip(Zi, off)] for Zi in Zp]
        else:
            Zp = [[h * ci * v for v in self._f0] for ci in self.c]
        r = self._solve(x0, z0, h, Zp, None, sc)
        if r is None:
            return None
        Zf, _, Jf = r
        zf = [a + b for a, b in zip(z0, Zf[-1])]
        full = (x0, h, z0, Zf)
        nodes = [0] + self.c
        Jnodes = [self._J] + Jf

        def jac_at(x):
            w = _lagrange(nodes, (x - x0) / h)
            n = len(z0)
            return [[ctx.fsum(w[j] * Jnodes[j][a][b] for j in range(s + 1)) for b in range(n)] for a in range(n)]

        h2 = h / 2
        out = []
        xa, za = x0, z0
        for half in range(2):
            Zp = [self._interp(full, xa + ci * h2) for ci in self.c]
            off = [a - b for a, b in zip(za, z0)]
            Zp = [[a - o for a, o in zip(Zi, off)] for Zi in Zp]
            r = self._solve(xa, za, h2, Zp, [jac_at(xa + ci * h2) for ci in self.c], sc)
            if r is None:
                return None
            Zh = r[0]
            out.append((xa, za, Zh))
            za = [a + b for a, b in zip(za, Zh[-1])]
            xa = x0 + h2
        z1 = za
        err_v = [a - b for a, b in zip(z1, zf)]
        q1 = None
        if self.clock == "u":
            gf_ = self._stage_g(x0, z0, h, Zf)
            ga = self._stage_g(out[0][0], out[0][1], h2, out[0][2])
            gb = self._stage_g(out[1][0], out[1][1], h2, out[1][2])
            q1 = self.q + ga + gb
            err_v.append((ga + gb - gf_))
        sc = self._scales(z0 + ([self.q] if q1 is not None else []), z1 + ([q1] if q1 is not None else []))
        if q1 is not None:
            sc[-1] = self.rtol * max(self.q, q1)
        # the half-step result is kept; its error is the difference over 2^(s+1) - 1 (stiff order s + 1; the
        # non-stiff order 2s - 1 would allow more)
        err = self._norm(err_v, sc) / (2 ** (s + 1) - 1)
        return err, z1, q1, (out[1][0], h2, out[1][1], out[1][2])

    def step(self, x_limit=None):
        """One accepted step, not beyond ``x_limit``. Returns the accepted step length."""
        ctx = self.ctx
        self._prepare()
        if self.h is None:
            sc = self._scales(self.z, self.z)
            d0, d1 = self._norm(self.z, sc), self._norm(self._f0, sc)
            self.h = ctx.mpf("1e-3") if (d1 == 0 or d0 == 0) else ctx.mpf("1e-3") * d0 / d1
        while True:
            h = self.h
            clipped = x_limit is not None and h >= x_limit - self.x
            if clipped:
                h = x_limit - self.x
            if h <= ctx.ldexp(max(abs(self.x), 1), -ctx.prec + 16):
                raise StepFailure(f"step size {ctx.nstr(h, 3)} collapsed at x = {ctx.nstr(self.x, 10)}")
            res = self._try(h)
            if res is None:
                self.stats["newton_failed"] = self.stats.get("newton_failed", 0) + 1
                self.stats["rejected"] += 1
                self.h = h / 2
                continue
            err, z1, q1, poly = res
            fac = self.SAFETY * (1 / err) ** (ctx.one / (self.s + 1)) if err > 0 else ctx.mpf(self.FAC_MAX)
            fac = min(max(fac, ctx.mpf(self.FAC_MIN)), ctx.mpf(self.FAC_MAX))
            if err > 1:
                self.stats["rejected"] += 1
                self.h = h * min(fac, ctx.mpf("0.7"))
                continue
            self.stats["steps"] += 1
            self._prev = (self.x, self.z, self.q, self._J, self._f0, self.h, self._poly)
            self.x = x_limit if clipped else self.x + h
            self.z, self.q, self._poly = z1, q1, poly
            self._J = self._f0 = None
            if not clipped or h * fac < self.h:
                self.h = h * fac
            return h

    def rewind(self) -> None:
        """Undo the last accepted step (to redo it in another clock)."""
        self.x, self.z, self.q, self._J, self._f0, self.h, self._poly = self._prev
        self.stats["steps"] -= 1


def fd_jacobian(fun: Callable, y: Sequence, f0: Sequence, ctx, columns: Sequence[int] | None = None) -> list[list]:
    """Forward-difference Jacobian at half the working precision (``columns``: which ones; the others are 0)."""
    n = len(y)
    J = [[ctx.zero] * n for _ in range(len(f0))]
    eps = ctx.ldexp(1, -(ctx.prec // 2))
    for k in (range(n) if columns is None else columns):
        d = eps * max(abs(y[k]), ctx.one)
        yk = list(y)
        yk[k] = y[k] + d
        d = yk[k] - y[k]
        fk = fun(yk)
        for i in range(len(f0)):
            J[i][k] = (fk[i] - f0[i]) / d
    return J


# ---------------------------------------------------------------------------------------------------------------
# Chart helpers in a context.
# ---------------------------------------------------------------------------------------------------------------
def chart_from_entries(w: Sequence, ctx, det=None) -> tuple[list, tuple[int, int]]:
    """Chart coordinates ``([theta, phi, rho1, rho2], signs)`` of a nonsingular 2x2 matrix, in ``ctx``.

    Closed-form signed SVD: with ``W = R(theta) diag(x, y) R(phi)^T``, ``x + y = |(a + d, c - b)|`` at angle
    ``theta - phi`` and ``x - y = |(a - d, c + b)|`` at angle ``theta + phi``. The small signed singular value is
    ``y = 2 det / (x + y + x - y)`` (no cancellation when ``det`` is given accurately, e.g. as a product of
    factor dets). Angles are then moved into ``[-pi/2, pi/2]`` (:func:`recentre_mp`).
    """
    a, b, c, d = (ctx.mpf(v) for v in w)
    det = a * d - b * c if det is None else ctx.mpf(det)
    P = ctx.hypot(a + d, c - b)
    Q = ctx.hypot(a - d, c + b)
    alpha = ctx.atan2(c - b, a + d)
    beta = ctx.atan2(c + b, a - d)
    x = (P + Q) / 2
    if not det or not x:
        raise InvalidInput("the chart needs a nonsingular end-to-end matrix")
    y = 2 * det / (P + Q)
    z = [(alpha + beta) / 2, (beta - alpha) / 2, ctx.log(x), ctx.log(abs(y))]
    return recentre_mp(z, (1, 1 if y > 0 else -1), ctx)


def recentre_mp(y: Sequence, signs, ctx) -> tuple[list, tuple[int, int]]:
    """:func:`models.chart.recentre` in ``ctx`` (with the context's pi, not float pi)."""
    y = list(y)
    s1, s2 = signs
    half = ctx.pi / 2
    for k in (0, 1):
        while abs(y[k]) > half:
            y[k] = y[k] - ctx.pi if y[k] > 0 else y[k] + ctx.pi
            s1, s2 = -s1, -s2
    return y, (s1, s2)


class _Residuals:
    """The problem's residuals, gradient and loss on flat entries, with its constants converted to ``ctx``."""

    def __init__(self, problem, ctx):
        self.rows = [([int(k) for k in idx], [ctx.mpf(a) for a in wts], ctx.mpf(float(y)))
                     for (idx, wts), y in zip(problem._rows, problem.targets)]
        self.gscale = ctx.mpf(problem.grad_scale)
        self.lscale = ctx.mpf(problem.loss_scale)
        self.size = problem.shape[0] * problem.shape[1]
        self.unit = all(all(a == 1 for a in wts) for _, wts, _ in self.rows) and problem.grad_scale == 1.0

    def grad(self, w):
        """``(grad, 2 * loss / loss_scale = sum r^2)`` at flat entries ``w``."""
        g = [0] * self.size
        acc = 0
        for idx, wts, y in self.rows:
            r = -y
            for k, a in zip(idx, wts):
                r = r + a * w[k]
            acc = acc + r * r
            c = r if self.unit else self.gscale * r
            for k, a in zip(idx, wts):
                g[k] = g[k] + (c if self.unit else a * c)
        return g, acc

    def loss(self, w):
        return self.lscale * self.grad(w)[1]


# ---------------------------------------------------------------------------------------------------------------
# The two systems. Both expose, for a state z = [..., tau]:
#   terms(z) -> (f, loss, diss): dz/dt (without tau), the loss, and -dloss/dt >= 0
#   F(clock, z): dz/dtau ("tau") or dz/du ("u", u = -log loss), tau included
#   jac(clock, z, F0), observe(z), loss(z), valid(z), recentre(z), atol(z, rtol)
# ---------------------------------------------------------------------------------------------------------------
class _System:
    kind = "?"
    nvar = 0

    def F(self, clock, z):
        f, loss, diss = self.terms(z)
        ctx = self.ctx
        if clock == "tau":
            et = ctx.exp(z[-1])
            return [et * v for v in f] + [ctx.one]
        g = loss / diss
        return [g * v for v in f] + [g * ctx.exp(-z[-1])]

    def zfun(self, clock, x, z):
        """``(dz/dx, g)`` for the solver: clock "tau" (``x = tau``): ``(e^tau f, None)``; clock "u": ``(f loss /
        diss, loss / diss)`` (``g = dt/du``, the quadrature of ``1 + t``)."""
        f, loss, diss = self.terms(z)
        if clock == "tau":
            et = self.ctx.exp(x)
            return [et * v for v in f], None
        g = loss / diss
        return [g * v for v in f], g

    def zjac(self, clock, x, z, f0):
        return fd_jacobian(lambda y: self.zfun(clock, x, y)[0], z, f0, self.ctx)

    def jac(self, clock, z, F0):
        n = self.nvar
        J = fd_jacobian(lambda y: self.F(clock, y), z, F0, self.ctx, columns=range(n))
        if clock == "tau":   # d(e^tau f)/dtau = e^tau f
            for i in range(n):
                J[i][n] = F0[i]
        else:                # d(e^-tau loss/diss)/dtau = -that
            J[n][n] = -F0[n]
        return J

    def rate(self, z):
        """``d(-log loss)/dtau``."""
        _, loss, diss = self.terms(z)
        return self.ctx.exp(z[-1]) * diss / loss if loss else self.ctx.inf

    def loss(self, z):
        return self.observe(z)[1]

    def dW_dtau(self, z):
        """``max_ij |dW_ij/dtau|`` by a forward difference along the flow."""
        ctx = self.ctx
        Fz = self.F("tau", z)
        scale = max(max(abs(v) for v in Fz[:-1]), ctx.mpf(10) ** -30)
        d = ctx.ldexp(1, -(ctx.prec // 2)) / scale
        w0 = self.entries(z)
        w1 = self.entries([a + d * b for a, b in zip(z, Fz)])
        return max(abs(a - b) for a, b in zip(w0, w1)) / d

    def dloss_dtau(self, z):
        _, loss, diss = self.terms(z)
        return self.ctx.exp(z[-1]) * diss


class _ChartSystem(_System):
    """The balanced 2x2 flow in the scaled chart, state ``z = [p, q, rho1, rho2, tau]``."""

    kind = "chart"
    nvar = 4

    def __init__(self, problem, depth: int, signs, ctx):
        self.res = _Residuals(problem, ctx)
        self.problem, self.L, self.signs, self.ctx = problem, int(depth), tuple(signs), ctx
        self.inv_L = ctx.one / self.L
        self.two_over_L = ctx.mpf(2) / self.L

    def _trig(self, z):
        ctx = self.ctx
        e1 = ctx.exp(z[2])
        em = 1 / e1
        th, ph = z[0] * em, z[1] * em
        ct, st = ctx.cos_sin(th)
        cp, sp = ctx.cos_sin(ph)
        return e1, em, th, ph, ct, st, cp, sp

    def terms(self, z):
        """``(dz/dt, loss, -dloss/dt)`` (see :mod:`models.chart`), each formed without cancellation."""
        ctx, L = self.ctx, self.L
        r1, r2 = z[2], z[3]
        s1, s2 = self.signs
        e1, em, th, ph, ct, st, cp, sp = self._trig(z)
        c2 = ctx.exp(r2 * self.inv_L)                 # sigma_2^(1/L)
        q1 = ctx.exp(r1 * self.two_over_L)            # sigma_1^(2/L)
        q2 = c2 * c2
        e2 = c2 ** L
        sig1 = e1 if s1 > 0 else -e1
        sig2 = e2 if s2 > 0 else -e2
        w = [sig1 * ct * cp + sig2 * st * sp, sig1 * ct * sp - sig2 * st * cp,
             sig1 * st * cp - sig2 * ct * sp, sig1 * st * sp + sig2 * ct * cp]
        g, rr = self.res.grad(w)
        g11, g12, g21, g22 = g
        a0, a1 = g11 * cp + g12 * sp, g21 * cp + g22 * sp
        b0, b1 = g12 * cp - g11 * sp, g22 * cp - g21 * sp
        h11, h12 = ct * a0 + st * a1, ct * b0 + st * b1
        h21, h22 = ct * a1 - st * a0, ct * b1 - st * b0
        x = q2 / q1                                   # (sigma2/sigma1)^(2/L) < 1
        gap = -ctx.expm1((r2 - r1) * self.two_over_L) if x > 0.5 else 1 - x
        inv_d = 1 / (q1 * gap)                        # 1 / (sigma1^(2/L) - sigma2^(2/L))
        p1, p2 = e1 / q1, e2 / q2                     # sigma_a^(1 - 2/L)
        th_dot = -(sig2 * h12 + sig1 * h21) * inv_d
        ph_dot = -(sig1 * h12 + sig2 * h21) * inv_d
        r1_dot = -L * (p1 if s1 > 0 else -p1) * h11
        r2_dot = -L * (p2 if s2 > 0 else -p2) * h22
        f = [e1 * (th_dot + th * r1_dot), e1 * (ph_dot + ph * r1_dot), r1_dot, r2_dot]
        k12 = 1                                       # sum_j sigma1^(2j/L) sigma2^(2(L-1-j)/L) / sigma1^(2(L-1)/L)
        for _ in range(L - 1):
            k12 = 1 + x * k12
        k12 = k12 * e1 * p1                           # times sigma1^(2 - 2/L)
        diss = L * (e1 * p1 * h11 * h11 + e2 * p2 * h22 * h22) + k12 * (h12 * h12 + h21 * h21)
        return f, self.res.lscale * rr, diss

    def entries(self, z):
        e1, em, th, ph, ct, st, cp, sp = self._trig(z)
        s1, s2 = self.signs
        e2 = self.ctx.exp(z[3])
        a, b = (e1 if s1 > 0 else -e1), (e2 if s2 > 0 else -e2)
        return [a * ct * cp + b * st * sp, a * ct * sp - b * st * cp, a * st * cp - b * ct * sp,
                a * st * sp + b * ct * cp]

    def observe(self, z):
        """``(entries, loss, det_sign, factors)`` of a real state."""
        w = self.entries(z)
        return w, self.res.loss(w), chart.det_sign(self.signs), None

    def gap(self, z):
        return -self.ctx.expm1((z[3] - z[2]) * self.two_over_L)

    def angles(self, z):
        em = self.ctx.exp(-z[2])
        return z[0] * em, z[1] * em

    def valid(self, z):
        # Angles far outside [-pi/2, pi/2] only come from a wild trial step; sin/cos of huge arguments would be
        # slow and meaningless.
        if not (abs(z[2]) < 10 ** 4 and abs(z[3]) < 10 ** 6 and z[3] < z[2]):
            return False
        th, ph = self.angles(z)
        return abs(th) < 3 and abs(ph) < 3

    def recentre(self, z):
        """The state with angles moved into [-pi/2, pi/2] (signs flipped), or None when they already are."""
        ctx = self.ctx
        th, ph = self.angles(z)
        half = ctx.pi / 2
        if abs(th) <= half and abs(ph) <= half:
            return None
        y, self.signs = recentre_mp([th, ph, z[2], z[3]], self.signs, ctx)
        e1 = ctx.exp(z[2])
        return [y[0] * e1, y[1] * e1, z[2], z[3], z[4]]

    def atol(self, z, rtol):
        """``p, q`` (angles times sigma_1, O(1) late in the flow): relative with an absolute floor ``rtol *
        1e-3 min(1, sigma_1)``; log singular values and tau: absolute ``rtol`` (plus the relative part)."""
        ctx = self.ctx
        ang = rtol * ctx.mpf("1e-3") * min(ctx.one, ctx.exp(z[2]))
        return [ang, ang, rtol, rtol, rtol]


def _matmul(A, B):
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


def _transpose(A):
    return [list(c) for c in zip(*A)]


def _det(A, ctx):
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


class _RawSystem(_System):
    """Gradient flow on the flattened factors ``[W_1, ..., W_L]`` (row-major), plus ``tau``."""

    kind = "raw"

    def __init__(self, problem, model: DeepMatrix, ctx, digits: int):
        self.problem, self.model, self.ctx = problem, model, ctx
        self.res = _Residuals(problem, ctx)
        self.shapes = model.layer_shapes
        self.sizes = [a * b for a, b in self.shapes]
        self.nvar = sum(self.sizes)
        self.square = model.shape[0] == model.shape[1]
        self.square_factors = self.square and all(a == b for a, b in self.shapes)
        self.floor = ctx.mpf(10) ** (10 - int(digits))

    def state(self, factors):
        z = []
        for W in factors:
            z.extend(self.ctx.mpf(float(v)) for v in np.ravel(W))
        return z + [self.ctx.zero]

    def unflatten(self, z):
        out, k = [], 0
        for (a, b), n in zip(self.shapes, self.sizes):
            out.append([list(z[k + i * b: k + (i + 1) * b]) for i in range(a)])
            k += n
        return out

    def _product(self, fs):
        W = fs[0]
        for F in fs[1:]:
            W = _matmul(F, W)
        return W

    def terms(self, z):
        fs = self.unflatten(z)
        L = len(fs)
        prefix = [None] * (L + 1)      # prefix[j] = W_j ... W_1
        prefix[1] = fs[0]
        for j in range(2, L + 1):
            prefix[j] = _matmul(fs[j - 1], prefix[j - 1])
        W = prefix[L]
        g, rr = self.res.grad([v for row in W for v in row])
        d, dp = self.model.shape
        G = [g[i * dp:(i + 1) * dp] for i in range(d)]
        left = G                       # (W_L ... W_{j+1})^T G, built from the top layer down
        grads = [None] * L
        for j in range(L, 0, -1):
            grads[j - 1] = left if j == 1 else _matmul(left, _transpose(prefix[j - 1]))
            if j > 1:
                left = _matmul(_transpose(fs[j - 1]), left)
        f, diss = [], 0
        for Gj in grads:
            for row in Gj:
                for v in row:
                    f.append(-v)
                    diss = diss + v * v
        return f, self.res.lscale * rr, diss

    def entries(self, z):
        W = self._product(self.unflatten(z))
        return [v for row in W for v in row]

    def det(self, z):
        """``det W``: the product of the factor dets when they are square (no cancellation), else from ``W``."""
        fs = self.unflatten(z)
        if self.square_factors:
            out = self.ctx.one
            for F in fs:
                out = out * _det(F, self.ctx)
            return out
        return _det(self._product(fs), self.ctx)

    def observe(self, z):
        w = self.entries(z)
        sign = None
        if self.square:
            det = self.det(z)
            sign = 0 if not det else (1 if det > 0 else -1)
        factors = tuple(np.array([[float(v) for v in row] for row in F]) for F in self.unflatten(z))
        return w, self.res.loss(w), sign, factors

    def precision_ok(self, z) -> bool:
        """Whether ``|det W| / ||W||_F^n >= 10^(10 - digits)`` (square ``W``; always true otherwise)."""
        if not self.square:
            return True
        w = self.entries(z)
        nrm2 = 0
        for v in w:
            nrm2 = nrm2 + v * v
        n = self.model.shape[0]
        return abs(self.det(z)) >= self.floor * self.ctx.sqrt(nrm2) ** n

    def valid(self, z):
        big = self.ctx.mpf(10) ** 100
        return all(abs(v) < big for v in z[:-1])

    def recentre(self, z):
        return None

    def atol(self, z, rtol):
        scale = max(abs(v) for v in z[:-1])
        a = rtol * self.ctx.mpf("1e-6") * scale
        return [a] * (len(z) - 1) + [rtol]


# ---------------------------------------------------------------------------------------------------------------
# One integration.
# ---------------------------------------------------------------------------------------------------------------
class _Stop(Exception):
    def __init__(self, status: Status, message: str):
        super().__init__(message)
        self.status, self.message = status, message


SWITCH_ON, SWITCH_OFF = 0.2, 0.05   # d(-log loss)/dtau thresholds for entering / leaving the loss clock
GAP_MIN = 1e-3                       # relative singular-value gap needed before leaving the raw factors
T_HORIZON = 1e100                    # without t_max, a run whose loss stalls ends here (status budget)


class _Integration:
    """One high-precision run (a private helper of :class:`GradientFlowMP`).

    Records the start, the loss levels, the explicit times and the end, each under a key (``("start",)``,
    ``("level", k)``, ``("time", i)``, ``("final",)``) so that the reference run's points can be matched.
    ``max_records``: stop after that many records (the reference run stops where the main run stopped).
    """

    def __init__(self, spec: Spec, *, use_chart: bool, digits: int, work_dps: int, tol: float, kmax: int,
                 max_steps: int, deadline: float, max_records: int | None = None):
        self.spec, self.use_chart, self.digits, self.work_dps = spec, use_chart, digits, work_dps
        self.kmax, self.max_steps, self.deadline, self.max_records = kmax, max_steps, deadline, max_records
        self.ctx = ctx = make_context(work_dps)
        self.tol = ctx.mpf(tol)
        self.records: list[dict] = []
        self.status, self.message = Status.COMPLETED, ""
        self.stats = {"steps": 0, "rejected": 0, "nfev": 0, "njev": 0, "nlu": 0, "newton": 0, "recharts": 0, "clock_switches": 0,
                      "path": None, "work_dps": work_dps, "tol": float(tol)}
        self.seconds = 0.0
        self.solver = None

    # ----- bookkeeping ---------------------------------------------------------------------------------------
    def run(self) -> None:
        start = time.perf_counter()
        try:
            self._run()
        except _Stop as stop:
            self.status, self.message = stop.status, stop.message
        except StepFailure as exc:
            self.status, self.message = Status.SOLVER_FAILED, f"the Radau solver failed: {exc}"
        finally:
            if self.solver is not None:
                self._collect()
        self.seconds = time.perf_counter() - start

    def _record(self, key, z):
        ctx = self.ctx
        w, loss, sign, factors = self.system.observe(z)
        tau = z[-1]
        self.records.append({"key": key, "tau": tau, "t": ctx.expm1(tau), "w": w, "loss": loss, "det_sign": sign,
                             "factors": factors, "dw": self.system.dW_dtau(z),
                             "dloss": self.system.dloss_dtau(z)})
        if self.max_records is not None and len(self.records) >= self.max_records:
            raise _Done()

    def _check_budget(self):
        if self.stats["steps"] + self.solver.stats["steps"] >= self.max_steps:
            raise _Stop(Status.BUDGET, f"stopped after max_steps={self.max_steps} steps")
        if time.perf_counter() > self.deadline:
            raise _Stop(Status.BUDGET, "stopped at the wall-clock budget")

    def _collect(self):
        for key in ("steps", "rejected", "nfev", "njev", "nlu", "newton"):
            self.stats[key] += self.solver.stats[key]
            self.solver.stats[key] = 0

    def _new_solver(self, z, x0, h0=None, k0=None):
        if self.solver is not None:
            self._collect()
        sys_, clock = self.system, self.clock
        self.solver = Radau(lambda x, y: sys_.zfun(clock, x, y), lambda x, y, f0: sys_.zjac(clock, x, y, f0), z, x0,
                            ctx=self.ctx, clock=clock, rtol=self.tol, atol=sys_.atol(z, self.tol),
                            stages=self.kmax, h0=h0, valid=sys_.valid, stats={})
        return self.solver

    def _set_clock(self, clock, z):
        """Switch the solver to ``clock`` at state ``z`` (step length converted with the current rate)."""
        old = self.solver
        h0 = k0 = None
        if old is not None and old.h is not None:
            k0 = old.k
            if clock != self.clock:
                rate = self.system.rate(z)
                h0 = old.h * rate if clock == "u" else old.h / rate
                self.stats["clock_switches"] += 1
            else:
                h0 = old.h
        self.clock = clock
        self._new_solver(z, self._x_of(z), h0, k0)

    def _x_of(self, z):
        return z[-1] if self.clock == "tau" else -self.ctx.log(self.system.loss(z))

    # ----- setup ---------------------------------------------------------------------------------------------
    def _initial_system(self):
        spec = self.spec
        raw = _RawSystem(spec.problem, spec.model, self.ctx, self.digits)
        z_raw = raw.state(spec.init.factors)
        if not self.use_chart:
            self.stats["path"] = "raw"
            return raw, z_raw
        cs = self._chart_from_raw(raw, z_raw)
        if cs is not None:
            self.stats["path"] = "chart"
            return cs
        self.stats["path"] = "raw-then-chart"
        return raw, z_raw

    def _chart_from_raw(self, raw, z):
        """The chart system and scaled state at the raw state ``z``, or None when the singular values are too
        close."""
        ctx = self.ctx
        y, signs = chart_from_entries(raw.entries(z), ctx, raw.det(z))
        system = _ChartSystem(self.spec.problem, self.spec.model.depth, signs, ctx)
        e1 = ctx.exp(y[2])
        zc = [y[0] * e1, y[1] * e1, y[2], y[3], z[-1]]
        if system.gap(zc) <= GAP_MIN:
            return None
        return system, zc

    def _levels(self, loss0):
        """``[(k, 10^(-k/per_decade))]`` strictly between the final loss and ``loss0``, descending."""
        ctx, pd = self.ctx, self.spec.per_decade
        stop = self.spec.until_loss
        out = []
        k = math.floor(-float(ctx.log10(loss0)) * pd)
        while True:
            lv = ctx.mpf(10) ** (ctx.mpf(-k) / pd)
            if stop is not None and lv <= ctx.mpf(stop) * (1 + ctx.mpf(10) ** -12):
                break
            if lv < loss0:
                out.append((k, lv))
            if k > 400 * pd:
                break
            k += 1
        return out

    # ----- the run -------------------------------------------------------------------------------------------
    def _run(self):
        try:
            self._integrate()
        except _Done:
            pass

    def _integrate(self):
        ctx, spec = self.ctx, self.spec
        self.system, z = self._initial_system()
        self._record(("start",), z)
        loss0 = self.records[0]["loss"]
        # Loss events (levels, then until_loss) and time events (record_at, then t_max), both in order.
        events = [(("level", k), lv) for k, lv in self._levels(loss0)]
        if spec.until_loss is not None:
            if loss0 <= ctx.mpf(spec.until_loss):
                return
            events.append((("final",), ctx.mpf(spec.until_loss)))
        t_end = spec.t_max
        if t_end is None and spec.until_loss is None and spec.record_at:
            t_end = max(spec.record_at)
        times = sorted({float(t) for t in (spec.record_at or ()) if t > 0 and (t_end is None or t < t_end)})
        tevents = [(("time", i), ctx.log1p(ctx.mpf(t))) for i, t in enumerate(times)]
        if t_end is not None:
            tevents.append((("final",), ctx.log1p(ctx.mpf(t_end))))
        else:
            tevents.append((("horizon",), ctx.log1p(ctx.mpf(T_HORIZON))))
        self.clock = None
        rate = self.system.rate(z)
        self._set_clock("u" if rate >= SWITCH_ON else "tau", z)
        force = None   # a clock forced until its next event (after undoing a step that passed that event)
        while True:
            self._check_budget()
            solver = self.solver
            z = solver.y
            if force is None:
                rate = self.system.rate(z)
                want = self.clock
                if self.clock == "tau" and rate >= SWITCH_ON:
                    want = "u"
                elif self.clock == "u" and rate < SWITCH_OFF:
                    want = "tau"
                if not events:
                    want = "tau"
                if want != self.clock:
                    self._set_clock(want, z)
                    solver = self.solver
            if self.clock == "u":
                key, level = events[0]
                solver.x = -ctx.log(self.system.loss(z))           # re-synchronize the clock with the state
                target = -ctx.log(level) + ctx.mpf(10) ** -(self.digits + 5)
                solver.step(target)
                zn = solver.y
                if zn[-1] > tevents[0][1]:                         # passed a record time: redo in log-time
                    solver.rewind()
                    force = "tau"
                    self._set_clock("tau", solver.y)
                    continue
                if solver.x == target:
                    self._finish_level(solver, level)
                    self._record(key, solver.y)
                    events.pop(0)
                    force = None
                    if key == ("final",):
                        return
                    z = solver.y
            else:
                key, tlim = tevents[0]
                solver.step(tlim)
                zn = solver.y
                if events and self.system.loss(zn) <= events[0][1]:   # passed a loss level: redo in the loss clock
                    solver.rewind()
                    force = "u"
                    self._set_clock("u", solver.y)
                    continue
                if solver.x == tlim:
                    self._record(key, zn)
                    tevents.pop(0)
                    force = None
                    if key == ("final",):
                        return
                    if key == ("horizon",):
                        raise _Stop(Status.BUDGET, f"reached the time horizon t = {T_HORIZON:.0e} with loss "
                                                   f"{float(self.records[-1]['loss']):.3g} above until_loss: the "
                                                   f"flow converges to a positive loss, or too slowly")
            self._post_step()

    def _finish_level(self, solver, level):
        """Make sure ``loss <= level`` at a loss-clock endpoint (the clock is re-synchronized at each step start,
        so the endpoint misses the level only by one step's local error): a few tiny steps if needed."""
        ctx = self.ctx
        h_keep = solver.h
        for _ in range(6):
            loss = self.system.loss(solver.y)
            if loss <= level:
                break
            solver.x = -ctx.log(loss)
            solver.h = None
            solver.step(-ctx.log(level) + 2 * ctx.log(loss / level) + ctx.mpf(10) ** -(self.digits + 5))
        else:
            raise StepFailure("could not bring the loss below a level at a step endpoint")
        solver.h = h_keep

    def _post_step(self):
        """Precision check, re-chart and raw-to-chart switch after an accepted step."""
        solver = self.solver
        z = solver.y
        sys_ = self.system
        if sys_.kind == "raw":
            if not sys_.precision_ok(z):
                raise _Stop(Status.PRECISION_LOST,
                            f"|det W| / ||W||^n fell below 1e{10 - self.digits} at t ~ "
                            f"{self.ctx.nstr(self.ctx.expm1(z[-1]), 5)}: {self.work_dps} digits cannot resolve it")
            if self.use_chart:
                cs = self._chart_from_raw(sys_, z)
                if cs is not None:
                    self.system, zc = cs
                    self._set_clock(self.clock, zc)
                    return
        else:
            zc = sys_.recentre(z)
            if zc is not None:
                self.stats["recharts"] += 1
                solver.set_state(solver.x, zc)
        solver.atol = sys_.atol(solver.y, self.tol)


class _Done(Exception):
    """The reference run has recorded as many points as the main run."""


# ---------------------------------------------------------------------------------------------------------------
# The engine.
# ---------------------------------------------------------------------------------------------------------------
def _int_option(name, value, lo, hi):
    require(isinstance(value, (int, np.integer)) and not isinstance(value, bool) and lo <= value <= hi,
            f"{name} must be an integer in [{lo}, {hi}], got {value!r}")
    return int(value)


class GradientFlowMP(AbstractEngine):
    """High-precision gradient flow in mpmath (see the module docstring).

    Options (validated here, eagerly):

    - ``digits`` (default 40): decimal digits of the high-precision record ``Point.hp`` and the base working
      precision; the chart path works at ``digits + guard`` digits, the raw path at ``digits + 10``.
    - ``tol`` (default ``10^-(digits - 10)``, i.e. 1e-30): local error tolerance of each step in the scaled max
      norm (relative, with absolute floors: see ``_ChartSystem.atol``).
    - ``guard`` (default None: ``10 + decades(until_loss) / 2``): extra working digits on the chart path.
    - ``max_steps`` (default 20000): accepted steps per run before ``Status.BUDGET``.
    - ``path``: "auto" (chart when it applies), "chart" (required, else InvalidInput) or "raw".
    - ``estimate`` (default True): run the reference integration for ``loss_err`` / ``product_err``;
      ``extra_digits`` (default 20) and ``tighter`` (default 100) set its precision and tolerance. Without it
      the errors are only the rounding floor ``10^-digits`` relative: no discretization error is estimated.
    - ``stages`` (default 7): Radau IIA stages ``s`` (order ``2 s - 1``), 2 .. 15.
    """

    name = "gf-mp"

    def __init__(self, digits: int = 40, tol: float | None = None, max_steps: int = 20_000, path: str = "auto",
                 guard: int | None = None, estimate: bool = True, extra_digits: int = 20, tighter: float = 100.0,
                 stages: int = 7):
        digits = _int_option("digits", digits, 20, 2000)
        if tol is not None:
            require(isinstance(tol, (int, float)) and not isinstance(tol, bool) and math.isfinite(tol)
                    and 10.0 ** -digits <= tol <= 1e-6,
                    f"tol must be a number in [1e-{digits}, 1e-6] (10^-digits .. 1e-6), got {tol!r}")
        max_steps = _int_option("max_steps", max_steps, 1, 10 ** 9)
        require(path in PATHS, f"path must be one of {PATHS}, got {path!r}")
        if guard is not None:
            guard = _int_option("guard", guard, 0, 2000)
        require(isinstance(estimate, bool), f"estimate must be True or False, got {estimate!r}")
        extra_digits = _int_option("extra_digits", extra_digits, 1, 1000)
        require(isinstance(tighter, (int, float)) and not isinstance(tighter, bool) and math.isfinite(tighter)
                and tighter >= 2, f"tighter must be a number >= 2, got {tighter!r}")
        kmax = _int_option("stages", stages, 2, 15)
        self.digits = digits
        self.tol = float(tol) if tol is not None else 10.0 ** -(digits - 10)
        self.max_steps, self.path, self.guard, self.estimate = max_steps, path, guard, estimate
        self.extra_digits, self.tighter, self.kmax = extra_digits, float(tighter), kmax

    def describe_options(self) -> dict:
        return {"digits": self.digits, "tol": self.tol, "path": self.path, "guard": self.guard,
                "estimate": self.estimate, "extra_digits": self.extra_digits, "tighter": self.tighter,
                "stages": self.kmax, "max_steps": self.max_steps}

    # ------------------------------------------------------------------------------------------------------
    def _chart_applies(self, spec: Spec) -> bool:
        if self.path == "raw":
            return False
        model = spec.model
        ok = (isinstance(model, DeepMatrix) and model.shape == (2, 2) and model.full_width
              and is_balanced(spec.init.factors) and np.linalg.det(np.asarray(_float_product(spec.init.factors))) != 0)
        require(ok or self.path != "chart", "path='chart' needs a balanced, full-width, 2x2 deep factorization "
                                           "with a nonsingular end-to-end matrix")
        return ok

    def work_digits(self, spec: Spec, use_chart: bool) -> int:
        """Working decimal digits of the main run."""
        if not use_chart:
            return self.digits + 10
        if self.guard is not None:
            return self.digits + self.guard
        decades = 30.0 if spec.until_loss is None else max(0.0, -math.log10(float(spec.until_loss)))
        return self.digits + 10 + int(math.ceil(decades / 2))

    def _run(self, spec: Spec) -> Result:
        require(isinstance(spec.model, DeepMatrix),
                f"gf-mp integrates deep matrix factorizations only, got {type(spec.model).__name__}")
        require(spec.until_loss is not None or spec.t_max is not None or spec.record_at,
                "gradient flow needs until_loss, t_max or record_at to know when to stop")
        use_chart = self._chart_applies(spec)
        start = time.perf_counter()
        budget = float(spec.wall_budget)
        work = self.work_digits(spec, use_chart)
        # The main run may use up to 40% of the budget when a reference run follows (it costs ~1.5x the main).
        main_deadline = start + (0.4 * budget if self.estimate else budget)
        main = _Integration(spec, use_chart=use_chart, digits=self.digits, work_dps=work, tol=self.tol,
                            kmax=self.kmax, max_steps=self.max_steps, deadline=main_deadline)
        main.run()
        stats = {"main": dict(main.stats, seconds=round(main.seconds, 3))}
        tolerances = {"tol": self.tol, "work_digits": work}
        ref_by_key = None
        if self.estimate and len(main.records) > 1:
            ref = _Integration(spec, use_chart=use_chart, digits=self.digits + self.extra_digits,
                               work_dps=work + self.extra_digits, tol=self.tol / self.tighter, kmax=self.kmax,
                               max_steps=4 * self.max_steps, deadline=max(start + budget, time.perf_counter() + 1.0),
                               max_records=len(main.records))
            ref.run()
            ref_by_key = {r["key"]: r for r in ref.records}
            stats["reference"] = dict(ref.stats, seconds=round(ref.seconds, 3), status=ref.status.value)
            tolerances.update(ref_tol=self.tol / self.tighter, ref_work_digits=work + self.extra_digits)
            if len(ref.records) < len(main.records):
                stats["reference_note"] = "the reference run ended early; later points carry no error estimate"
        points = [self._point(spec, rec, None if ref_by_key is None else ref_by_key.get(rec["key"]), main.ctx)
                  for rec in main.records]
        return Result(points, main.status, main.message, f"mpmath-{self.digits}", tolerances, stats)

    def _point(self, spec: Spec, rec: dict, ref: dict | None, ctx) -> Point:
        D = self.digits
        d, dp = spec.model.shape
        w, loss = rec["w"], rec["loss"]
        scale = max(abs(v) for v in w)
        floor_w = scale * ctx.mpf(10) ** (-D)
        floor_l = loss * ctx.mpf(10) ** (-D)
        if ref is None:
            perr, lerr = (math.inf, math.inf) if self.estimate else (float(floor_w), float(floor_l))
        else:
            dtau = abs(rec["tau"] - ctx.mpf(ref["tau"]))
            dw = max(abs(a - ctx.mpf(b)) for a, b in zip(w, ref["w"])) + rec["dw"] * dtau
            dl = abs(loss - ctx.mpf(ref["loss"])) + rec["dloss"] * dtau
            perr = float(2 * dw + floor_w)
            lerr = float(2 * dl + floor_l)
        hp = {"digits": D, "loss": ctx.nstr(loss, D),
              "product": [[ctx.nstr(w[i * dp + j], D) for j in range(dp)] for i in range(d)],
              "t": ctx.nstr(rec["t"], D)}
        W = np.array([float(v) for v in w]).reshape(d, dp)
        return Point(float(rec["t"]), None, float(loss), W, rec["det_sign"], rec["factors"], lerr, perr, hp)


def _float_product(factors):
    W = np.asarray(factors[0], dtype=float)
    for F in factors[1:]:
        W = np.asarray(F, dtype=float) @ W
    return W


# ---------------------------------------------------------------------------------------------------------------
# Benchmark (for ``verify bench``).
# ---------------------------------------------------------------------------------------------------------------
def bench_gf_mp(depths: Sequence[int] = (2, 3, 4, 6), until_loss: float = 1e-30, *, digits: int = 40,
                scale: float = 0.1, seed: int = 0, wall_budget: float = 300.0) -> list[dict]:
    """One gf-mp run per depth on RC20 ``[[*, 1], [1, 0]]`` from a balanced start (``scale``, det > 0), down to
    ``until_loss``. Rows: ``workload, depth, seconds`` (main + reference run), ``loss`` (final), ``status``,
    ``w11_rel_err`` (the error estimate ``product_err / |w11|`` at the end: 1e-20 means 20 correct digits),
    ``w11_times_s`` (``|w11| sqrt(2 loss)``, which tends to 1), ``steps`` (main run), ``w11`` (decimal string)."""
    from .. import inits
    from ..problems import rc20

    rows = []
    for L in depths:
        model = DeepMatrix(int(L), (2, 2))
        init = inits.balanced(model, scale, seed=seed, det="positive")
        tr = GradientFlowMP(digits=digits).run(rc20(), model, init, until_loss=until_loss, wall_budget=wall_budget)
        fin = tr.final
        ctx = make_context(digits + 10)
        w11 = ctx.mpf(fin.hp["product"][0][0]) if fin.hp else ctx.mpf(float(fin.product[0, 0]))
        loss = ctx.mpf(fin.hp["loss"]) if fin.hp else ctx.mpf(fin.loss)
        rows.append({
            "workload": f"gf-mp rc20 balanced s={scale:g} to loss {until_loss:g}",
            "depth": int(L), "seconds": round(tr.seconds, 3), "loss": float(loss), "status": tr.status.value,
            "w11_rel_err": float(fin.product_err / abs(w11)) if w11 else math.inf,
            "w11_times_s": float(abs(w11) * ctx.sqrt(2 * loss)),
            "steps": tr.stats.get("main", {}).get("steps"),
            "w11": ctx.nstr(w11, 25),
        })
    return rows
