"""``gf-mp``: high-precision gradient flow (mpmath, with FLINT for the linear algebra): 20+ correct digits.

Measured (``verify bench --only gf-mp``, 2-core machine, 40 digits, tol 1e-30, balanced start at scale 0.1):
RC20 down to loss 1e-30 in 34 / 40 / 42 / 43 s at depths 2 / 3 / 4 / 6, *including* the reference run of the
error estimate (the main run alone: ~15 s), with 30 .. 34 correct digits of ``w11`` by that estimate.
With the stage count chosen from the tolerance (issue 12; ``verify bench --only gf-mp --mp-digits D``, depth 2,
on the shared machine at load 4 .. 9, so the seconds vary 2x between runs): 40 digits, 11 stages: 377 steps, 49 s
(main run 23 s); 60 digits (tol 1e-50), 19 stages: 421 steps, 149 .. 174 s (main run 41 .. 89 s), 59 digits of
``w11`` by the estimate, where 10 stages used to stall (loss 1.8e-2 after 634 steps and 60 s); 100 digits to
loss 1e-60, 34 stages: the main run's 40% share (240 s) of a 600 s budget ended at loss 3e-4 after 135 steps
(1.8 s per step: the ``136 x 136`` elimination of the stage system at 465 bits dominates). Depth 6 at 60
digits: status budget at loss 5.6e-19 with a 300 s budget. Most of those steps land on the recorded loss levels
(``per_decade`` 4, each ends a step): with ``per_decade=1`` the 60-digit depth-2 run takes 171 steps and 32.5 s
*with* its error estimate (main 14.3 s, reference 18.2 s; 44 correct digits of ``w11`` by it), under the issue's
60 s; 100 digits to loss 1e-60 (34 stages) completes in 346 s with its estimate (main 158 s, 275 steps; 90
correct digits of ``w11``), above the issue's 300 s. With the default 4 levels per decade neither issue-12
target (60 digits in 60 s, 100 digits in 5 min) is met.

Solver.
    :class:`Radau`: the ``s``-stage Radau IIA collocation method (option ``stages``, by default chosen from the
    tolerance so that the step count does not grow with the digits, see :mod:`models.engines.radau_mp`: order
    ``2s - 1``, stiffly accurate, L-stable), solved by Newton's method on the full ``s n x s n`` stage system with
    one Jacobian per stage (forward differences at 2/3 of the working precision). The stage Jacobians are taken at
    the predicted stages and recomputed (up to 3 times) when the iteration contracts slowly: the flow's stiffness
    grows like ``loss^-(L-1)/L`` and changes by O(1) factors within one step late in the flow, which is why a
    single Jacobian per step (simplified Newton) does not converge at useful step sizes. The Newton matrix is a
    FLINT ``arb_mat`` solved by Gaussian elimination at the working precision, and the chart's right-hand side is
    evaluated in FLINT ``arb`` arithmetic (:class:`_FlintKit`); both are converted exactly from and to mpf.
    Step-size control by step doubling: each step is done once with ``h`` and twice with ``h / 2`` (the half
    steps' Jacobians are interpolated from the full step's), the half-step result is kept and its error is
    estimated as the difference over ``2^p - 1``, ``p = 2s - 1``. The predictor is the last full-length step's
    collocation polynomial (the constant predictor when that leaves the chart's domain). About 45 evaluations of
    the right-hand side per step, ~410 .. 470 steps from the start to loss 1e-30.

Chart path (balanced, full-width, 2x2 deep factorization, the RC20 setting).
    The *scaled* chart of :mod:`models.chart`: ``W = R(theta) diag(s1 e^rho1, s2 e^rho2) R(phi)^T`` with state
    ``(p, q, rho1, rho2) = (e^rho1 theta, e^rho1 phi, rho1, rho2)``, integrated in log-time ``tau = log(1 + t)``
    (``dz/dtau = e^tau f(z)``). The det sign is fixed by construction, the tiny singular value is stored through
    its logarithm (``rho2`` falls without bound: to about -1e26 near loss 1e-27 at depth 2), the residuals are
    formed without cancellation, and late in the flow the fast (stiff) modes are the coordinates ``p, q``
    themselves (they are nearly ``w21, w12``), so the Jacobian is well conditioned although ``h * lambda_max``
    reaches ``1e60`` at loss 1e-30: a handful of guard digits suffices. A start with (nearly) equal singular
    values (``alpha * I``, where the chart is singular) is first integrated on the raw factors until the relative
    gap ``1 - (sigma2/sigma1)^(2/L)`` exceeds 1e-3.

Events.
    Explicit times (``record_at``, ``t_max``) are step ends. A loss level ``10^(-k/per_decade)`` (and the final
    ``until_loss``) ends a step chosen by Newton's method on the step's end ``tau``: the step towards a level is
    clipped where the level is predicted; a step that passes it is undone, the crossing is found on that step's
    collocation polynomials and the step is redone to end there, with the stage equations solved to
    ``LAND_KAPPA`` (1e-6) tolerances so that the step's end is smooth in its length. A level is recorded with its
    loss in ``[level (1 - 1e-3 tol), level]`` (``LAND_TIGHT``; after several stalled iterations within
    ``LAND_SLACK = 1e4`` tolerances, counted in the stats as ``loose_landings``); the record holds the loss
    actually reached, and about one extra step per level is the cost.

Depth 1 (the linear model).
    The closed form of :mod:`models.engines.linear_flow_mp` (exact up to the working precision; no integration).

Raw path (everything else deep-matrix: unbalanced inits, other shapes).
    The flattened factors with the same solver, in log-time. The det sign (square factors) is the product of the
    factor dets, exact in mpmath; the run stops with ``Status.PRECISION_LOST`` when ``|det W| / ||W||_F^n``
    falls below ``10^(10 - digits)``, or changes sign within one step from below ``10^((10 - digits)/2)`` (a
    decaying det can jump over the band in one step). It is slow (a Jacobian costs ``4 L`` extra evaluations): it is there for
    unbalanced starts and cross-checks at moderate loss.

Precision.
    Everything happens in a private ``mpmath.MPContext``; the global ``mpmath.mp`` is never read or changed, and
    FLINT's (global) precision is set only for the duration of each FLINT call, under a lock (:func:`arb_prec`).
    The working precision is ``digits + guard`` decimal digits, ``guard`` defaulting to ``10 +
    decades(until_loss)/2`` (the residuals ``w12 - 1`` etc. lose ``-log10 sqrt(loss)`` digits to cancellation).

Error estimate.
    A *reference* run repeats the integration with ``extra_digits`` more digits and a tolerance ``tighter``
    times smaller, recording the same events (the same loss levels, the same times). At each point the
    reference is moved along the flow to the main record's time, ``W'(tau) ~ W' + dW'/dtau (tau - tau')`` (loss
    levels are landed on within ``LAND_TIGHT`` tolerances, so the two runs' records of a level sit at slightly
    different times), and ``product_err = 2 max_ij (|W_ij - W'_ij(tau)| + |dW_ij/dtau - dW'_ij/dtau| |tau -
    tau'|) + |W| 10^-digits`` (the second term bounds the first-order move's remainder); likewise ``loss_err``.
    The reference is far more accurate than the main run, so the difference is the main run's error at its
    recorded time; the factor 2 covers the reference's own error.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from typing import Callable, Sequence

import flint
import mpmath
import numpy as np
from mpmath.libmp import from_man_exp

from .. import chart
from ..errors import InvalidInput, require
from ..factorizations import DeepMatrix
from ..inits import is_balanced
from ..trajectory import Point, Status
from .base import AbstractEngine, Result, Spec
from .radau_mp import StageMatrix, apply_weights, auto_stages, interp_many, lagrange_weights, \
    stage_residual

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
    """A list-of-rows matrix of mpf as a FLINT ``arb_mat`` (exact conversion) at ``prec`` bits."""
    with arb_prec(prec):
        return flint.arb_mat([[to_arb(v) for v in row] for row in rows])


def combine(weights, mats, prec: int):
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


# ---------------------------------------------------------------------------------------------------------------
# The stiff solver: Radau IIA.
# ---------------------------------------------------------------------------------------------------------------
SOLVER_COUNTERS = ("steps", "rejected", "newton_failed", "predictor_reset", "nfev", "njev", "nlu", "newton")


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


_HALF_WEIGHTS: dict = {}


def half_step_weights(s: int, ctx) -> list[list[list]]:
    """Lagrange weights on the nodes ``[0] + c`` of one step at the stage points of its two half steps:
    ``W[half][i]`` interpolates at ``(half + c_i) / 2`` (constants of the tableau, cached like it)."""
    key = (s, ctx.prec)
    if key not in _HALF_WEIGHTS:
        c, _ = radau_tableau(s, ctx)
        nodes = [ctx.zero] + c
        _HALF_WEIGHTS[key] = [[_lagrange(nodes, (half + ci) / 2) for ci in c] for half in (0, 1)]
    return _HALF_WEIGHTS[key]


def _lagrange(nodes, x):
    return lagrange_weights(nodes, x)


class Radau:
    """Radau IIA with ``s`` stages (order ``p = 2s - 1``, stiffly accurate, L-stable) for ``z' = fun(x, z)``.

    ``fun(x, z) -> dz``, ``jac(x, z, dz) -> dF/dz`` (rows). The state seen by the driver is ``y = z + [x]``
    (``x`` is log-time ``tau``). ``rtol``/``atol`` (one per component of ``z``) define the scaled max norm.
    :meth:`step` makes one accepted step of at most ``x_limit - x``; :meth:`rewind` undoes it.
    """

    FAC_MIN, FAC_MAX, SAFETY = 0.2, 4.0, 0.8
    TINY = 1e-3      # steps shorter than TINY * the planned step skip the error estimate (see _try)
    REFRESHES = 3    # stage-Jacobian recomputations allowed per Newton solve when it contracts slowly
    KAPPA = 0.01     # Newton stops when its estimated remaining error is below kappa (in tolerance units);
    #                  the driver lowers ``kappa`` for the steps that land on a loss level (see _Integration)

    def __init__(self, fun, jac, y0, x0, *, ctx, rtol, atol, stages=10, h0=None, valid=None, stats=None,
                 maxit=20):
        self.ctx, self.fun, self.jac = ctx, fun, jac
        self.s = int(stages)
        self.p = 2 * self.s - 1
        self.c, self.A = radau_tableau(self.s, ctx)
        self.rtol = ctx.mpf(rtol)
        self.atol = [ctx.mpf(a) for a in atol]
        self.h = None if h0 is None else ctx.mpf(h0)
        self.valid = valid or (lambda z: True)
        self.maxit = maxit
        self.kappa = self.KAPPA
        self.stats = stats if stats is not None else {}
        for key in SOLVER_COUNTERS:
            self.stats.setdefault(key, 0)
        self.set_state(x0, y0)
        self._prev = None

    # ----- state ----------------------------------------------------------------------------------------------
    def set_state(self, x, y) -> None:
        """Restart from a new point (after a re-chart); keeps ``h``."""
        ctx = self.ctx
        self.x = ctx.mpf(x)
        self.z = [ctx.mpf(v) for v in y[:-1]]
        self._J = self._f0 = None
        self._poly = self._dense = None

    @property
    def y(self) -> list:
        return self.z + [self.x]

    def _prepare(self):
        if self._J is None:
            self._f0 = self.fun(self.x, self.z)
            self._J = to_arb_mat(self.jac(self.x, self.z, self._f0), self.ctx.prec)
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
        return self._interp_w(Z, _lagrange([0] + self.c, (x - xs) / hp))

    def _interp_w(self, Z, w):
        """``sum_j w[j + 1] Z[j]`` (the node 0 carries the value 0)."""
        return [self.ctx.fsum(w[j + 1] * Z[j][k] for j in range(self.s)) for k in range(len(Z[0]))]

    def _solve(self, x0, z0, h, Zpred, Js, sc):
        """Newton iteration for the stages (stage Jacobians ``Js`` or None: computed at the predicted stages).
        Returns ``(Z, F-values, Js)`` or None when the iteration does not converge."""
        ctx, s, A, c = self.ctx, self.s, self.A, self.c
        n = len(z0)
        Z = [list(v) for v in Zpred]
        xs = [x0 + ci * h for ci in c]
        refreshes = self.REFRESHES
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
                Js = [to_arb_mat(self.jac(xi, Yi, Fi), ctx.prec) for xi, Yi, Fi in zip(xs, Ys, Fs)]
                self.stats["njev"] += s
                fac = None
            if fac is None:
                try:
                    fac = StageMatrix(h, A, Js, ctx, arb_prec)
                except ZeroDivisionError:
                    return None
                self.stats["nlu"] += 1
            R = stage_residual(h, A, Fs, Z, ctx, arb_prec)
            try:
                d = fac.solve(R)
            except ZeroDivisionError:       # the Newton matrix is singular at working precision
                return None
            self.stats["newton"] += 1
            dZ = [d[i * n:(i + 1) * n] for i in range(s)]
            Z = [[a + b for a, b in zip(Zi, di)] for Zi, di in zip(Z, dZ)]
            nd = max(self._norm(di, sc) for di in dZ)
            if nd == 0:
                return Z, Fs, Js
            if prev is not None:
                theta = nd / prev
                # stale Jacobians (slow contraction, or too slow to converge within a few more iterations):
                # recompute them at the current stages, which restores Newton's quadratic convergence
                if refreshes and (theta >= 0.3 or (theta >= 0.01 and nd * theta ** 4 > self.kappa)):
                    Js, refreshes, prev = None, refreshes - 1, None
                    continue
                if theta >= 0.9:
                    return None
                if theta / (1 - theta) * nd <= self.kappa:
                    return Z, None, Js
            elif nd <= self.kappa * 1e-3:
                return Z, None, Js
            prev = nd
        return None

    def _try(self, h):
        """Full step and two half steps from the current state; ``(err, z1, poly)`` or None."""
        ctx, s = self.ctx, self.s
        x0, z0 = self.x, self.z
        sc = self._scales(z0, z0)
        Zp = None
        if self._poly is not None:
            xs_, hp_, _, Zprev = self._poly
            Zp = interp_many([0] + self.c, [(x0 + ci * h - xs_) / hp_ for ci in self.c], Zprev, ctx, arb_prec)
            off = [a - b for a, b in zip(z0, self._poly[2])]
            Zp = [[a - o for a, o in zip(Zi, off)] for Zi in Zp]
            # far beyond the last step, the extrapolated polynomial can leave the chart's domain: then start
            # Newton from the constant predictor instead of rejecting the step
            if not all(self.valid([a + b for a, b in zip(z0, Zi)]) for Zi in Zp):
                Zp = None
                self.stats["predictor_reset"] += 1
        if Zp is None:      # the constant predictor: safe for the stiff components, which stay near their
            Zp = [[0 * v for v in z0] for _ in self.c]      # slow manifold
        if self.h is not None and h <= self.TINY * self.h:
            # a short step clipped onto an event (a loss level): its local error is at most ~(h / self.h)^(s+1)
            # (the stiff order) times that of a full step, far below tol, so it needs no error estimate; the start
            # Jacobian serves every stage
            r = self._solve(x0, z0, h, Zp, [self._J] * s, sc)
            if r is None:
                return None
            Zf = r[0]
            poly = (x0, h, z0, Zf)
            # the previous step's polynomial stays the predictor: extrapolated from so short a step, this one's
            # would leave the chart's domain at the next full-length step
            return 0, [a + b for a, b in zip(z0, Zf[-1])], self._poly or poly, (poly,)
        r = self._solve(x0, z0, h, Zp, None, sc)
        if r is None:
            return None
        Zf, _, Jf = r
        zf = [a + b for a, b in zip(z0, Zf[-1])]
        Jnodes = [self._J] + Jf
        W = half_step_weights(s, ctx)
        h2 = h / 2
        out = []
        xa, za = x0, z0
        for half in range(2):
            Zp = apply_weights([w[1:] for w in W[half]], Zf, ctx, arb_prec)
            off = [a - b for a, b in zip(za, z0)]
            Zp = [[a - o for a, o in zip(Zi, off)] for Zi in Zp]
            r = self._solve(xa, za, h2, Zp, [combine(w, Jnodes, ctx.prec) for w in W[half]], sc)
            if r is None:
                return None
            Zh = r[0]
            out.append((xa, za, Zh))
            za = [a + b for a, b in zip(za, Zh[-1])]
            xa = x0 + h2
        z1 = za
        err_v = [a - b for a, b in zip(z1, zf)]
        sc = self._scales(z0, z1)
        # the half-step result is kept; its local error is the difference over 2^p - 1 (p = 2s - 1: the
        # difference was measured to shrink like h^(2s) .. h^(2s+1) on the chart flow, early and late)
        err = self._norm(err_v, sc) / (2 ** self.p - 1)
        polys = tuple((xs, h2, zs, Zh) for xs, zs, Zh in out)
        return err, z1, polys[1], polys

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
                self.stats["newton_failed"] += 1
                self.stats["rejected"] += 1
                self.h = h / 2
                continue
            err, z1, poly, dense = res
            fac = self.SAFETY * (1 / err) ** (ctx.one / (self.p + 1)) if err > 0 else ctx.mpf(self.FAC_MAX)
            fac = min(max(fac, ctx.mpf(self.FAC_MIN)), ctx.mpf(self.FAC_MAX))
            if err > 1:
                self.stats["rejected"] += 1
                self.h = h * min(fac, ctx.mpf("0.7"))
                continue
            self.stats["steps"] += 1
            self._prev = (self.x, self.z, self._J, self._f0, self.h, self._poly)
            self.x = x_limit if clipped else self.x + h
            self.z, self._poly, self._dense = z1, poly, dense
            self._J = self._f0 = None
            if not clipped:
                self.h = h * fac
            elif fac < 1:        # a step clipped to land on an event says nothing about larger steps unless it
                self.h = min(self.h, h * fac)   # had to shrink: keep the planned length otherwise
            return h

    def rewind(self) -> None:
        """Undo the last accepted step (to redo it shorter, ending on an event)."""
        self.x, self.z, self._J, self._f0, self.h, self._poly = self._prev
        self._dense = None
        self.stats["steps"] -= 1

    def last_start(self) -> tuple:
        """``(x, z)`` where the last accepted step started."""
        return self._prev[0], self._prev[1]

    def dense(self, x) -> list:
        """The state ``z`` at ``x`` inside the last accepted step, from its collocation polynomials (accurate to
        the stage order ``s``: a starting guess, not a step end)."""
        for poly in self._dense:
            xs, hp, base, _ = poly
            if x <= xs + hp:
                break
        return [b + v for b, v in zip(base, self._interp(poly, x))]


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
#   zfun(tau, z) = dz/dtau = e^tau f (without tau), zjac, observe(z), loss(z), valid(z), recentre(z), atol(z, rtol)
# ---------------------------------------------------------------------------------------------------------------
class _System:
    kind = "?"
    nvar = 0

    def zfun(self, x, z):
        """``dz/dtau = e^tau f`` for the solver (``x = tau``; ``z`` without tau)."""
        et = self.ctx.exp(x)
        return [et * v for v in self.terms(z)[0]]

    def zjac(self, x, z, f0):
        return fd_jacobian(lambda y: self.zfun(x, y), z, f0, self.ctx)

    def rate(self, z):
        """``d(-log loss)/dtau``."""
        _, loss, diss = self.terms(z)
        return self.ctx.exp(z[-1]) * diss / loss if loss else self.ctx.inf

    def loss(self, z):
        return self.observe(z)[1]

    def dW_dtau(self, z):
        """``dW/dtau`` entrywise (row-major), by a forward difference along the flow at half the precision."""
        ctx = self.ctx
        Fz = self.zfun(z[-1], z[:-1]) + [ctx.one]
        scale = max(max(abs(v) for v in Fz[:-1]), ctx.mpf(10) ** -30)
        d = ctx.ldexp(1, -(ctx.prec // 2)) / scale
        w0 = self.entries(z)
        w1 = self.entries([a + d * b for a, b in zip(z, Fz)])
        return [(b - a) / d for a, b in zip(w0, w1)]

    def dloss_dtau(self, z):
        """``dloss/dtau = -e^tau diss`` (negative)."""
        _, loss, diss = self.terms(z)
        return -self.ctx.exp(z[-1]) * diss


class _ChartSystem(_System):
    """The balanced 2x2 flow in the scaled chart, state ``z = [p, q, rho1, rho2, tau]``."""

    kind = "chart"
    nvar = 4

    def __init__(self, problem, depth: int, signs, ctx):
        self.res = _Residuals(problem, ctx)
        self.problem, self.L, self.signs, self.ctx = problem, int(depth), tuple(signs), ctx
        self.two_over_L = ctx.mpf(2) / self.L
        self.prec = ctx.prec
        with arb_prec(self.prec):           # the same constants for the FLINT evaluation of terms()
            self.fast = (FLINT_KIT, _Residuals(problem, FLINT_KIT), flint.arb(1) / self.L, flint.arb(2) / self.L)

    def _trig(self, z, ctx=None):
        ctx = ctx or self.ctx
        e1 = ctx.exp(z[2])
        em = 1 / e1
        th, ph = z[0] * em, z[1] * em
        ct, st = ctx.cos_sin(th)
        cp, sp = ctx.cos_sin(ph)
        return e1, em, th, ph, ct, st, cp, sp

    def terms(self, z):
        """``(dz/dt, loss, -dloss/dt)`` (see :mod:`models.chart`), each formed without cancellation.

        Evaluated in FLINT ``arb`` arithmetic at the context's precision (the same formulas, about 5x faster than
        mpmath) and returned as mpf midpoints."""
        kit, res, inv_L, two_over_L = self.fast
        ctx = self.ctx
        with arb_prec(self.prec):
            f, loss, diss = self._terms([to_arb(v) for v in z[:4]], kit, res, inv_L, two_over_L)
            return [from_arb(v, ctx) for v in f], from_arb(loss, ctx), from_arb(diss, ctx)

    def _terms(self, z, ctx, res, inv_L, two_over_L):
        """:meth:`terms` over the number kit ``ctx`` (an mpmath context or :data:`FLINT_KIT`)."""
        L = self.L
        r1, r2 = z[2], z[3]
        s1, s2 = self.signs
        e1, em, th, ph, ct, st, cp, sp = self._trig(z, ctx)
        c2 = ctx.exp(r2 * inv_L)                      # sigma_2^(1/L)
        q1 = ctx.exp(r1 * two_over_L)                 # sigma_1^(2/L)
        q2 = c2 * c2
        e2 = c2 ** L
        sig1 = e1 if s1 > 0 else -e1
        sig2 = e2 if s2 > 0 else -e2
        w = [sig1 * ct * cp + sig2 * st * sp, sig1 * ct * sp - sig2 * st * cp,
             sig1 * st * cp - sig2 * ct * sp, sig1 * st * sp + sig2 * ct * cp]
        g, rr = res.grad(w)
        g11, g12, g21, g22 = g
        a0, a1 = g11 * cp + g12 * sp, g21 * cp + g22 * sp
        b0, b1 = g12 * cp - g11 * sp, g22 * cp - g21 * sp
        h11, h12 = ct * a0 + st * a1, ct * b0 + st * b1
        h21, h22 = ct * a1 - st * a0, ct * b1 - st * b0
        x = q2 / q1                                   # (sigma2/sigma1)^(2/L) < 1
        gap = -ctx.expm1((r2 - r1) * two_over_L) if x > 0.5 else 1 - x
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
        return f, res.lscale * rr, diss

    def entries(self, z):
        e1, em, th, ph, ct, st, cp, sp = self._trig(z)
        s1, s2 = self.signs
        e2 = self.ctx.exp(z[3])
        a, b = (e1 if s1 > 0 else -e1), (e2 if s2 > 0 else -e2)
        return [a * ct * cp + b * st * sp, a * ct * sp - b * st * cp, a * st * cp - b * ct * sp,
                a * st * sp + b * ct * cp]

    def dW_dt(self, z):
        """``dW/dt`` entrywise: the chart's velocity ``dz/dt`` pushed through :meth:`entries` analytically (a
        finite difference loses the small entries' digits when ``rho_2`` moves fast late in the flow)."""
        f = self.terms(z)[0]
        e1, em, th, ph, ct, st, cp, sp = self._trig(z)
        s1, s2 = self.signs
        e2 = self.ctx.exp(z[3])
        a, b = (e1 if s1 > 0 else -e1), (e2 if s2 > 0 else -e2)
        da, db = a * f[2], b * f[3]
        dth, dph = em * f[0] - th * f[2], em * f[1] - ph * f[2]
        dct, dst, dcp, dsp = -st * dth, ct * dth, -sp * dph, cp * dph
        return [da * ct * cp + a * (dct * cp + ct * dcp) + db * st * sp + b * (dst * sp + st * dsp),
                da * ct * sp + a * (dct * sp + ct * dsp) - db * st * cp - b * (dst * cp + st * dcp),
                da * st * cp + a * (dst * cp + st * dcp) - db * ct * sp - b * (dct * sp + ct * dsp),
                da * st * sp + a * (dst * sp + st * dsp) + db * ct * cp + b * (dct * cp + ct * dcp)]

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
        # slow and meaningless. rho2 has no lower bound: at depth 2, sigma_2 decays like exp(-c t sqrt(loss)) and
        # rho2 passes -1e6 near loss 1e-7 on the RC20 problem.
        if not (abs(z[2]) < 10 ** 4 and z[3] < z[2]):
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

    def dW_dt(self, z):
        """``dW/dt = sum_j W_L .. (dW_j/dt) .. W_1`` with the factors' velocity ``-grad``, exactly."""
        fs = self.unflatten(z)
        vs = self.unflatten(list(self.terms(z)[0]) + [z[-1]])
        out = None
        for j in range(len(fs)):
            W = vs[0] if j == 0 else fs[0]
            for k in range(1, len(fs)):
                W = _matmul(vs[k] if k == j else fs[k], W)
            out = W if out is None else [[x + y for x, y in zip(r1, r2)] for r1, r2 in zip(out, W)]
        return [v for row in out for v in row]

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


