"""Depth 1 under ``gf-mp``: the linear model's gradient flow in closed form, in mpmath (see
:mod:`models.engines.linear_flow` for the float64 version and the derivation).

    w(t) = w0 - Q diag((1 - e^{-lambda t}) / lambda) Q^T g0,    H = c A^T A = Q diag(lambda) Q^T,   g0 = H w0 - b.

Completion needs no eigendecomposition: each observed entry relaxes as ``y + (w0 - y) e^{-c t}`` (``c = 1`` for
"half_sum", ``2/m`` for "mean"), the others stay put, and the loss is ``loss0 e^{-2 c t}``, so the time of a loss
level is ``log(loss0 / level) / (2 c)`` exactly. Sensing uses mpmath's symmetric eigensolver on ``H`` and finds
level times by bisection on ``log t`` (the loss is non-increasing).

Everything is evaluated in a private context at ``digits + 10`` working digits. Error estimate (``estimate``):
the same formulas at ``digits + 10 + extra_digits`` digits at the same times; ``product_err`` is twice the largest
difference plus ``10^-digits`` times the largest entry, ``loss_err`` likewise. Without it, only that rounding
floor is reported.
"""

from __future__ import annotations

import math

import numpy as np

from ..trajectory import Point, Status
from .base import Result, Spec

T_HORIZON = 1e100


def make_context(dps: int):
    import mpmath

    ctx = mpmath.MPContext()
    ctx.dps = int(dps)
    return ctx


class _Flow:
    """The closed form at one precision."""

    def __init__(self, spec: Spec, dps: int):
        ctx = self.ctx = make_context(dps)
        p = spec.problem
        self.problem = p
        self.shape = p.shape
        self.n = p.shape[0] * p.shape[1]
        self.c = ctx.mpf(1) if p.reduction == "half_sum" else ctx.mpf(2) / p.m
        self.ls = ctx.mpf(1) / 2 if p.reduction == "half_sum" else ctx.mpf(1) / p.m
        self.w0 = [ctx.mpf(float(v)) for v in np.asarray(spec.init.factors[0], dtype=float).reshape(-1)]
        self.y = [ctx.mpf(float(v)) for v in p.targets]
        if p.observed is not None:      # completion: indices only (no dense operator)
            dp = p.shape[1]
            self.flat = [i * dp + j for i, j in p.observed]
            r0 = [self.w0[k] - yk for k, yk in zip(self.flat, self.y)]
            self.loss0 = self.ls * ctx.fsum(r * r for r in r0)
            self.Q = None
            return
        self.flat = None
        self.rows = [[ctx.mpf(float(a)) for a in row] for row in p.operator]
        A = ctx.matrix(self.rows)
        H = self.c * (A.T * A)
        lam, Q = ctx.eigsy(H)
        lmax = max(abs(v) for v in lam)
        self.lam = [v if v > lmax * ctx.mpf(10) ** (8 - dps) else ctx.mpf(0) for v in lam]
        self.Q = Q
        r0 = self._residuals(self.w0)
        g0 = [self.c * ctx.fsum(self.rows[i][k] * r0[i] for i in range(len(r0))) for k in range(self.n)]
        self.coef = [ctx.fsum(Q[k, j] * g0[k] for k in range(self.n)) for j in range(self.n)]

    def _residuals(self, w):
        ctx = self.ctx
        return [ctx.fsum(a * wk for a, wk in zip(row, w) if a) - y for row, y in zip(self.rows, self.y)]

    def w(self, t):
        ctx = self.ctx
        if self.flat is not None:
            e = ctx.exp(-self.c * t) if t != ctx.inf else ctx.mpf(0)
            out = list(self.w0)
            for k, yk in zip(self.flat, self.y):
                out[k] = yk + (self.w0[k] - yk) * e
            return out
        phi = []
        for lam in self.lam:
            if lam == 0:
                phi.append(ctx.mpf(0) if t == ctx.inf else t)  # (the kernel carries nothing of g0)
            elif t == ctx.inf:
                phi.append(1 / lam)
            else:
                phi.append(-ctx.expm1(-lam * t) / lam)
        return [self.w0[k] - ctx.fsum(self.Q[k, j] * phi[j] * self.coef[j] for j in range(self.n))
                for k in range(self.n)]

    def loss(self, t):
        ctx = self.ctx
        if self.flat is not None:
            return self.loss0 * (ctx.exp(-2 * self.c * t) if t != ctx.inf else 0)
        r = self._residuals(self.w(t))
        return self.ls * ctx.fsum(x * x for x in r)

    def time_of_loss(self, level):
        """The time at which the loss equals ``level`` (above its infimum), or inf."""
        ctx = self.ctx
        level = ctx.mpf(level)
        if self.flat is not None:
            return ctx.log(self.loss0 / level) / (2 * self.c)
        hi = ctx.mpf(1)
        while self.loss(hi) > level:
            hi *= 16
            if hi > T_HORIZON:
                return ctx.inf
        lo = hi / 16 if hi > 1 else ctx.mpf(10) ** -30
        if self.loss(lo) <= level:
            return lo
        # bisection on log t down to the working precision (the loss is monotone; ~3.3 steps per digit)
        a, b = ctx.log(lo), ctx.log(hi)
        tol = ctx.mpf(10) ** (5 - ctx.dps) * max(abs(a), abs(b), 1)
        while b - a > tol:
            mid = (a + b) / 2
            if self.loss(ctx.exp(mid)) > level:
                a = mid
            else:
                b = mid
        return ctx.exp(b)


