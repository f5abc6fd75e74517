"""Gradient flow of the plain linear model (depth 1) in closed form: the ``gf`` engine's path at depth 1.

At depth 1 the end-to-end matrix is the parameter, and the loss ``l(w) = loss_scale * |A w - y|^2`` (``w`` the
row-major ``vec(W)``, ``A`` the ``m x d d'`` measurement operator) is quadratic, so gradient flow is linear:

    dw/dt = -(H w - b),   H = c A^T A,   b = c A^T y,   c = grad_scale (1 for "half_sum", 2/m for "mean").

The gradient ``g = H w - b`` obeys ``dg/dt = -H g``, so ``g(t) = e^{-Ht} g0`` and

    w(t) = w0 - V diag(phi(lambda_k, t)) V^T g0,   phi(lambda, t) = (1 - e^{-lambda t}) / lambda   (t when lambda = 0),

with ``H = V diag(lambda) V^T``. (``g0 = c A^T r0`` lies in the range of ``H``, so the kernel contributes
nothing.) For completion with "half_sum" every ``lambda`` is 1 on the observed entries and 0 elsewhere: an observed
entry relaxes as ``w(t) = y + (w0 - y) e^{-t}`` and an unobserved one stays at its initial value. With "mean" the
rate is ``2/m`` instead of 1. The eigenpairs come from the SVD of ``sqrt(c) A`` (``lambda = s^2``), which is more
accurate than an eigendecomposition of ``H`` for small ``lambda``.

Why a closed form: the 2x2 chart of :mod:`models.chart` is degenerate at depth 1 (BDF failed at once, issue 12),
and the raw-factor path would stop with ``precision_lost`` where the det changes sign, which at depth 1 it
really does (RC20's depth-1 solution has det -1 whatever the start): nothing is amplified by rounding here.

Recording is the engine's (see :mod:`models.engines.gf`): the start, the first time the loss reaches each level
``10^(-k/per_decade)`` (located by bisection-safeguarded root finding on ``log t`` to 4 ulps), explicit
``record_at`` times (exactly the times asked for), and the end (``until_loss``, ``t_max`` or the last
``record_at`` time). When the least-squares minimum is above ``until_loss`` (an inconsistent sensing problem),
the run ends with status ``budget`` at ``t = 1e100`` like the ODE path.

Error estimate: the same closed form evaluated from an independent factorization (``numpy.linalg.eigh`` of ``H``);
``product_err`` is ``SAFETY`` (10) times the largest difference, at least ``16 eps`` times the largest entry that
entered the formula (the rounding of the few operations per entry). ``loss_err`` propagates it through the
residuals: ``loss_scale * sum_i (2 |r_i| a_i e + (a_i e)^2)`` with ``a_i = sum_k |A_ik|``, plus ``64 eps loss``.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import brentq

from ..problems import MatrixProblem
from ..trajectory import Point, Status
from .base import Result, Spec

EPS = float(np.finfo(float).eps)
SAFETY = 10.0
T_HORIZON = 1e100
PRECISION_FLOOR = 1e3 * EPS


def _phi(lam: np.ndarray, t: float) -> np.ndarray:
    """``(1 - e^{-lam t}) / lam`` without cancellation (``t`` where ``lam t`` underflows)."""
    x = lam * t
    out = np.empty_like(lam)
    small = x < 1e-300
    out[small] = t
    big = ~small
    out[big] = -np.expm1(-x[big]) / lam[big]
    return out


class LinearFlow:
    """Closed-form gradient flow of a matrix problem at depth 1 (see the module docstring)."""

    def __init__(self, problem: MatrixProblem, W0: np.ndarray):
        self.problem = problem
        self.shape = problem.shape
        A = problem.operator
        c = problem.grad_scale
        self.w0 = np.asarray(W0, dtype=float).reshape(-1)
        r0 = A @ self.w0 - problem.targets
        self.g0 = c * (A.T @ r0)
        # primary: SVD of sqrt(c) A (lambda = s^2 exactly representable in the rate); secondary: eigh of H
        _, s, Vt = np.linalg.svd(math.sqrt(c) * A, full_matrices=False)
        self.lam, self.V = s * s, Vt.T
        self.coef = self.V.T @ self.g0
        lam2, V2 = np.linalg.eigh(c * (A.T @ A))
        lam2 = np.clip(lam2, 0.0, None)
        self.lam2, self.V2 = lam2, V2
        self.coef2 = V2.T @ self.g0
        self.row_abs = np.abs(A).sum(axis=1)
        # modes with lambda at rounding level carry (almost) nothing of g0; they are held as exact kernel modes
        tiny = self.lam <= 64 * EPS * max(float(self.lam.max(initial=0.0)), np.finfo(float).tiny)
        self.lam = np.where(tiny, 0.0, self.lam)
        tiny2 = self.lam2 <= 64 * EPS * max(float(self.lam2.max(initial=0.0)), np.finfo(float).tiny)
        self.lam2 = np.where(tiny2, 0.0, self.lam2)
        self.scale = max(float(np.max(np.abs(self.w0), initial=0.0)), float(np.max(np.abs(problem.targets))), 1e-300)

    def w(self, t: float, *, secondary: bool = False) -> np.ndarray:
        if secondary:
            return self.w0 - self.V2 @ (_phi(self.lam2, t) * self.coef2)
        if math.isinf(t):
            pos = self.lam > 0
            return self.w0 - self.V[:, pos] @ (self.coef[pos] / self.lam[pos])
        return self.w0 - self.V @ (_phi(self.lam, t) * self.coef)

    def loss(self, t: float) -> float:
        return float(self.problem.loss(self.w(t).reshape(self.shape)))

    def point(self, t: float) -> Point:
        w = self.w(t)
        w2 = self.w(t, secondary=True) if math.isfinite(t) else w
        W = w.reshape(self.shape)
        perr = max(SAFETY * float(np.max(np.abs(w - w2))), 16 * EPS * max(self.scale, float(np.max(np.abs(w)))))
        r = self.problem.residuals(W)
        loss = float(self.problem.loss(W))
        lerr = self.problem.loss_scale * float(np.sum(2 * np.abs(r) * self.row_abs * perr + (self.row_abs * perr) ** 2))
        lerr += 64 * EPS * loss
        return Point(float(t), None, loss, W, _det_sign(W), (W.copy(),), lerr, perr)

    def time_of_loss(self, level: float, t_lo: float, t_hi: float) -> float:
        """The time in ``[t_lo, t_hi]`` at which the (non-increasing) loss equals ``level``."""
        f = lambda u: self.loss(math.exp(u)) - level
        lo = math.log(max(t_lo, 1e-300))
        if f(lo) <= 0:
            return t_lo
        u = brentq(f, lo, math.log(t_hi), xtol=4 * EPS, rtol=4 * EPS)
        return math.exp(u)


def _det_sign(W: np.ndarray) -> int | None:
    if W.shape[0] != W.shape[1]:
        return None
    s = np.linalg.svd(W, compute_uv=False)
    if not np.all(np.isfinite(s)) or s[0] == 0 or s[-1] <= PRECISION_FLOOR * s[0]:
        return None
    return int(np.sign(np.linalg.det(W)))


def run_linear(spec: Spec) -> Result:
    """The depth-1 trajectory of ``spec`` (a :class:`~models.factorizations.DeepMatrix` of depth 1)."""
    flow = LinearFlow(spec.problem, spec.init.factors[0])
    loss0 = flow.loss(0.0)
    loss_inf = flow.loss(math.inf)
    t_end = spec.t_max if spec.t_max is not None else math.inf
    if spec.record_at:
        t_end = min(t_end, max(float(t) for t in spec.record_at))
    stop = spec.until_loss
    # levels 10^(-k/per_decade) strictly between the start and the stop (as in gf)
    k = spec.per_decade
    levels = []
    j = math.floor(math.log10(max(loss0, 1e-300)) * k)
    while True:
        lv = 10.0 ** (j / k)
        if lv <= max(stop or 0.0, loss_inf, 1e-300) or j < -400 * k:
            break
        if lv < loss0:
            levels.append(lv)
        j -= 1
    status, message = Status.COMPLETED, ""
    events: list[tuple[float, str]] = [(0.0, "start")]

    def crossing(level):  # the time the loss reaches ``level`` (> loss_inf), or inf beyond t_end
        hi = 1.0
        while flow.loss(hi) > level:
            hi *= 16.0
            if hi > T_HORIZON:
                return math.inf
        return flow.time_of_loss(level, hi / 16.0 if hi > 1.0 else 0.0, hi)

    stop_t = math.inf
    if stop is not None:
        if loss0 <= stop:
            stop_t = 0.0
        elif loss_inf < stop * (1 - 1e-12):
            stop_t = crossing(stop)
    t_final = min(t_end, stop_t)
    if math.isinf(t_final):
        t_final = T_HORIZON
        status = Status.BUDGET
        message = (f"the loss converges to {loss_inf:.3g} (the least-squares minimum), above until_loss: "
                   f"stopped at t = {T_HORIZON:.0e}")
    for lv in levels:
        t = crossing(lv)
        if t < t_final:
            events.append((t, "level"))
    for t in spec.record_at or ():
        if 0 < float(t) <= t_final:
            events.append((float(t), "time"))
    if t_final > 0 or not events:
        events.append((t_final, "end"))
    seen, points = set(), []
    for t, _ in sorted(events, key=lambda e: e[0]):
        if t in seen:
            continue
        seen.add(t)
        points.append(flow.point(t))
    stats = {"path": "linear", "modes": int(np.count_nonzero(flow.lam)), "loss_min": loss_inf}
    return Result(points, status, message, "float64", {"closed_form": True}, stats)


__all__ = ["LinearFlow", "run_linear"]
