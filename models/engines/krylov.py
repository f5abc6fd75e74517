"""scipy's BDF with matrix-free linear algebra (shared by the ``gf`` engine's e2e and raw paths).

BDF's simplified Newton iteration needs ``(I - c J)^{-1} b`` for a Jacobian ``J`` frozen at some state. scipy
stores ``J``, forms ``I - c J`` and LU-factors it; :class:`KrylovBDF` keeps scipy's BDF (order and step selection,
error control, dense output) and replaces those three objects:

- the Jacobian slot holds an *operator* returned by ``jac_op(t, y)``: anything with ``__rmul__`` (BDF only
  multiplies it by the scalar ``c``) and a method ``system()`` returning an object whose ``solve(b)`` gives
  ``(I - J) x = b`` for that (scaled) operator;
- ``I`` is :class:`_Identity`, for which ``I - c J`` is ``(c J).system()``;
- "factoring" returns the system unchanged and "solving with the LU" calls its ``solve``.

A solve must return an approximate solution or a non-finite vector. A non-finite one fails BDF's Newton
iteration: BDF re-evaluates the Jacobian or halves the step (scipy's handling of a diverging Newton iteration).
An approximate solution only changes how fast that iteration contracts, and its rate test rejects one that does
not contract; what must never come back is a vector that is no solution at all (zeros on a failed solve make the
iteration "converge" on its predictor: ``tests/engines/test_gf_krylov.py``). :class:`HessianJacobian` returns
NaNs whenever its true residual misses ``10 * MINRES_RTOL``; the e2e path's conjugate gradients (positive
definite systems) return their last iterate after ``e2e_flow.CG_MAXITER`` iterations.

:class:`HessianJacobian` is the operator for a gradient flow ``dy/dtau = -scale grad f(y)``: ``J = -scale H``
with ``H`` the (symmetric, in general indefinite) Hessian of ``f`` given by a Hessian-vector product, and
``(I + a H) x = b`` solved by :func:`minres`.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.integrate import BDF
from scipy.sparse import csc_matrix

#: relative residual ``||b - A x|| / ||b||`` of the raw path's MINRES solves (see :class:`HessianJacobian`).
#: BDF's Newton iteration converges to the same step with any solve accurate enough to let it converge; the
#: tolerance only trades MINRES iterations against Newton failures. Measured (gf raw, to loss 1e-10, no
#: error-estimate run, CPU s): depth 3 50x40 (5,200 unknowns) 2.9 / 3.8 / 4.8 / 5.5 s at 1e-4 / 1e-6 / 1e-8 /
#: 1e-10 (964 steps each); CP order 3 dims 10 R = 20 (600) 33.8 / 25.5 / 25.1 s at 1e-4 / 1e-6 / 1e-8 (1e-4:
#: 2,704 steps and 369 operators against 1,949 and 135).
MINRES_RTOL = 1e-6
MINRES_MAXITER = 1000


class _Identity:
    """Stands for BDF's identity matrix: ``I - c J`` becomes ``(c J).system()``."""

    def __sub__(self, other):
        return other.system()


class KrylovBDF(BDF):
    """scipy's BDF with its LU factorization replaced by a matrix-free solve (see the module docstring).

    ``jac_op(t, y)`` returns the Jacobian operator at ``(t, y)``; scipy calls it when its Newton iteration fails
    with a stale Jacobian (and once at the start).
    """

    def __init__(self, fun, t0, y0, t_bound, *, jac_op, **options):
        n = np.asarray(y0).shape[0]
        super().__init__(fun, t0, y0, t_bound, jac=csc_matrix((n, n)), **options)
        self.jac, self.J = jac_op, jac_op(t0, np.asarray(y0, dtype=float))
        self.I = _Identity()

        def lu(system):
            self.nlu += 1
            return system

        self.lu = lu
        self.solve_lu = lambda system, b: system.solve(b)


