"""The Radau IIA solver of :mod:`models.engines.gf_mp` (:class:`Radau`), and the kernels whose cost decides how the run
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
- :class:`StageMatrix`: the Newton matrix ``N = I - h (A kron I_n) diag(J_1, .., J_s)`` is assembled block by
  block in FLINT (``A_ij (-h J_j)``), and no longer solved once more only to detect a singular matrix.
- :func:`interp_many` / :func:`apply_weights`: the predictor (the last step's collocation polynomial at the new
  stage points) as one FLINT matrix product.
- :func:`stage_residual`: ``h (A F)_i - Z_i`` for all stages as one FLINT matrix product.
"""

from __future__ import annotations

import math

import flint
from mpmath.libmp import from_man_exp

from .arith import arb_combine, arb_prec, to_arb_mat

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
    """The Newton matrix ``N = I - h (A kron I_n) diag(J_1, .., J_s)`` of an ``s``-stage collocation step.

    Newton's method needs ``N`` only as an approximation: the residual is formed at the working precision, and a
    correction solved with relative error ``r`` slows the iteration by a contraction factor ``r`` at most. So
    ``N`` is first assembled in float64 and LU-factorized once (LAPACK); when its estimated condition number
    times float64's epsilon is below ``FLOAT_RATE`` (1e-6), every solve is a float64 substitution on the scaled
    residual (issue 12: at depth 4 on the raw factors the ``160 x 160`` elimination at the working precision
    took ~55 ms per Newton iteration, the float64 one takes well under 1 ms, and the iteration loses at most a
    factor 1e-6 per step of its contraction). Otherwise (stiff charts late in the flow, where ``h lambda`` reaches
    1e60) ``N`` is a FLINT ``arb_mat`` assembled block by block (:func:`_assemble`) at the working precision, and a
    correction is solved in one of two ways (``kind``):

    - ``"low"`` (mixed precision): floating-point Gaussian elimination (python-flint's ``solve(algorithm=
      "approx")``) of ``N`` rounded to ``LOW_PREC`` = 128 bits, refined once: ``d1 = N^-1 b`` at 128 bits, the
      residual ``b - N d1`` at the working precision, ``d2`` its solve at 128 bits, ``d = d1 + d2``. The ratio
      ``rate = |d2| / |d1|`` (in the scaled max norm of ``scale``, the Newton iteration's) estimates the
      relative error of ``d1``; ``d`` is accepted when ``rate`` is at most ``LOW_RATE`` (1e-6, float64's gate),
      else the matrix falls back to ``"arb"`` for good. When the first ``rate`` is at most ``LOW_TRUST`` (1e-9),
      the later solves with the same matrix skip the refinement (one 128-bit solve; the Newton iteration's own
      contraction test still sees any shortfall). At 128 bits FLINT's elimination of ``136 x 136`` takes ~7 ms
      against ~40 ms at 465 bits (100 digits). Measured on the matrices of the 100-digit run to loss 1e-60
      (RC20, depth 2; every 7th working-precision matrix): ``rate`` stayed below 1e-9 while the equilibrated
      condition number grew to ~1e38 (~2^128; the first two thirds of them), then jumped to 0.2 .. 7 (one 7e-5).
    - ``"arb"``: the same elimination at the working precision, every solve.

    A low-tier failure costs its two 128-bit solves: ``hint`` (a dict the solver keeps, optional) remembers it and
    the next ``SKIP_LOW`` matrices go to ``"arb"`` directly. ``scope(prec)`` must be
    :func:`models.engines.gf_mp.arith.arb_prec` (FLINT's precision is one global setting: it is set around each
    call). ``kind`` says which: "float64", "low" or "arb".

    ``solve`` raises ``ZeroDivisionError`` when ``N`` is singular at working precision (a Newton iteration
    makes ~2 solves per matrix: a separate inverse or singularity check would cost more than it saves).
    """

    FLOAT_RATE = 1e-6
    LOW_PREC = 128      # 0: no mixed-precision tier (nor below 2 LOW_PREC working bits, where it saves little)
    LOW_RATE = 1e-6
    LOW_TRUST = 1e-9
    SKIP_LOW = 16

    def __init__(self, h, A, Js, ctx, scope, scale=None, hint=None):
        self.ctx, self.prec, self.scope = ctx, ctx.prec, scope
        s, n = len(A), Js[0].nrows()
        self.size = size = s * n
        self.kind = "arb"
        if self._float64(h, A, Js, s, n):
            return
        with scope(self.prec):
            self.N = _assemble(h, A, Js, n, ctx.prec)
        self.hint = hint if hint is not None else {}
        self.scale = None if scale is None else [ctx.mpf(v) for v in scale] * s
        self.trusted, self._Nlow, self.rate = False, None, None
        if self.LOW_PREC and self.prec >= 2 * self.LOW_PREC:
            if self.hint.get("skip_low", 0) > 0:
                self.hint["skip_low"] -= 1
            else:
                self.kind = "low"

    def _float64(self, h, A, Js, s, n) -> bool:
        """Assemble and factorize ``N`` in float64; whether it is conditioned well enough to serve."""
        import numpy as np
        from scipy.linalg import lapack

        try:
            J = np.array([[float(v) for v in Jj.mid().entries()] for Jj in Js], dtype=float).reshape(s, n, n)
            hA = float(h) * np.array([[float(a) for a in row] for row in A], dtype=float)
        except (OverflowError, ValueError):
            return False
        if not (np.all(np.isfinite(J)) and np.all(np.isfinite(hA))):
            return False
        with np.errstate(all="ignore"):
            N = -(hA[:, None, :, None] * J[None, :, :, :].transpose(0, 2, 1, 3)).reshape(s * n, s * n)
            N[np.diag_indices(s * n)] += 1.0
            if not np.all(np.isfinite(N)):
                return False
            anorm = float(np.max(np.sum(np.abs(N), axis=0)))
            lu, piv = _lu64(N)
            if lu is None:
                return False
            rcond, info = lapack.dgecon(lu, anorm, norm="1")
        if info != 0 or not rcond > 0 or np.finfo(float).eps / rcond > self.FLOAT_RATE:
            return False
        self.kind, self.lu, self.piv = "float64", lu, piv
        return True

    def solve(self, b) -> list:
        """``N^-1 b`` for a list ``b`` of mpf."""
        if self.kind == "float64":
            return self._solve64(b)
        if self.kind == "low":
            x = self._solve_low(b)
            if x is not None:
                return x
            self.kind = "arb"
            self.hint["skip_low"] = self.SKIP_LOW
        with self.scope(self.prec):
            try:
                x = self.N.solve(flint.arb_mat(self.size, 1, [_to_arb(v) for v in b]), algorithm="approx")
            except ZeroDivisionError:
                raise
            except (ValueError, ArithmeticError) as exc:
                raise ZeroDivisionError(str(exc)) from exc
            return [_from_arb(x[i, 0], self.ctx) for i in range(self.size)]

    def _norm(self, x):
        """The max norm of the arb column ``x`` in the units of ``scale`` (plain max norm without one)."""
        sc = self.scale
        if sc is None:
            return max(abs(x[i, 0].mid()) for i in range(self.size))
        return max(abs(x[i, 0].mid()) / _to_arb(sc[i]) for i in range(self.size))

    def _solve_low(self, b):
        """The mixed-precision solve (see the class); None when its refinement says it does not serve."""
        low = self.LOW_PREC
        with self.scope(self.prec):
            bv = flint.arb_mat(self.size, 1, [_to_arb(v) for v in b])
            try:
                with self.scope(low):
                    if self._Nlow is None:
                        self._Nlow = +self.N
                    d = self._Nlow.solve(+bv, algorithm="approx").mid()
                if not self.trusted:
                    res = bv - self.N * d
                    with self.scope(low):
                        d2 = self._Nlow.solve(+res, algorithm="approx").mid()
                    big = self._norm(d)
                    if big == 0:
                        return [self.ctx.zero] * self.size
                    rate = self._norm(d2) / big
                    self.rate = rate
                    if not rate <= self.LOW_RATE:
                        return None
                    self.trusted = rate <= self.LOW_TRUST
                    d = d + d2
            except (ValueError, ArithmeticError):      # singular at 128 bits (ZeroDivisionError included)
                return None
            return [_from_arb(d[i, 0], self.ctx) for i in range(self.size)]

    def _solve64(self, b) -> list:
        import numpy as np
        from scipy.linalg import lapack

        ctx = self.ctx
        big = max(abs(v) for v in b)
        if not big:
            return [ctx.zero] * self.size
        # scaled by a power of two (exact), so that residuals far below float64's range keep their digits
        e = int(ctx.floor(ctx.log(big, 2)))
        v = np.array([float(ctx.ldexp(x, -e)) for x in b], dtype=float)
        x, info = lapack.dgetrs(self.lu, self.piv, v)
        if info != 0 or not np.all(np.isfinite(x)):
            raise ZeroDivisionError("float64 substitution failed")
        return [ctx.ldexp(ctx.mpf(float(t)), e) for t in x]