def run_linear_mp(spec: Spec, digits: int, *, estimate: bool = True, extra_digits: int = 20) -> Result:
    """The depth-1 trajectory of ``spec`` at ``digits`` digits (see the module docstring)."""
    main = _Flow(spec, digits + 10)
    ctx = main.ctx
    ref = _Flow(spec, digits + 10 + extra_digits) if estimate else None
    loss0 = main.loss(0)
    loss_inf = main.loss(ctx.inf)
    stop = spec.until_loss
    t_end = ctx.mpf(spec.t_max) if spec.t_max is not None else ctx.inf
    if spec.record_at:
        t_end = min(t_end, ctx.mpf(max(float(t) for t in spec.record_at)))
    stop_t = ctx.inf
    if stop is not None:
        if loss0 <= stop:
            stop_t = ctx.mpf(0)
        elif loss_inf < stop:
            stop_t = main.time_of_loss(stop)
    t_final = min(t_end, stop_t)
    status, message = Status.COMPLETED, ""
    if t_final == ctx.inf:
        t_final = ctx.mpf(T_HORIZON)
        status = Status.BUDGET
        message = (f"the loss converges to {float(loss_inf):.3g} (the least-squares minimum), above until_loss: "
                   f"stopped at t = {T_HORIZON:.0e}")
    k = spec.per_decade
    times = {ctx.mpf(0), t_final}
    j = math.floor(math.log10(max(float(loss0), 1e-300)) * k)
    floor = max(float(stop or 0.0), float(loss_inf), 1e-300)
    while True:
        lv = 10.0 ** (j / k)
        if lv <= floor or j < -400 * k:
            break
        if lv < float(loss0):
            t = main.time_of_loss(lv)
            if t < t_final:
                times.add(t)
        j -= 1
    for t in spec.record_at or ():
        if 0 < float(t) <= t_final:
            times.add(ctx.mpf(float(t)))
    d, dp = spec.problem.shape
    D = digits
    points = []
    for t in sorted(times):
        w = main.w(t)
        loss = main.loss(t)
        scale = max(max(abs(v) for v in w), max(abs(v) for v in main.y))
        if ref is not None:
            tr = ref.ctx.mpf(t)
            wr, lr = ref.w(tr), ref.loss(tr)
            perr = float(2 * max(abs(a - b) for a, b in zip(w, wr)) + scale * ctx.mpf(10) ** (-D))
            lerr = float(2 * abs(loss - lr) + loss * ctx.mpf(10) ** (-D))
        else:
            perr, lerr = float(scale * ctx.mpf(10) ** (-D)), float(loss * ctx.mpf(10) ** (-D))
        det = None
        if d == dp:
            M = ctx.matrix([[w[i * dp + jj] for jj in range(dp)] for i in range(d)])
            dt = ctx.det(M)
            if abs(dt) > ctx.mpf(10) ** (10 - D) * ctx.mnorm(M, "f") ** d:
                det = 1 if dt > 0 else -1
        hp = {"digits": D, "loss": ctx.nstr(loss, D), "t": ctx.nstr(t, D),
              "product": [[ctx.nstr(w[i * dp + jj], D) for jj in range(dp)] for i in range(d)]}
        W = np.array([float(v) for v in w]).reshape(d, dp)
        points.append(Point(float(t), None, float(loss), W, det, (W.copy(),), lerr, perr, hp))
    stats = {"path": "linear", "loss_min": float(loss_inf)}
    return Result(points, status, message, f"mpmath-{digits}", {"closed_form": True}, stats)


__all__ = ["run_linear_mp"]
