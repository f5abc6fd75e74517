"""The two systems that :mod:`models.engines.gf_mp` integrates: the balanced 2x2 flow in the scaled chart
(:class:`ChartSystem`) and gradient flow on the flattened factors (:class:`RawSystem`), with the chart helpers
they share."""

from __future__ import annotations

from typing import Sequence

import flint
import numpy as np

from ... import chart
from ...errors import InvalidInput
from ...factorizations import DeepMatrix
from .arith import FLINT_KIT, arb_prec, fd_jacobian, from_arb, mat_det, matmul, to_arb, transpose


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
                     for (idx, wts), y in zip(problem.sparse_rows, problem.targets)]
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

    def hessian(self):
        """``d grad / d w`` (constant: ``grad_scale * sum_i a_i a_i^T`` over the measurements ``a_i``), as a
        row-major list of ``size^2`` numbers."""
        n = self.size
        H = [0] * (n * n)
        for idx, wts, _ in self.rows:
            for k, a in zip(idx, wts):
                for m, b in zip(idx, wts):
                    H[k * n + m] = H[k * n + m] + (1 if self.unit else self.gscale * a * b)
        return H


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


class ChartSystem(_System):
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


def _entries_or_eye(M, size):
    """Row-major entries of an ``arb_mat``, or of the ``size x size`` identity for None."""
    if M is None:
        return [1 if i == j else 0 for i in range(size) for j in range(size)]
    return M.entries()