def minres(matvec, b: np.ndarray, rtol: float, maxiter: int) -> tuple[np.ndarray, int, bool]:
    """MINRES (Paige & Saunders) for ``A x = b`` with ``A`` symmetric, possibly indefinite, given by ``matvec``.

    Returns ``(x, iterations, converged)``: converged when the recurrence's residual norm (``||b - A x||`` in
    exact arithmetic) is at most ``rtol ||b||``. The recurrences follow Elman, Silvester & Wathen, *Finite
    Elements and Fast Iterative Solvers* (2nd ed., Algorithm 2.4), unpreconditioned, from ``x0 = 0``.
    scipy's ``minres`` stops on the backward error ``||r|| / (||A|| ||x||)`` instead, which for the stiff systems
    of late gradient flow (``||A||`` ~ 1e6) leaves ``||r|| / ||b||`` orders of magnitude above its tolerance.
    """
    x = np.zeros_like(b)
    beta1 = float(np.linalg.norm(b))
    if beta1 == 0.0 or not math.isfinite(beta1):
        return x, 0, beta1 == 0.0
    v_prev = np.zeros_like(b)
    v = b / beta1
    w_prev = np.zeros_like(b)
    w = np.zeros_like(b)
    gamma, eta = beta1, beta1
    c_prev, c, s_prev, s = 1.0, 1.0, 0.0, 0.0
    target = rtol * beta1
    for it in range(1, maxiter + 1):
        u = matvec(v) - gamma * v_prev  # Paige's order: delta from A v with v_prev removed (more stable)
        delta = float(np.dot(v, u))
        u = u - delta * v
        gamma_next = float(np.linalg.norm(u))
        a0 = c * delta - c_prev * s * gamma
        a1 = math.hypot(a0, gamma_next)
        if a1 == 0.0 or not math.isfinite(a1):
            return x, it, False          # a singular (or non-finite) projected system
        a2 = s * delta + c_prev * c * gamma
        a3 = s_prev * gamma
        c_prev, s_prev = c, s
        c, s = a0 / a1, gamma_next / a1
        w_new = (v - a3 * w_prev - a2 * w) / a1
        x = x + (c * eta) * w_new
        eta = -s * eta
        w_prev, w = w, w_new
        if abs(eta) <= target:
            return x, it, True
        if gamma_next == 0.0:            # an invariant subspace: x solves the system exactly
            return x, it, True
        v_prev, v, gamma = v, u / gamma_next, gamma_next
    return x, maxiter, False


class HessianJacobian:
    """``J = -scale H`` of the flow ``dy/dtau = -scale grad f(y)``, ``H`` the Hessian of ``f`` at a frozen state
    (``hvp(v) = H v``); ``I - J = I + scale H`` is symmetric and indefinite where ``f`` has negative curvature
    (near saddles), so the solve is :func:`minres` to :data:`MINRES_RTOL`. The true residual of each solve is
    checked with one more product; a solve that misses ``10 * MINRES_RTOL`` returns NaNs (a failed Newton
    iteration for BDF). ``stats`` (a dict shared with the caller) counts ``jvps``, ``krylov_solves``,
    ``krylov_iters``, ``krylov_max_iters`` and ``krylov_failures``."""

    def __init__(self, hvp, scale: float, stats: dict):
        self.hvp, self.scale, self.stats = hvp, float(scale), stats

    def __rmul__(self, c: float):
        return HessianJacobian(self.hvp, self.scale * float(c), self.stats)

    __mul__ = __rmul__

    def system(self):
        return self

    def _apply(self, x):
        self.stats["jvps"] = self.stats.get("jvps", 0) + 1
        return x + self.scale * self.hvp(x)

    def solve(self, b):
        st = self.stats
        b = np.asarray(b, dtype=float)
        x, it, ok = minres(self._apply, b, MINRES_RTOL, MINRES_MAXITER)
        st["krylov_solves"] = st.get("krylov_solves", 0) + 1
        st["krylov_iters"] = st.get("krylov_iters", 0) + it
        st["krylov_max_iters"] = max(st.get("krylov_max_iters", 0), it)
        if ok and it > 0:
            bn = float(np.linalg.norm(b))
            ok = float(np.linalg.norm(b - self._apply(x))) <= 10 * MINRES_RTOL * bn
        if not ok:
            st["krylov_failures"] = st.get("krylov_failures", 0) + 1
            return np.full_like(b, np.nan)
        return x


__all__ = ["HessianJacobian", "KrylovBDF", "MINRES_MAXITER", "MINRES_RTOL", "minres"]