GAP_MIN = 1e-3                       # relative singular-value gap needed before leaving the raw factors
T_HORIZON = 1e100                    # without t_max, a run whose loss stalls ends here (status budget)


class _Integration:
    """One high-precision run (a private helper of :class:`GradientFlowMP`).

    Records the start, the loss levels, the explicit times and the end, each under a key (``("start",)``,
    ``("level", k)``, ``("time", i)``, ``("final",)``) so that the reference run's points can be matched.
    ``max_records``: stop after that many records (the reference run stops where the main run stopped).
    """

    LAND_TIGHT = 1e-3  # a loss level is recorded at most this many tolerances (relative) below the level,
    LAND_SLACK = 1e4   # or this many when Newton's method on the step length stalls (see _land)
    LAND_KAPPA = 1e-6  # the stage solver's Newton tolerance (in tolerance units) on steps aimed at a level

    def __init__(self, spec: Spec, *, use_chart: bool, digits: int, work_dps: int, tol: float, kmax: int,
                 max_steps: int, deadline: float, max_records: int | None = None):
        self.spec, self.use_chart, self.digits, self.work_dps = spec, use_chart, digits, work_dps
        kmax = kmax or auto_stages(tol)
        self.kmax, self.max_steps, self.deadline, self.max_records = kmax, max_steps, deadline, max_records
        self.ctx = ctx = make_context(work_dps)
        self.tol = ctx.mpf(tol)
        # half-widths of the band of log loss in which a level is recorded: loss in [level e^(-2 band), level]
        self.band, self.loose_band = self.LAND_TIGHT * self.tol / 2, self.LAND_SLACK * self.tol / 2
        self.records: list[dict] = []
        self.status, self.message = Status.COMPLETED, ""
        self.stats = dict.fromkeys(SOLVER_COUNTERS, 0)
        self.stats.update({"recharts": 0, "loose_landings": 0, "path": None, "work_dps": work_dps, "tol": float(tol),
                           "stages": kmax})
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
                             "dloss": self.system.dloss_dtau(z), "dw_dt": self.system.dW_dt(z)})
        if self.max_records is not None and len(self.records) >= self.max_records:
            raise _Done()

    def _check_budget(self):
        if self.stats["steps"] + self.solver.stats["steps"] >= self.max_steps:
            raise _Stop(Status.BUDGET, f"stopped after max_steps={self.max_steps} steps")
        if time.perf_counter() > self.deadline:
            raise _Stop(Status.BUDGET, "stopped at the wall-clock budget")

    def _collect(self):
        for key in SOLVER_COUNTERS:
            self.stats[key] += self.solver.stats[key]
            self.solver.stats[key] = 0

    def _new_solver(self, z):
        """A solver for the current system from state ``z`` (keeping the previous solver's step length)."""
        h0 = None
        if self.solver is not None:
            self._collect()
            h0 = self.solver.h
        sys_ = self.system
        self.solver = Radau(sys_.zfun, sys_.zjac, z, z[-1], ctx=self.ctx, rtol=self.tol,
                            atol=sys_.atol(z, self.tol)[:-1], stages=self.kmax, h0=h0, valid=sys_.valid,
                            stats={})
        return self.solver

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
        self._new_solver(z)
        band, loose, landed = self.band, self.loose_band, False
        while True:
            self._check_budget()
            solver = self.solver
            key, tlim = tevents[0]
            limit = tlim
            if events:
                key_l, level = events[0]
                g, d = self._level_offset(solver.y, level)
                if -2 * (loose if landed else band) <= g <= 0:    # on the level: record it
                    landed = False
                    events.pop(0)
                    self._record(key_l, solver.y)
                    if key_l == ("final",):
                        return
                    continue
                if g > 0:                                     # end the step where the level is predicted
                    limit = min(tlim, solver.x - (g + band) / d)      # (Newton's method on tau)
            self._step(limit, landing=limit != tlim and solver.h is not None and solver.h >= limit - solver.x)
            if events and self._level_offset(solver.y, events[0][1])[0] < -2 * band:
                self._land(solver, events[0][1])                 # overshot the level: undo, land on it
                landed = True
            elif not events or solver.x != limit or limit == tlim:
                if solver.x == tlim:
                    self._record(key, solver.y)
                    tevents.pop(0)
                    if key == ("final",):
                        return
                    if key == ("horizon",):
                        raise _Stop(Status.BUDGET, f"reached the time horizon t = {T_HORIZON:.0e} with loss "
                                                   f"{float(self.records[-1]['loss']):.3g} above until_loss: the "
                                                   f"flow converges to a positive loss, or too slowly")
            self._post_step()

    def _step(self, limit, landing=False):
        """One solver step to at most ``limit``; a step aimed at a loss level solves its stages to ``LAND_KAPPA``
        (so that the step's end is a smooth function of its length, down to far below ``tol``)."""
        solver = self.solver
        solver.kappa = self.LAND_KAPPA if landing else Radau.KAPPA
        try:
            solver.step(limit)
        finally:
            solver.kappa = Radau.KAPPA

    def _level_offset(self, z, level):
        """``(log loss - log level, d log loss / dtau)`` at state ``z``."""
        ctx, sys_ = self.ctx, self.system
        return ctx.log(sys_.loss(z)) - ctx.log(level), -sys_.rate(z)

    def _land(self, solver, level):
        """The last accepted log-time step passed the loss level ``level`` (more than the band below it): undo
        it and end a step on the level, by Newton's method on the step's end ``tau`` (aiming ``band`` below the
        level), started from the root of ``log loss`` on the undone step's collocation polynomials (itself found
        by Newton's method from the cubic Hermite interpolant of ``log loss`` over the step). Each iterate is
        an exact Radau step (clipped to end there), so the landing point is as accurate as any other step end:
        a level is recorded with ``loss`` in ``[level (1 - LAND_TIGHT tol), level]``. Should Newton's method
        stall there (the step map is smooth in its length only down to the stage solver's tolerance), a landing
        in ``[level (1 - LAND_SLACK tol), level]`` is accepted after a few iterations (counted in the stats as
        ``loose_landings``). The record holds the loss actually reached. The main loop records the level."""
        band, loose = self.band, self.loose_band
        xb = solver.x
        gb, db = self._level_offset(solver.y, level)
        xa, za = solver.last_start()
        ga, da = self._level_offset(za + [xa], level)
        x = _hermite_root(xa, ga + band, da, xb, gb + band, db)
        x = self._dense_root(solver, level, x, xa, xb)
        solver.rewind()
        for it in range(16):
            while solver.x < x:
                self._check_budget()
                self._step(x, landing=True)
            g, d = self._level_offset(solver.y, level)
            if -2 * band <= g <= 0:
                return
            if it >= 4 and -2 * loose <= g <= 0:
                self.stats["loose_landings"] += 1
                return
            if g > 0:                      # short of the level: go on from here
                x = solver.x - (g + band) / d
            else:                          # past it: redo the last step, shorter
                xe = solver.x
                solver.rewind()
                x = xe - (g + band) / d
                if not solver.x < x:
                    break
        raise StepFailure("could not land a step on a loss level")

    def _dense_root(self, solver, level, x, xa, xb):
        """Newton's method for the aim ``log level - band`` on the last step's dense output, from ``x``."""
        band = self.band
        for _ in range(8):
            g, d = self._level_offset(solver.dense(x) + [x], level)
            xn = min(max(x - (g + band) / d, xa), xb)
            if xn == x:
                break
            x = xn
        return x

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
            if sys_.square:   # issue 11: a det that decays through that band can cross it inside one step
                ratio = abs(sys_.det(z)) / self.ctx.sqrt(sum(v * v for v in sys_.entries(z))) ** sys_.model.shape[0]
                sign, prev = (1 if sys_.det(z) > 0 else -1), getattr(self, "_raw_det", None)
                self._raw_det = (sign, ratio)
                # a sign change from a det in the lower half of the resolved decades is that crossing (a det
                # crossing 0 at a finite rate, as unbalanced factors can, starts far above: it is kept)
                if prev is not None and sign != prev[0] and prev[1] < self.ctx.mpf(10) ** ((10 - self.digits) / 2):
                    raise _Stop(Status.PRECISION_LOST,
                                f"det W changed sign within one step ending at t ~ "
                                f"{self.ctx.nstr(self.ctx.expm1(z[-1]), 5)} from |det W| / ||W||^n = "
                                f"{self.ctx.nstr(prev[1], 3)}: it passed through the band below 1e{10 - self.digits}, "
                                f"which {self.work_dps} digits cannot resolve")
            if self.use_chart:
                cs = self._chart_from_raw(sys_, z)
                if cs is not None:
                    self.system, zc = cs
                    self._new_solver(zc)
                    return
        else:
            zc = sys_.recentre(z)
            if zc is not None:
                self.stats["recharts"] += 1
                solver.set_state(solver.x, zc)
        solver.atol = sys_.atol(solver.y, self.tol)[:-1]