class RawSystem(_System):
    """Gradient flow on the flattened factors ``[W_1, ..., W_L]`` (row-major), plus ``tau``."""

    kind = "raw"

    def __init__(self, problem, model: DeepMatrix, ctx, digits: int, per_factor_tol=None):
        self.problem, self.model, self.ctx = problem, model, ctx
        self.res = _Residuals(problem, ctx)
        with arb_prec(ctx.prec):           # the same constants for the FLINT evaluation of terms()
            self.fast_res = _Residuals(problem, FLINT_KIT)
        self.shapes = model.layer_shapes
        self.sizes = [a * b for a, b in self.shapes]
        self.offsets = [0]                 # where each factor starts in the flattened z
        for m in self.sizes:
            self.offsets.append(self.offsets[-1] + m)
        self.nvar = sum(self.sizes)
        self.square = model.shape[0] == model.shape[1]
        self.square_factors = self.square and all(a == b for a, b in self.shapes)
        self.floor = ctx.mpf(10) ** (10 - int(digits))
        # the relative rounding error a resolved quantity may carry: the det stop's own level, 10^-dps / floor
        # (a det of 10^(10 - digits) ||A||^n carries 10^-dps ||A||^n), 10^-20 at the raw path's digits + 10
        self.rel_floor = ctx.mpf(10) ** (-ctx.dps) / self.floor
        # per_factor_tol (the run's tolerance; path="raw"): watch every factor det against
        # max(10^(10 - digits), sqrt(tol)) instead of det W against 10^(10 - digits) (see precision_problem)
        self.per_factor = per_factor_tol is not None and self.square_factors
        self.factor_floor = max(self.floor, ctx.sqrt(ctx.mpf(per_factor_tol))) if self.per_factor else self.floor

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
            W = matmul(F, W)
        return W

    def _arb_factors(self, z):
        """The factors of ``z`` as FLINT ``arb_mat`` (exact conversions) and their prefix products ``prefix[j] =
        W_j .. W_1`` (``prefix[0]`` None); FLINT's precision is the caller's (:func:`arb_prec`)."""
        fs, k = [], 0
        for (a, b), n in zip(self.shapes, self.sizes):
            fs.append(flint.arb_mat(a, b, [to_arb(v) for v in z[k:k + n]]))
            k += n
        prefix = [None, fs[0]]
        for F in fs[1:]:
            prefix.append(F * prefix[-1])
        return fs, prefix

    def terms(self, z):
        """``(dz/dt, loss, -dloss/dt)``: minus each factor's gradient ``(W_L .. W_{j+1})^T G (W_{j-1} .. W_1)^T``.

        Evaluated with FLINT ``arb_mat`` products at the context's precision (the same formulas as
        :meth:`terms_mp`; 1.6x faster than mpmath lists at depth 2, 2.6x at depth 5) and returned as
        mpf midpoints."""
        ctx = self.ctx
        with arb_prec(ctx.prec):
            fs, prefix = self._arb_factors(z)
            L = len(fs)
            W = prefix[L]
            g, rr = self.fast_res.grad(W.entries())
            d, dp = self.model.shape
            left = flint.arb_mat(d, dp, g)  # (W_L ... W_{j+1})^T G, built from the top layer down
            grads = [None] * L
            for j in range(L, 0, -1):
                grads[j - 1] = left if j == 1 else left * prefix[j - 1].transpose()
                if j > 1:
                    left = fs[j - 1].transpose() * left
            f, diss = [], flint.arb(0)
            for Gj in grads:
                for v in Gj.entries():
                    f.append(-v)
                    diss += v * v
            return ([from_arb(v, ctx) for v in f], from_arb(self.fast_res.lscale * rr, ctx), from_arb(diss, ctx))

    #: the Radau solver passes each stage's collocation slope to :meth:`zjac` (see there)
    slope_jacobian = True
    #: a slope-implied gradient is used only when resolved to this fraction of its largest entry (implied_gradient)
    FIT_RESOLVE = 1e-6

    def zjac(self, x, z, f0, slope=None):
        """``d(dz/dtau)/dz = e^tau J`` with ``J`` = :meth:`jacobian` (analytic; ``f0`` is not needed).

        ``slope`` (optional): ``dz/dtau`` at ``z`` as the Radau stage equations' current iterate implies it (the
        collocation polynomial's derivative at the stage, ``(A^-1 Z)_i / h``). The Jacobian's residual term is
        then formed with the loss gradient ``G`` that slope implies (:meth:`jacobian`, ``slope``) instead of
        ``G`` at ``z``. Why: late in the flow two directions (the observed entries ``w12``, ``w21`` as functions
        of the factors) are stiff beyond ``h lambda ~ 1e29`` (depth 6, loss 1e-16), so a Newton iterate a
        relative 1e-10 off the slow manifold has residuals ``r12, r21`` off by far more than their size on it
        (1e-15), and the residual term ``r * d^2 W`` of the Hessian, formed with them, is wrong by orders of
        magnitude in the non-stiff directions: the Newton matrix points the iteration away from the solution.
        The slope-implied ``G`` is the on-manifold one to the iterate's error divided by the stiff gain. Newton's
        fixed point does not depend on it (the stage residual is still formed from the field at the iterate; the
        Jacobian only steers), and at the solution it is ``G`` itself, so the convergence stays quadratic. Measured
        on a failing step (depth 6, 50 digits, tol 1e-18, t ~ 1e16): full Newton from the predictor took 22
        iterations with ``G`` at the iterate, 3 with the slope-implied ``G``; the solver (3 Jacobian refreshes)
        gave up on the first."""
        with arb_prec(self.ctx.prec):
            sl = None
            if slope is not None:
                et = to_arb(self.ctx.exp(-x))
                sl = [to_arb(v) * et for v in slope]
            return (self.jacobian(z, slope=sl) * to_arb(self.ctx.exp(x))).mid()

    def jacobian(self, z, slope=None):
        """``J = d(dz/dt)/dz``: minus the loss Hessian in the flattened factors, as a FLINT ``arb_mat`` at the
        working precision (call under :func:`arb_prec`), in closed form from the partial products.

        With ``P_j = W_L .. W_{j+1}``, ``Q_j = W_{j-1} .. W_1`` (identities at the ends), ``G`` the loss gradient
        in ``W`` and ``H`` its (constant) derivative, factor ``j``'s gradient is ``P_j^T G Q_j^T`` and its
        derivative along ``E`` in factor ``k`` is
        ``P_j^T H[P_k E Q_k] Q_j^T`` (every ``j, k``; with ``B_k = P_k kron Q_k^T``, the map of row-major
        ``vec E`` to ``vec(P_k E Q_k)``, this part of the Hessian is ``B^T H B``), plus, for ``k > j``, ``M^T E^T
        C`` with ``M = W_{k-1} .. W_{j+1}`` and ``C = P_k^T G Q_j^T`` (entry ``[(p, q), (r, c)] = M[c, p] C[r,
        q]``), and its transpose for ``k < j`` (the Hessian is symmetric). One evaluation costs ``O(L^2)`` small
        products where forward differences cost ``n = sum |W_j|`` evaluations of the field (issue 12)."""
        fs, prefix = self._arb_factors(z)
        L, n = len(fs), self.nvar
        d, dp = self.model.shape
        if getattr(self, "_hess", None) is None:
            self._hess = flint.arb_mat(d * dp, d * dp, self.fast_res.hessian())
        offs = self.offsets
        P, Q, Bm = self._partials(fs, prefix)
        # the field is dz/dt = -B^T vec(G): G at z, or (slope given) the least-squares G of -B^T vec(G) = slope
        G = None if slope is None else self.implied_gradient(Bm, slope, d, dp)
        if G is None:
            G = flint.arb_mat(d, dp, self.fast_res.grad(prefix[L].entries())[0])
        T = Bm.transpose() * (self._hess * Bm)
        T2 = [0] * (n * n)
        PG = [None] + [(G if P[k] is None else P[k].transpose() * G) for k in range(1, L + 1)]
        for j in range(1, L):
            aj, bj = self.shapes[j - 1]
            QjT = None if Q[j] is None else Q[j].transpose()
            M = None                                   # W_{k-1} .. W_{j+1}, identity (a_j x a_j) for k = j + 1
            for k in range(j + 1, L + 1):
                ak, bk = self.shapes[k - 1]
                C = (PG[k] if QjT is None else PG[k] * QjT).entries()          # a_k x b_j
                Me = _entries_or_eye(M, aj)                                    # b_k x a_j
                oj, ok = offs[j - 1], offs[k - 1]
                for p in range(aj):
                    for q in range(bj):
                        row = (oj + p * bj + q) * n + ok
                        for r in range(ak):
                            crq = C[r * bj + q]
                            for c in range(bk):
                                m = Me[c * aj + p]
                                if m:
                                    v = m * crq
                                    T2[row + r * bk + c] = v
                                    T2[(ok + r * bk + c) * n + oj + p * bj + q] = v
                M = fs[k - 1] if M is None else fs[k - 1] * M
        return -(T + flint.arb_mat(n, n, T2))

    def _partials(self, fs, prefix):
        """``(P, Q, B)`` of the factors ``fs`` (arb_mat, prefix products ``prefix`` from :meth:`_arb_factors`):
        ``P[j] = W_L .. W_{j+1}``, ``Q[j] = W_{j-1} .. W_1`` (1-based ``j``; None for an identity) and ``B`` (``d d'
        x n`` arb_mat), the Jacobian of ``vec W`` in the flattened factors: ``B_k[(u, v), (r, c)] = P_k[u, r]
        Q_k[c, v]``, the map of row-major ``vec E`` in factor ``k`` to ``vec(P_k E Q_k)``."""
        L, n = len(fs), self.nvar
        d, dp = self.model.shape
        offs = self.offsets
        P = [None] * (L + 1)
        for j in range(L - 1, 0, -1):
            P[j] = fs[j] if P[j + 1] is None else P[j + 1] * fs[j]
        Q = [None] + [prefix[j - 1] for j in range(1, L + 1)]
        B = [0] * (d * dp * n)
        for k in range(1, L + 1):
            a, b = self.shapes[k - 1]
            Pe = _entries_or_eye(P[k], d)
            Qe = _entries_or_eye(Q[k], dp)
            o = offs[k - 1]
            for u in range(d):
                for r in range(a):
                    pur = Pe[u * a + r]
                    if not pur:
                        continue
                    for v in range(dp):
                        row = (u * dp + v) * n + o + r * b
                        for c in range(b):
                            q = Qe[c * dp + v]
                            if q:
                                B[row + c] = pur * q
        Bm = flint.arb_mat(d * dp, n, B)
        return P, Q, Bm

    def product_jacobian(self, z):
        """``B`` (``d d' x n`` ``arb_mat`` at the working precision): the Jacobian of ``vec W`` in the flattened
        factors ``z`` (:meth:`_partials`)."""
        with arb_prec(self.ctx.prec):
            return self._partials(*self._arb_factors(z))[2]

    @staticmethod
    def implied_gradient(Bm, slope, d, dp):
        """The loss gradient ``G`` (``d x dp`` arb_mat) whose field ``-B^T vec(G)`` is nearest ``slope`` (``dz/dt``,
        arb) in least squares: the normal equations ``B B^T g = -B slope`` (``d dp x d dp``) at the working
        precision. None (then the caller uses ``G`` at the state) unless the slope determines ``g``: the same
        equations solved in ball arithmetic, from ``B`` and ``slope`` with their rounding radii, must bound every
        entry of ``g`` within ``FIT_RESOLVE`` (1e-6) of ``max|g|`` (the balls were measured to overestimate the
        error by 50-100x). Where ``B^T`` nearly annihilates a direction of ``g`` (e.g. every factor near-singular
        at once, depth 2 from a balanced start) the rounded slope says nothing about ``g`` there and the unchecked
        fit was O(1) wrong (tests/engines/test_raw_newton.py); the late flow's ill-conditioning (``cond(B B^T)``
        ~1e36 .. 5e55 at 61 digits, depth 6) is row scaling, which the balls resolve to ~1e-23."""
        n = Bm.ncols()
        N, rhs = Bm * Bm.transpose(), -(Bm * flint.arb_mat(n, 1, slope))
        try:
            gb = N.solve(rhs)
            g = N.solve(rhs, algorithm="approx")
        except (ZeroDivisionError, ValueError, ArithmeticError):    # singular, or not resolved at this precision
            return None
        big = max(abs(gb[i, 0].mid()) for i in range(d * dp))
        if not all(gb[i, 0].rad() <= RawSystem.FIT_RESOLVE * big for i in range(d * dp)):
            return None
        return flint.arb_mat(d, dp, [g[i, 0] for i in range(d * dp)])

    #: slow_projection corrects the directions whose gain ``h e^tau kappa`` is at least this
    PROJECT_GAIN = 1e8
    #: and makes this many Newton corrections per call (each quadratic in the distance to the manifold)
    PROJECT_ITERATIONS = 2

    def slow_projection(self, x, y, slope, h):
        """``y`` (a Radau stage ``[factors]``, no ``tau``) moved along its stiff directions onto the slow manifold
        that the stage's collocation slope ``slope`` (``dz/dtau``) implies; None where the slope does not determine
        the loss gradient (:meth:`implied_gradient`) or no direction is stiff at step length ``h``.

        Why (issue 11, depth 8 past loss 1e-29): the field is ``dz/dt = -B^T g(W)`` with ``B`` the Jacobian of
        ``vec W`` in the factors and ``g`` the loss gradient; ``e^tau B^T H B`` (``H`` the loss Hessian in ``W``)
        has directions with gain ``h lambda`` up to 1e57 there. A Newton iterate whose error ``e`` has a component
        ``e_s`` along them is corrected in the other directions with an error ~ ``h lambda |e_s| |e| / |z|``
        (the stiff directions turn with the state: ``B`` is multilinear in the factors), so simplified and full
        Newton alike diverge unless ``|e_s| / |z|`` is below ``1 / (h lambda)``, which no predictor gives: the
        solver's steps shrank to 0.02 at loss 5e-30 with most tries failing. At the solution each stage's field
        equals its collocation slope, so ``g(W(y))`` equals the gradient ``g*`` the slope implies (least squares,
        :meth:`implied_gradient`). This method solves ``g(W(y + B^T R xi)) = g*`` for ``xi`` (``H = R R^T``)
        restricted to the eigendirections of ``K = R^T B B^T R`` whose gain ``h e^tau kappa`` is at least
        ``PROJECT_GAIN``, by ``PROJECT_ITERATIONS`` Newton corrections (multilinear: quadratic convergence in
        relative terms, whatever the gain). The slope's own dependence on the move (``g*`` is fitted with ``B`` at
        the iterate) enters ``g*`` divided by the gain and times ``h |slope| / |z|``, the stage's relative change over
        the step, so ``|e_s|`` after the move is ~ ``|e|^2 / |z| + |e| (h |slope| / |z|) / (h lambda)``: where a step
        changes the state by O(1) relatively, the cross term above becomes ``~|e|^2 / |z|``. (Measured on a weighted
        2x3 problem at a late, slow state, slope 1e-13: 6e-21 left of a relative offset 1e-10, 3e-34 of 1e-20; from
        a generic state, slope O(1) and ``h`` 1e30, 116 times the offset: the move is for the late flow.) The
        solution of the stage equations is a fixed point of the move, which only steers Newton's iterates."""
        ctx = self.ctx
        d, dp = self.model.shape
        m = d * dp
        with arb_prec(ctx.prec):
            Ra, Rpa = self._hessian_root_arb()
            k = Ra.ncols()
            if not k:       # no measurement: nothing is stiff
                return None
            et = ctx.exp(x)
            fs, prefix = self._arb_factors(y)
            Bm = self._partials(fs, prefix)[2]
            target = self.implied_gradient(Bm, [to_arb(v / et) for v in slope], d, dp)
            if target is None:
                return None
            y = list(y)
            for it in range(self.PROJECT_ITERATIONS):
                if it:
                    fs, prefix = self._arb_factors(y)
                    Bm = self._partials(fs, prefix)[2]
                g = flint.arb_mat(m, 1, self.fast_res.grad(prefix[-1].entries())[0])
                dg = flint.arb_mat(m, 1, target.entries()) - g
                # K = R^T (B B^T) R, R^+ dg and R xi as FLINT products: as k^2 m^2 / 2 mpmath products a call took
                # 0.27 s at m = d d' = 16, 1.4 s at 25, 5.2 s at 36 (dense H; ~300 s at 100 by its m^4 growth),
                # 0.10, 0.34 and 0.91 s so (loaded 2-core machine, CPU time); the rest is mpmath's eigsy of K
                # (k x k, k = rank H: 20 s a call at m = k = 100, 10x10 sensing; 0.8 s at k = 30)
                K = (Ra.transpose() * ((Bm * Bm.transpose()) * Ra)).entries()
                kap, U = ctx.eigsy(ctx.matrix([[from_arb(K[a * k + b], ctx) for b in range(k)] for a in range(k)]))
                rhs = [from_arb(v, ctx) for v in (Rpa * dg).entries()]
                xi, stiff = [ctx.zero] * k, False
                for i in range(k):
                    if h * et * kap[i] >= self.PROJECT_GAIN:
                        stiff = True
                        c = ctx.fsum(U[a, i] * rhs[a] for a in range(k)) / kap[i]
                        xi = [v + U[a, i] * c for a, v in enumerate(xi)]
                if not stiff:
                    return None
                dy = Bm.transpose() * (Ra * flint.arb_mat(k, 1, [to_arb(v) for v in xi]))
                y = [a + from_arb(dy[c, 0], ctx) for c, a in enumerate(y)]
            return y

    def hessian_root(self):
        """``(R, R^+)`` with ``R R^T = H`` (the loss Hessian in ``vec W``, over its range; ``R`` as rows of ``d d'``
        lists, ``R^+`` as rows of ``rank H``), at the working precision, computed once."""
        if getattr(self, "_hroot", None) is None:
            ctx = self.ctx
            m = self.model.shape[0] * self.model.shape[1]
            hh = self.res.hessian()
            E, V = ctx.eigsy(ctx.matrix([[ctx.mpf(hh[i * m + j]) for j in range(m)] for i in range(m)]))
            keep = [i for i in range(m) if E[i] > max(E) * ctx.mpf(10) ** (-ctx.dps // 2)]
            self._hroot = ([[V[r, i] * ctx.sqrt(E[i]) for i in keep] for r in range(m)],
                           [[V[r, i] / ctx.sqrt(E[i]) for r in range(m)] for i in keep])
        return self._hroot

    def _hessian_root_arb(self):
        """:meth:`hessian_root` as FLINT ``arb_mat`` (``R``: ``d d' x rank H``, ``R^+``: ``rank H x d d'``; exact
        conversions of the mpmath values), computed once."""
        if getattr(self, "_hroot_arb", None) is None:
            Rm, Rp = self.hessian_root()
            m, k = len(Rm), len(Rp)
            self._hroot_arb = (flint.arb_mat(m, k, [to_arb(v) for row in Rm for v in row]) if k else
                               flint.arb_mat(m, 0), flint.arb_mat(k, m, [to_arb(v) for row in Rp for v in row]))
        return self._hroot_arb

    def terms_mp(self, z):
        """:meth:`terms` in mpmath lists (the reference the FLINT version is tested against)."""
        fs = self.unflatten(z)
        L = len(fs)
        prefix = [None] * (L + 1)      # prefix[j] = W_j ... W_1
        prefix[1] = fs[0]
        for j in range(2, L + 1):
            prefix[j] = matmul(fs[j - 1], prefix[j - 1])
        W = prefix[L]
        g, rr = self.res.grad([v for row in W for v in row])
        d, dp = self.model.shape
        G = [g[i * dp:(i + 1) * dp] for i in range(d)]
        left = G                       # (W_L ... W_{j+1})^T G, built from the top layer down
        grads = [None] * L
        for j in range(L, 0, -1):
            grads[j - 1] = left if j == 1 else matmul(left, transpose(prefix[j - 1]))
            if j > 1:
                left = matmul(transpose(fs[j - 1]), left)
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
                W = matmul(vs[k] if k == j else fs[k], W)
            out = W if out is None else [[x + y for x, y in zip(r1, r2)] for r1, r2 in zip(out, W)]
        return [v for row in out for v in row]

    def det(self, z):
        """``det W``: the product of the factor dets when they are square (no cancellation), else from ``W``."""
        fs = self.unflatten(z)
        if self.square_factors:
            out = self.ctx.one
            for F in fs:
                out = out * mat_det(F, self.ctx)
            return out
        return mat_det(self._product(fs), self.ctx)

    def factor_dets(self, z):
        """``[det W_j]`` of square factors (2x2 in closed form, else by LU), or None when a factor is not square."""
        if not all(a == b for a, b in self.shapes):
            return None
        return [mat_det(F, self.ctx) for F in self.unflatten(z)]

    def factor_det_floors(self, z):
        """A bound on each factor det's rounding error at the working precision: ``4 n prod_i ||row_i|| 10^-dps``
        (Hadamard's bound on the terms an elimination of ``n x n`` cancels)."""
        ctx, out = self.ctx, []
        for F in self.unflatten(z):
            p = ctx.one
            for row in F:
                p = p * ctx.sqrt(ctx.fsum(v * v for v in row))
            out.append(4 * len(F) * p * ctx.mpf(10) ** (-ctx.dps))
        return out

    def factor_dets_dtau(self, z):
        """``d det W_j / dtau`` by a forward difference along the flow at half the precision (for the first-order
        move of the error estimate, like :meth:`dW_dtau`)."""
        ctx = self.ctx
        Fz = self.zfun(z[-1], z[:-1]) + [ctx.one]
        scale = max(max(abs(v) for v in Fz[:-1]), ctx.mpf(10) ** -30)
        d = ctx.ldexp(1, -(ctx.prec // 2)) / scale
        a, b = self.factor_dets(z), self.factor_dets([u + d * v for u, v in zip(z, Fz)])
        return [(y - x) / d for x, y in zip(a, b)]

    def observe(self, z):
        w = self.entries(z)
        sign = None
        if self.square:
            det = self.det(z)
            sign = 0 if not det else (1 if det > 0 else -1)
        factors = tuple(np.array([[float(v) for v in row] for row in F]) for F in self.unflatten(z))
        return w, self.res.loss(w), sign, factors

    def precision_ok(self, z) -> bool:
        """Whether :meth:`precision_problem` finds nothing at ``z``."""
        return self.precision_problem(z) is None

    def det_ratios(self, z) -> list:
        """The relative dets the precision stop watches, each ``|det A| / ||A||_F^n`` (``n x n``): every factor's
        with ``per_factor`` (square factors), else the end-to-end matrix's alone (square ``W``; ``[]`` else)."""
        ctx = self.ctx
        if self.per_factor:
            mats = self.unflatten(z)
            dets = self.factor_dets(z)
        elif self.square:
            W = self._product(self.unflatten(z))
            mats, dets = [W], [self.det(z)]
        else:
            return []
        out = []
        for A, d in zip(mats, dets):
            nrm = ctx.sqrt(ctx.fsum(v * v for row in A for v in row))
            out.append(abs(d) / nrm ** len(A) if nrm else ctx.zero)
        return out

    def det_signs(self, z) -> list:
        """The signs of the dets :meth:`det_ratios` watches (same order)."""
        dets = self.factor_dets(z) if self.per_factor else ([self.det(z)] if self.square else [])
        return [1 if d > 0 else (-1 if d < 0 else 0) for d in dets]

    def det_watch(self, z) -> tuple[list, list]:
        """``(signs, ratios)`` of the watched dets at ``z`` (:meth:`det_signs`, :meth:`det_ratios`), for
        :meth:`sign_jump` at the next step."""
        return self.det_signs(z), self.det_ratios(z)

    def sign_jump(self, prev, now) -> str | None:
        """Why a step from the watched dets ``prev`` to ``now`` (each a :meth:`det_watch`) is not resolved, or None:
        a watched det changed sign from below ``sqrt(factor_floor)`` (the lower half of the decades it resolves),
        so it passed through the band below ``factor_floor`` inside the step. A det crossing 0 at a finite rate,
        as unbalanced factors' can, starts far above that and is kept."""
        ctx = self.ctx
        band = ctx.sqrt(self.factor_floor)
        for j, (s_new, s_old, q_old) in enumerate(zip(now[0], prev[0], prev[1])):
            if s_new != s_old and q_old < band:
                what, norm = ((f"det W_{j + 1}", f"||W_{j + 1}||^n") if self.per_factor else ("det W", "||W||^n"))
                return (f"{what} changed sign within one step from |{what}| / {norm} = {ctx.nstr(q_old, 3)}: it "
                        f"passed through the band below {ctx.nstr(self.factor_floor, 2)}")
        return None

    def loss_rounding(self, z):
        """A bound on the rounding error of the loss at ``z`` at the working precision ``u = 10^-dps``: the
        end-to-end entries are a product of ``L`` factors, formed with error at most ``perr = 2 (L - 1) k u
        prod_j ||W_j||_F`` (``k`` the largest inner dimension; each product adds ``k u |A| |B|``, and ``||W_L ..
        W_1|| <= prod ||W_j||``), which enters the loss through the residuals:
        :func:`models.engines.base.rounding_loss_error` (``loss_scale sum_i (2 |r_i| a_i perr + (a_i perr)^2)
        + 2 m u loss``, ``a_i`` the l1 norm of measurement ``i``). Late in RC20's flow ``||W||`` grows like the
        inverse residual (1e15 at loss 1e-30), so this is ~``u ||W|| |r|``: the loss keeps ``dps - log10(||W|| /
        |r|)`` digits, whatever the factor dets do."""
        from ..base import rounding_loss_error

        ctx = self.ctx
        fs = self.unflatten(z)
        u = ctx.mpf(10) ** (-ctx.dps)
        prod_norm = ctx.one
        for F in fs:
            prod_norm = prod_norm * ctx.sqrt(ctx.fsum(v * v for row in F for v in row))
        inner = max([a for a, _ in self.shapes] + [1])
        perr = 2 * max(len(fs) - 1, 1) * inner * u * prod_norm
        w = self.entries(z)
        r, a = [], []
        for idx, wts, y in self.res.rows:
            r.append(float(ctx.fsum(c * w[k] for k, c in zip(idx, wts)) - y))
            a.append(float(ctx.fsum(abs(c) for c in wts)))
        return ctx.mpf(float(rounding_loss_error(float(self.res.lscale), np.array(r), np.array(a), float(perr),
                                                 float(u), float(self.res.loss(w)))))

    def precision_problem(self, z) -> str | None:
        """Why the working precision no longer resolves the run at ``z``, or None. Two conditions, each a relative
        rounding error above ``rel_floor`` (``10^-20`` at the raw path's ``digits + 10`` working digits):

        - a watched det (:meth:`det_ratios`) below its floor: ``|det W| / ||W||_F^n < 10^(10 - digits)`` (a det
          formed from entries of size ``||W||`` carries rounding ~``10^-dps ||W||^n``), or, with ``per_factor``
          (``path="raw"``, square factors), some ``|det W_j| / ||W_j||_F^n < max(10^(10 - digits), sqrt(tol))``.
          Why every factor and not ``det W``: the engine never forms ``det W`` from ``W``'s entries (it is the
          product of the factor dets, :meth:`det`, whose relative errors add), and the state is the factors, so
          the precision must carry each factor's small singular value against its large one, ``(det W /
          ||W||^2)^(1/L)`` from a balanced start, not ``det W / ||W||^2`` itself (at loss 1e-30: 1e-29 at depth
          3, 1.2e-5 at depth 8, against 1e-87 and 5e-40); each factor det's rounding is ~``10^-dps ||W_j||^2``.
          Why ``sqrt(tol)``: rounding is not the only error that can flip a factor det. The flow conserves the
          imbalances ``C_j = W_{j+1}^T W_{j+1} - W_j W_j^T`` (0 from a balanced start), the Radau steps do not:
          each local error (~``tol ||W||``) moves ``C_j`` by ~``tol ||W_j||^2``, and an imbalance ``C`` lets
          ``det W_j^2`` and ``det W_{j+1}^2`` drift apart by ~``||W_j||^2 ||C||`` (see
          :func:`properties.rc20_det_raw.imbalance_scale`), so a factor det below ~``sqrt(tol) ||W_j||^2`` is
          decided by the discretization, and the reference run (tolerance only 100x tighter, the same mechanism)
          need not expose it. Measured with a float64-rotated init (imbalance ~1e-16, the same mechanism at a
          fixed size): depth 2, scale 0.1, seed 0, 30 digits, tol 1e-6: factor 1's det crossed 0 at ``|det| ~
          7e-7`` near loss 1e-2 and came back at +0.42 while factor 2's stayed at -0.42, and the reference run
          (tol 1e-8) did the same, so the flip looked resolved (error 2e-4). At depth 2 (``(det W_j /
          ||W_j||^2)^2 ~ det W / ||W||^2``) and the default tol ``10^(10 - digits)`` this is the end-to-end stop.
        - the loss: :meth:`loss_rounding` above ``rel_floor * loss`` (the residual is formed from a product of
          factors whose rounding grows with ``||W||``; a level whose loss the precision does not resolve is not
          recorded as reached)."""
        ctx = self.ctx
        for j, q in enumerate(self.det_ratios(z)):
            if q < self.factor_floor:
                what = f"|det W_{j + 1}| / ||W_{j + 1}||^n" if self.per_factor else "|det W| / ||W||^n"
                return f"{what} = {ctx.nstr(q, 3)} fell below {ctx.nstr(self.factor_floor, 2)}"
        loss = self.res.loss(self.entries(z))
        lr = self.loss_rounding(z)
        if not lr <= self.rel_floor * loss:
            return (f"the loss {ctx.nstr(loss, 3)} is not resolved: its rounding bound {ctx.nstr(lr, 3)} exceeds "
                    f"{ctx.nstr(self.rel_floor, 3)} of it")
        return None

    def valid(self, z):
        big = self.ctx.mpf(10) ** 100
        return all(abs(v) < big for v in z[:-1])

    def recentre(self, z):
        return None

    def atol(self, z, rtol):
        scale = max(abs(v) for v in z[:-1])
        a = rtol * self.ctx.mpf("1e-6") * scale
        return [a] * (len(z) - 1) + [rtol]