def _lu64(N):
    """LU with partial pivoting of a float64 matrix in LAPACK's ``getrf`` layout (``(lu, piv)``, 0-based pivots),
    by rank-1 updates in numpy: ``getrf`` itself goes through a threaded BLAS that, on a loaded 2-core machine,
    took 140 ms for ``160 x 160`` where this takes ~5 ms. ``(None, None)`` when a pivot is 0."""
    import numpy as np

    a = np.array(N, dtype=float, order="F")
    n = a.shape[0]
    piv = np.zeros(n, dtype=np.int32)
    for k in range(n):
        p = k + int(np.argmax(np.abs(a[k:, k])))
        piv[k] = p
        if a[p, k] == 0:
            return None, None
        if p != k:
            a[[k, p], :] = a[[p, k], :]
        a[k + 1:, k] /= a[k, k]
        a[k + 1:, k + 1:] -= np.outer(a[k + 1:, k], a[k, k + 1:])
    return a, piv


_AROWS: dict = {}


def _assemble(h, A, Js, n, prec):
    """``N = I - h (A kron I_n) diag(J_1, .., J_s)`` as an arb_mat at FLINT's current precision, entry by entry:
    block ``(i, j)`` is ``A_ij (-h J_j)`` (``s^2 n^2`` products). It used to be the FLINT product ``(A kron I_n)
    D``, which costs far more once the entries span many decades (late in a stiff flow, ``h J`` reaches 1e120 next
    to entries of order 1: FLINT's block product then splits into many exponent blocks): 100 digits to loss 1e-60
    on RC20 depth 2, 588 such matrices took 46 ms each to build (CPU, ``136 x 136``), entry by entry ~8 ms. The
    same matrix to the last bit: rounding it differently moved rc20.cor.norms_diverge's quick-profile example from
    the 40-digit rung to the 30-digit one (tests/golden)."""
    key = (id(A), prec)
    hit = _AROWS.get(key)
    if hit is None or hit[0] is not A:
        if len(_AROWS) > 64:
            _AROWS.clear()
        hit = _AROWS[key] = (A, [[_to_arb(a) for a in row] for row in A])
    Aa = hit[1]
    hh = _to_arb(h)
    # rows of J_j, as lists of arb; each entry rounded as (A_ij J_j[a, b]) h, then subtracted from I, the order of
    # the former product ((A kron I) D) h, so that N is the same to the last bit
    Jr = []
    for Jj in Js:
        e = Jj.entries()
        Jr.append([e[a * n:(a + 1) * n] for a in range(n)])
    entries = []
    for i, Ai in enumerate(Aa):
        for a in range(n):
            row = [-((aij * v) * hh) for aij, Jj in zip(Ai, Jr) for v in Jj[a]]
            row[i * n + a] = 1 - (Ai[i] * Jr[i][a][a]) * hh
            entries += row
    size = len(Aa) * n
    return flint.arb_mat(size, size, entries)


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