def _hermite_root(xa, fa, da, xb, fb, db):
    """A root in ``[xa, xb]`` of the cubic Hermite interpolant of values ``fa > 0 > fb`` and slopes ``da, db``
    (bisection on the cubic: robust, and accurate to the interpolant's own error)."""
    h = xb - xa

    def p(x):
        t = (x - xa) / h
        return ((2 * t ** 3 - 3 * t ** 2 + 1) * fa + (t ** 3 - 2 * t ** 2 + t) * h * da
                + (-2 * t ** 3 + 3 * t ** 2) * fb + (t ** 3 - t ** 2) * h * db)

    lo, hi = xa, xb
    for _ in range(80):
        mid = (lo + hi) / 2
        if p(mid) > 0:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


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

    - ``digits`` (default 40; 20..300): decimal digits of the high-precision record ``Point.hp`` and the base working
      precision; the chart path works at ``digits + guard`` digits, the raw path at ``digits + 10``.
    - ``tol`` (default ``10^-(digits - 10)``, i.e. 1e-30): local error tolerance of each step in the scaled max
      norm (relative, with absolute floors: see ``_ChartSystem.atol``).
    - ``guard`` (default None: ``10 + decades(until_loss) / 2``): extra working digits on the chart path.
    - ``max_steps`` (default 20000): accepted steps per run before ``Status.BUDGET``.
    - ``path``: "auto" (chart when it applies), "chart" (required, else InvalidInput) or "raw".
    - ``estimate`` (default True): run the reference integration for ``loss_err`` / ``product_err``;
      ``extra_digits`` (default 20) and ``tighter`` (default 100) set its precision and tolerance. Without it
      (or where the reference ended early) every point's ``loss_err`` / ``product_err`` is ``inf``: an error
      nobody estimated is unknown, never zero.
    - ``stages`` (default None: chosen from the tolerance by :func:`models.engines.radau_mp.auto_stages`, 10 at
      tol 1e-26 .. 1e-27, 19 at 1e-50, 34 at 1e-90; the reference run chooses for its own tolerance): Radau IIA
      stages ``s`` (order ``2 s - 1``), 2 .. 40.
    """

    name = "gf-mp"

    def __init__(self, digits: int = 40, tol: float | None = None, max_steps: int = 20_000, path: str = "auto",
                 guard: int | None = None, estimate: bool = True, extra_digits: int = 20, tighter: float = 100.0,
                 stages: int | None = None):
        digits = _int_option("digits", digits, 20, 300)  # the default tol 10^-(digits-10) must be a float64 > 0
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
        kmax = None if stages is None else _int_option("stages", stages, 2, 40)
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
        ok = (isinstance(model, DeepMatrix) and model.shape == (2, 2) and model.full_width and model.depth >= 2
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
        if spec.model.depth == 1 and self.path != "raw":  # the linear model: closed form (issue 12)
            from .linear_flow_mp import run_linear_mp
            return run_linear_mp(spec, self.digits, estimate=self.estimate, extra_digits=self.extra_digits)
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
        if ref is None:  # no reference run, or it ended before this record: the error is unknown, so infinite
            perr, lerr = math.inf, math.inf
        else:
            # The reference, moved along the flow to the main record's time (first order, with its own slope),
            # against the main record; the change of slope between the two points bounds the remainder.
            dtau = rec["tau"] - ctx.mpf(ref["tau"])
            dw = max(abs(a - ctx.mpf(b) - ctx.mpf(db) * dtau) + abs(da - ctx.mpf(db)) * abs(dtau)
                     for a, b, da, db in zip(w, ref["w"], rec["dw"], ref["dw"]))
            dl = (abs(loss - ctx.mpf(ref["loss"]) - ctx.mpf(ref["dloss"]) * dtau)
                  + abs(rec["dloss"] - ctx.mpf(ref["dloss"])) * abs(dtau))
            perr = float(2 * dw + floor_w)
            lerr = float(2 * dl + floor_l)
        hp = {"digits": D, "loss": ctx.nstr(loss, D),
              "product": [[ctx.nstr(w[i * dp + j], D) for j in range(dp)] for i in range(d)],
              "t": ctx.nstr(rec["t"], D)}
        # the engine's dW/dt at the record (its velocity pushed through the entries map), for the gradient-flow
        # check of the claims, and the product at the full working precision:
        # the field is stiff late in the flow, so the check needs the state, not its D-digit rounding
        tangent = rec["dw_dt"]
        hp["tangent"] = [[ctx.nstr(tangent[i * dp + j], D) for j in range(dp)] for i in range(d)]
        hp["work_digits"] = int(ctx.dps)
        hp["product_work"] = [[ctx.nstr(w[i * dp + j], int(ctx.dps)) for j in range(dp)] for i in range(d)]
        W = np.array([float(v) for v in w]).reshape(d, dp)
        return Point(float(rec["t"]), None, float(loss), W, rec["det_sign"], rec["factors"], lerr, perr, hp,
                     np.array([float(v) for v in tangent]).reshape(d, dp))


def _float_product(factors):
    W = np.asarray(factors[0], dtype=float)
    for F in factors[1:]:
        W = np.asarray(F, dtype=float) @ W
    return W


# ---------------------------------------------------------------------------------------------------------------
# Benchmark (for ``verify bench``).
# ---------------------------------------------------------------------------------------------------------------
def bench_gf_mp(depths: Sequence[int] = (2, 3, 4, 6), until_loss: float = 1e-30, *, digits: int = 40,
                scale: float = 0.1, seed: int = 0, wall_budget: float = 300.0, per_decade: int = 4) -> list[dict]:
    """One gf-mp run per depth on RC20 ``[[*, 1], [1, 0]]`` from a balanced start (``scale``, det > 0), down to
    ``until_loss``. Rows: ``workload, depth, seconds`` (main + reference run), ``loss`` (final), ``status``,
    ``w11_rel_err`` (the error estimate ``product_err / |w11|`` at the end: 1e-20 means 20 correct digits),
    ``w11_digits`` (correct decimal digits of w11 by that estimate), ``w11_times_s`` (``|w11| sqrt(2 loss)`` as a
    20-digit string: it tends to 1, and at loss 1e-30 differs from it by less than 1e-14), ``steps`` (main run),
    ``w11`` (decimal string), ``main_seconds`` (the main run alone), ``stages`` (Radau stages of the main run),
    ``per_decade`` (loss levels recorded per decade: each is landed on by a step end, so it costs steps)."""
    from .. import inits
    from ..problems import rc20

    rows = []
    for L in depths:
        model = DeepMatrix(int(L), (2, 2))
        init = inits.balanced(model, scale, seed=seed, det="positive")
        tr = GradientFlowMP(digits=digits).run(rc20(), model, init, until_loss=until_loss, wall_budget=wall_budget,
                                               per_decade=per_decade)
        fin = tr.final
        ctx = make_context(digits + 10)
        w11 = ctx.mpf(fin.hp["product"][0][0]) if fin.hp else ctx.mpf(float(fin.product[0, 0]))
        loss = ctx.mpf(fin.hp["loss"]) if fin.hp else ctx.mpf(fin.loss)
        rel = float(fin.product_err / abs(w11)) if w11 else math.inf
        rows.append({
            "workload": f"gf-mp {digits} digits rc20 balanced s={scale:g} to loss {until_loss:g}",
            "depth": int(L), "seconds": round(tr.seconds, 3), "loss": float(loss), "status": tr.status.value,
            "main_seconds": tr.stats.get("main", {}).get("seconds"),
            "stages": tr.stats.get("main", {}).get("stages"), "per_decade": int(per_decade),
            "w11_rel_err": rel,
            "w11_digits": int(math.floor(-math.log10(rel))) if 0 < rel < 1 else 0,
            "w11_times_s": ctx.nstr(abs(w11) * ctx.sqrt(2 * loss), 20),
            "steps": tr.stats.get("main", {}).get("steps"),
            "w11": ctx.nstr(w11, 25),
        })
    return rows