# ---------------------------------------------------------------------------------------------------------------
# The stiff solver: Radau IIA.
# ---------------------------------------------------------------------------------------------------------------
SOLVER_COUNTERS = ("steps", "rejected", "newton_failed", "predictor_reset", "nfev", "njev", "nlu", "newton",
                   "side_steps", "plain_newton", "projections")


def _max_entry(M) -> float:
    """``max |M_ij|`` of an arb_mat (midpoints), a float (inf beyond its range)."""
    big = max(abs(e.mid()) for e in M.entries())
    try:
        return float(big)
    except OverflowError:
        return math.inf


class StepFailure(Exception):
    """The step size collapsed, or the Newton iteration failed at every step size tried."""


_TABLEAUS: dict = {}
_AINV: dict = {}


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
    :meth:`step` makes one accepted step of at most ``x_limit - x``; :meth:`side` gives the state at any point
    inside it as accurately as a step end.
    """

    FAC_MIN, FAC_MAX, SAFETY = 0.2, 4.0, 0.8
    TINY = 1e-3      # steps shorter than TINY * the planned step skip the error estimate (see try_step)
    REFRESHES = 3    # stage-Jacobian recomputations allowed per Newton solve when it contracts slowly
    FULL_NEWTON = 0.01  # with slope_jac: fresh stage Jacobians after a correction nd (tolerance units) with
    STIFF = 1e20        # h max|J| nd rtol above FULL_NEWTON, where h max|J| >= STIFF (see _full_newton)
    PROJECT = 1e20   # with a projection (see __init__): used where h max|J| (the last stiffness met) is at least this
    KAPPA = 0.01     # Newton stops when its estimated remaining error is below kappa (in tolerance units);
    #                  the driver lowers ``kappa`` for the steps that land on a loss level (see Integration)

    def __init__(self, fun, jac, y0, x0, *, ctx, rtol, atol, stages=10, h0=None, valid=None, stats=None,
                 maxit=20, slope_jac=False, project=None):
        self.ctx, self.fun, self.jac = ctx, fun, jac
        # project(x, y, slope, h) -> y or None: a stage moved onto the slow manifold its collocation slope implies
        # (RawSystem.slow_projection), applied to Newton's iterates where the flow is stiff (_project_stages)
        self.project = project
        # jac accepts slope=: the stage's collocation slope, for a Jacobian formed on the slow manifold (stage_slopes)
        self.slope_jac = bool(slope_jac)
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
        self._linear = {}       # StageMatrix's memory of where its mixed-precision tier failed
        self._stiff = 0.0       # max|J| of the current stage solve's first Jacobians (slope_jac; _full_newton)

    # ----- state ----------------------------------------------------------------------------------------------
    def set_state(self, x, y) -> None:
        """Restart from a new point (after a re-chart); keeps ``h``."""
        ctx = self.ctx
        self.x = ctx.mpf(x)
        self.z = [ctx.mpf(v) for v in y[:-1]]
        self._J = self._f0 = self._end_slope = None
        self._poly = self._dense = self._jnodes = self._side_last = None

    def resume(self, poly, end_slope) -> None:
        """Go on from the current state as from the end of an accepted step: ``poly`` that step's last collocation
        polynomial ``(x_start, h, base, Z)`` (the next step's predictor) and ``end_slope`` its slope at the end
        (the start Jacobian's, see :meth:`_prepare`); for a solver state captured from a run (tests/engines/data)."""
        self._poly, self._end_slope = poly, end_slope
        self._J = self._f0 = None
        self._prepare()

    @property
    def y(self) -> list:
        return self.z + [self.x]

    def _prepare(self):
        if self._J is None:
            self._f0 = self.fun(self.x, self.z)
            # on the slow manifold: the slope of the accepted step's collocation polynomial at its end (this
            # point), not the field at the point, whose stiff part carries the stage solve's error times h lambda
            slope = self._end_slope
            kw = {} if slope is None else {"slope": slope}
            self._J = to_arb_mat(self.jac(self.x, self.z, self._f0, **kw), self.ctx.prec)
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

    def solve_stages(self, x0, z0, h, Zpred, Js, sc, fac=None):
        """Newton iteration for the stages of a step of length ``h`` from ``(x0, z0)``, from the predicted
        increments ``Zpred``, in the scaled max norm of ``sc`` (stage Jacobians ``Js`` or None: computed at the
        predicted stages, and again at the iterate when the contraction is slow; with ``slope_jac`` each from the
        slope the iterate implies, :meth:`stage_slopes`, and recomputed after every large correction where the flow is
        stiff, :meth:`_full_newton`; ``fac``: a Newton matrix to start with, e.g. one of a step of nearly the same
        length). Returns ``(Z, F-values, Js)`` or None when the iteration does not converge; the Newton matrix last
        used is left in ``self._fac``."""
        ctx, s, A, c = self.ctx, self.s, self.A, self.c
        n = len(z0)
        Z = [list(v) for v in Zpred]
        xs = [x0 + ci * h for ci in c]
        refreshes = self.REFRESHES
        prev = full = None
        for it in range(self.maxit):
            if self.project is not None and float(h) * self._stiff >= self.PROJECT:
                Z = self._project_stages(x0, z0, h, Z)
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
                slopes = self.stage_slopes(Z, h) if self.slope_jac else None
                if slopes is None:
                    Js = [to_arb_mat(self.jac(xi, Yi, Fi), ctx.prec) for xi, Yi, Fi in zip(xs, Ys, Fs)]
                else:
                    Js = [to_arb_mat(self.jac(xi, Yi, Fi, slope=sl), ctx.prec)
                          for xi, Yi, Fi, sl in zip(xs, Ys, Fs, slopes)]
                self.stats["njev"] += s
                fac = None
            if fac is None:
                try:
                    fac = StageMatrix(h, A, Js, ctx, arb_prec, scale=sc, hint=self._linear)
                except ZeroDivisionError:
                    return None
                self.stats["nlu"] += 1
            self._fac = fac
            if self.slope_jac and it == 0:       # the stiffness this call meets (see _full_newton)
                self._stiff = _max_entry(Js[-1])
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
            if self.slope_jac and nd > 1 and self._full_newton(h, nd):
                # the stiff directions of the stage Jacobians turn by ~ the relative correction (nd rtol) between
                # iterates, which a simplified step multiplies by h lambda_max: full Newton (fresh Jacobians at the
                # iterate, each from its slope) while that product is not small; a shorter step when it diverges
                if full is not None and nd > 1e3 * full:        # diverging: a shorter step
                    return None
                Js, prev, full = None, None, nd
                continue
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

    def _project_stages(self, x0, z0, h, Z):
        """Each stage of the iterate ``Z`` moved by ``project`` onto the slow manifold its collocation slope
        implies (``stats["projections"]`` counts the stages moved). Where the flow is stiff beyond ``h lambda``
        ~1e20, a Newton iterate is corrected in the non-stiff directions with an error ~``h lambda |e_s|`` times
        its distance to the solution (``e_s`` its component along the stiff directions, which turn with the
        state), so Newton diverges from any predictor not already within ``1 / (h lambda)`` of the manifold; after
        the move ``e_s`` is ~ that distance squared over ``|z|``, plus that distance over the gain times the relative
        change of the stage over the step (see :meth:`.systems.RawSystem.slow_projection`). Measured
        (depth 8, 50 digits, tol 1e-12, from loss 5.8e-29, h lambda ~1e57): without it, 4 steps took 11 tries (7
        Newton failures) to advance tau by 2.8; with it a step of 2.77 converged in 2 Newton iterations and the
        next (5.5) reached loss 3.7e-32. The solution is a fixed point of the move, and the converged ``Z`` is
        Newton's (its correction below tolerance), so the move steers the iteration without changing what it
        solves."""
        slopes = self.stage_slopes(Z, h)
        if slopes is None:
            return Z
        out = []
        for ci, Zi, sl in zip(self.c, Z, slopes):
            y = self.project(x0 + ci * h, [a + b for a, b in zip(z0, Zi)], sl, h)
            if y is None:
                out.append(Zi)
            else:
                out.append([a - b for a, b in zip(y, z0)])
                self.stats["projections"] += 1
        return out

    def solve_stages_any(self, *args):
        """:meth:`solve_stages`, and where it fails with ``slope_jac`` the same solve with the stage Jacobians at
        the iterate (``slope_jac`` off: the solver before the slope-implied gradient) before the step is given
        up. Both iterate on the same stage residual, so either converged answer solves the same equations to the
        same tolerance; neither is preferred for its result, only for converging: the slope-implied gradient
        solves the stiff late steps of depths 6 and 7 that the plain Jacobians cannot, and (measured, depth 3 at
        70 digits near loss 1e-27, all factors near-singular) the plain Jacobians solve steps it cannot.
        ``stats["plain_newton"]`` counts the solves the second try rescued."""
        r = self.solve_stages(*args)
        if r is None and self.slope_jac:
            r = self._with_plain_jacobians(self.solve_stages, *args)
        return r

    def _with_plain_jacobians(self, solve, *args):
        """``solve(*args)`` with ``slope_jac`` off (stage Jacobians at the iterate), back on afterwards; a result
        (not None, not raised) counts as a rescue in ``stats["plain_newton"]``."""
        self.slope_jac = False
        try:
            r = solve(*args)
        finally:
            self.slope_jac = True
        if r is not None:
            self.stats["plain_newton"] += 1
        return r

    def _full_newton(self, h, nd) -> bool:
        """Whether the next correction needs fresh stage Jacobians: ``h max|J|`` (``J`` the last stage's first
        Jacobian of this solve, ~``h lambda_max``; not at a later iterate, which a diverging iteration inflates)
        at least ``STIFF`` and times the relative correction ``nd rtol`` above ``FULL_NEWTON``."""
        stiff = float(h) * self._stiff
        return stiff >= self.STIFF and stiff * float(nd) * float(self.rtol) > self.FULL_NEWTON

    def stage_slopes(self, Z, h):
        """The stage slopes ``dz/dx`` that the stage increments ``Z`` imply through the collocation equations
        (``Z = h A F``, so ``F = A^-1 Z / h``), for a Jacobian formed at the slow manifold (see
        :meth:`models.engines.gf_mp.systems.RawSystem.zjac`); None for the constant predictor (``Z = 0``: every
        stage is the accepted start, where the state's own field is the right one)."""
        if not any(v for Zi in Z for v in Zi):
            return None
        ctx = self.ctx
        key = (self.s, ctx.prec)
        Ai = _AINV.get(key)
        if Ai is None:
            with ctx.workprec(ctx.prec + 64):
                M = ctx.matrix(self.A) ** -1
                Ai = [[+M[i, j] for j in range(self.s)] for i in range(self.s)]
            _AINV[key] = Ai
        inv_h = 1 / h
        return [[v * inv_h for v in row] for row in apply_weights(Ai, Z, ctx, arb_prec)]

    def try_step(self, h):
        """Full step and two half steps of length ``h`` from the current state, not accepted (:meth:`step` accepts
        or retries): ``(err, z1, poly, polys, jnodes)`` (``err`` the local error estimate in tolerance units,
        ``z1`` the end state, ``polys`` the half steps' collocation polynomials ``(x_start, h / 2, base, Z)``,
        ``poly`` the last of them) or None where a stage solve did not converge."""
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
            # a short step clipped onto an event (an explicit time): its local error is at most ~(h / self.h)^(s+1)
            # (the stiff order) times that of a full step, far below tol, so it needs no error estimate; the start
            # Jacobian serves every stage
            r = self.solve_stages_any(x0, z0, h, Zp, [self._J] * s, sc)
            if r is None:
                return None
            Zf = r[0]
            poly = (x0, h, z0, Zf)
            # the previous step's polynomial stays the predictor: extrapolated from so short a step, this one's
            # would leave the chart's domain at the next full-length step
            return 0, [a + b for a, b in zip(z0, Zf[-1])], self._poly or poly, (poly,), (x0, h, [self._J] * (s + 1))
        r = self.solve_stages_any(x0, z0, h, Zp, None, sc)
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
            r = self.solve_stages_any(xa, za, h2, Zp, [arb_combine(w, Jnodes, ctx.prec) for w in W[half]], sc)
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
        return err, z1, polys[1], polys, (x0, h, Jnodes)

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
            res = self.try_step(h)
            if res is None:
                self.stats["newton_failed"] += 1
                self.stats["rejected"] += 1
                self.h = h / 2
                continue
            err, z1, poly, dense, jnodes = res
            fac = self.SAFETY * (1 / err) ** (ctx.one / (self.p + 1)) if err > 0 else ctx.mpf(self.FAC_MAX)
            fac = min(max(fac, ctx.mpf(self.FAC_MIN)), ctx.mpf(self.FAC_MAX))
            if err > 1:
                self.stats["rejected"] += 1
                self.h = h * min(fac, ctx.mpf("0.7"))
                continue
            self.stats["steps"] += 1
            self._prev = (self.x, self.z, self._J, self._f0, self.h, self._poly)
            self.x = x_limit if clipped else self.x + h
            self.z, self._poly, self._dense, self._jnodes = z1, poly, dense, jnodes
            if self.slope_jac:          # the last dense polynomial ends at z1 (None: a step at rest, Z = 0)
                slopes = self.stage_slopes(dense[-1][3], dense[-1][1])
                self._end_slope = None if slopes is None else slopes[-1]
            self._J = self._f0 = None
            if not clipped:
                self.h = h * fac
            elif fac < 1:        # a step clipped to land on an event says nothing about larger steps unless it
                self.h = min(self.h, h * fac)   # had to shrink: keep the planned length otherwise
            return h

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

    def side(self, x, kappa=None) -> list:
        """The state ``z`` at ``x`` inside the last accepted step (:meth:`_side_once`); where that fails with
        ``slope_jac`` (its stage equations did not converge, in pieces either), the same with the stage
        Jacobians at the iterate (counted in ``stats["plain_newton"]``). The whole point is redone that way,
        never a mix of the two inside it: a landing on a loss level (the driver's Newton iteration on ``x``) needs
        the point to be a smooth function of ``x``, and a point whose pieces switched Jacobians is not (measured:
        depth 8 at (50, 1e-12) could not land on loss 1e-25 with a per-solve retry)."""
        try:
            return self._side_once(x, kappa)
        except StepFailure:
            if not self.slope_jac:
                raise
        return self._with_plain_jacobians(self._side_once, x, kappa)

    def _side_once(self, x, kappa=None) -> list:
        """The state ``z`` at ``x`` inside the last accepted step, as accurate as a step end: a Radau step of
        length ``x - x_a`` from the start ``x_a`` of the half step holding ``x`` (no longer than that half step,
        so its local error is at most the half step's, which the step control kept within the tolerance), its
        stages predicted by the half step's collocation polynomial and its stage Jacobians interpolated from the
        step's (recomputed only if Newton contracts slowly). The trajectory itself goes on from the step's end:
        recording a point inside a step costs one stage solve (about 2 Newton iterations, no Jacobian), not the
        extra steps and rejections that ending a step there cost (issue 12). ``kappa``: the Newton tolerance in
        tolerance units (the driver passes its landing tolerance, so that the result is smooth in ``x``)."""
        ctx, s, c = self.ctx, self.s, self.c
        poly = self._dense[-1]
        for poly in self._dense:
            if x <= poly[0] + poly[1]:
                break
        xa, hh, za, Zh = poly
        hp = x - xa
        if hp <= 0:
            return list(za)
        if hp >= hh:
            hp = hh
        nodes = [0] + c
        last = self._side_last
        if last is not None and last[0] == xa and last[1] is self._jnodes:
            # a second try in the same half step (Newton on a level's tau): the previous try's collocation
            # polynomial, from the same start, predicts these stages better than the half step's
            Zp = interp_many(nodes, [ci * hp / last[2] for ci in c], last[3], ctx, arb_prec)
        else:
            Zp = interp_many(nodes, [ci * hp / hh for ci in c], Zh, ctx, arb_prec)
        old = self.kappa
        self.kappa = self.kappa if kappa is None else kappa
        try:
            # stage Jacobians at the predicted stages (as for a full step): Newton then converges quadratically,
            # so the result is a smooth, reproducible function of x far below the tolerance
            r = self.solve_stages(xa, za, hp, Zp, None, self._scales(za, za))
        finally:
            self.kappa = old
        if r is None:
            # late in a stiff flow a long step's stages can defeat Newton from the half step's polynomial: go in
            # pieces (each shorter than the half step, so no less accurate), from the half step's start
            out = self._side_pieces(poly, xa, za, xa + hp, kappa, 3)
            self._side_last = None
            return out
        self.stats["side_steps"] += 1
        self._side_last = (xa, self._jnodes, hp, r[0])
        return [a + b for a, b in zip(za, r[0][-1])]

    def _side_pieces(self, poly, xs, zs, xe, kappa, depth):
        """The state at ``xe`` from ``(xs, zs)`` by two Radau steps meeting halfway, each again in two when its
        stage equations do not converge (``depth`` times), stages predicted by the half step's collocation
        polynomial ``poly = (xa, hh, za, Zh)`` (values ``za + Zh_i`` at ``xa + c_i hh``)."""
        ctx, c = self.ctx, self.c
        xa, hh, za, Zh = poly
        nodes = [0] + c
        xm = xs + (xe - xs) / 2
        for a_, b_ in ((xs, xm), (xm, xe)):
            h = b_ - a_
            Zp = interp_many(nodes, [(a_ - xa + ci * h) / hh for ci in c], Zh, ctx, arb_prec)
            base = interp_many(nodes, [(a_ - xa) / hh], Zh, ctx, arb_prec)[0] if a_ != xa else [0 * v for v in za]
            Zp = [[u - w for u, w in zip(Zi, base)] for Zi in Zp]
            old = self.kappa
            self.kappa = self.kappa if kappa is None else kappa
            try:
                r = self.solve_stages(a_, zs, h, Zp, None, self._scales(zs, zs))
            finally:
                self.kappa = old
            if r is None:
                if depth <= 0:
                    raise StepFailure(f"the stage equations of a step inside the last one (to x = "
                                      f"{ctx.nstr(xe, 10)}) did not converge, in pieces either")
                zs = self._side_pieces(poly, a_, zs, b_, kappa, depth - 1)
            else:
                self.stats["side_steps"] += 1
                zs = [u + w for u, w in zip(zs, r[0][-1])]
        return zs
