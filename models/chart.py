"""The reduced chart of balanced gradient flow on 2x2 deep matrix factorization.

Under balanced initialization the end-to-end matrix ``W = W_L ... W_1`` follows (Arora, Cohen & Hazan 2018)

    dW/dt = - sum_{j=1}^{L} (W W^T)^{(j-1)/L} grad l(W) (W^T W)^{(L-j)/L},

an ODE in 4 unknowns whatever the depth. We write ``W`` in signed-SVD coordinates

    W = R(theta) diag(s1 e^{rho1}, s2 e^{rho2}) R(phi)^T,     R(a) = [[cos a, -sin a], [sin a, cos a]],

with fixed signs ``s1, s2`` (so ``det W = s1 s2 e^{rho1 + rho2}`` never changes sign and the tiny singular value
is stored exactly through its logarithm). With ``sigma_a = s_a e^{rho_a}``, ``G^ = R(theta)^T grad l R(phi)`` and
``D = e^{2 rho1/L} - e^{2 rho2/L}`` (computed with expm1):

    rho_a'  = -L s_a e^{(1 - 2/L) rho_a} G^_aa
    theta'  = -(sigma2 G^_12 + sigma1 G^_21) / D
    phi'    = -(sigma1 G^_12 + sigma2 G^_21) / D

The right-hand side uses only ``+ - * /``, ``exp``, ``expm1``, ``cos``, ``sin`` from a *backend*, so the same code
runs in float64 (:data:`FLOAT`), in complex arithmetic for exact complex-step Jacobians (:data:`COMPLEX`) and in
mpmath at any precision (:func:`mp_backend`). The residuals are formed from ``W``'s entries, which the chart gives
without cancellation, so the loss is accurate down to ``(machine eps)^2``.

Re-charting: when ``|theta|`` or ``|phi|`` exceeds pi/2 the angle is shifted by pi and both signs flip, which
leaves ``W`` unchanged and keeps the angles where ``sin`` and ``cos`` are relatively accurate.
"""

from __future__ import annotations

import cmath
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class Backend:
    """Elementary functions for one number type."""

    name: str
    exp: Callable
    expm1: Callable
    cos: Callable
    sin: Callable


def _cexpm1(z: complex) -> complex:
    """expm1 for complex arguments, accurate for small real part (complex-step use)."""
    x, h = z.real, z.imag
    ex = math.exp(x)
    return complex(math.expm1(x) + ex * (math.cos(h) - 1.0), ex * math.sin(h))


FLOAT = Backend("float", math.exp, math.expm1, math.cos, math.sin)
COMPLEX = Backend("complex", cmath.exp, _cexpm1, cmath.cos, cmath.sin)


def mp_backend(mp) -> Backend:
    """Backend over an mpmath context (``mpmath.mp``)."""
    return Backend("mpmath", mp.exp, mp.expm1, mp.cos, mp.sin)


def entries(y, signs, be: Backend) -> list:
    """Flat row-major entries ``[W11, W12, W21, W22]`` of the matrix at chart point ``y``."""
    th, ph, r1, r2 = y
    s1, s2 = signs
    a, b = s1 * be.exp(r1), s2 * be.exp(r2)
    ct, st, cp, sp = be.cos(th), be.sin(th), be.cos(ph), be.sin(ph)
    return [a * ct * cp + b * st * sp, a * ct * sp - b * st * cp, a * st * cp - b * ct * sp, a * st * sp + b * ct * cp]


def rhs(y, signs, depth: int, problem, be: Backend) -> list:
    """``dy/dt`` in the chart (see the module docstring) for a 2x2 :class:`~models.problems.MatrixProblem`."""
    th, ph, r1, r2 = y
    s1, s2 = signs
    L = depth
    e1, e2 = be.exp(r1), be.exp(r2)
    sig1, sig2 = s1 * e1, s2 * e2
    ct, st, cp, sp = be.cos(th), be.sin(th), be.cos(ph), be.sin(ph)
    w = [sig1 * ct * cp + sig2 * st * sp, sig1 * ct * sp - sig2 * st * cp,
         sig1 * st * cp - sig2 * ct * sp, sig1 * st * sp + sig2 * ct * cp]
    g, _ = problem.grad_flat(w)
    g11, g12, g21, g22 = g
    # G^ = U^T G V with U = [u1 u2] = R(theta), V = [v1 v2] = R(phi).
    gv1 = (g11 * cp + g12 * sp, g21 * cp + g22 * sp)      # G v1
    gv2 = (-g11 * sp + g12 * cp, -g21 * sp + g22 * cp)    # G v2
    h11 = ct * gv1[0] + st * gv1[1]
    h12 = ct * gv2[0] + st * gv2[1]
    h21 = -st * gv1[0] + ct * gv1[1]
    h22 = -st * gv2[0] + ct * gv2[1]
    p = 1.0 - 2.0 / L
    d = -be.exp(2.0 * r1 / L) * be.expm1(2.0 * (r2 - r1) / L)
    return [
        -(sig2 * h12 + sig1 * h21) / d,
        -(sig1 * h12 + sig2 * h21) / d,
        -L * s1 * be.exp(p * r1) * h11,
        -L * s2 * be.exp(p * r2) * h22,
    ]


def jacobian(y, signs, depth: int, problem, h: float = 1e-30) -> np.ndarray:
    """Exact (to rounding) Jacobian of :func:`rhs` in float64 by complex-step differentiation."""
    return _complex_step(lambda v: rhs(v, signs, depth, problem, COMPLEX), y, h)


# ------------------------------------------------------------------------------------------------------------
# The scaled chart: angles multiplied by sigma_1
# ------------------------------------------------------------------------------------------------------------
# Late in the flow ``sigma_1 -> inf`` while the observed entries converge: ``W12 ~ sigma_1 sin(phi)`` and
# ``W21 ~ sigma_1 sin(theta)``. In ``(theta, phi, rho1, rho2)`` the fast relaxation of those residuals is a
# combination of an angle and ``rho1`` whose rate is ~loss^-(L-1)/L, and the slow growth of ``sigma_1`` appears
# in the Jacobian only as a cancellation between entries that large: once ``h * lambda_max`` passes
# ``1 / eps`` the implicit solver's Newton iteration stalls (loss ~1e-11 at depth 3). With
# ``p = e^{rho1} theta`` and ``q = e^{rho1} phi`` the fast variables *are* (nearly) the observed entries, whose
# quasi-static values barely depend on ``rho1``: the fast and slow directions become the coordinate axes, and
# float64 BDF reaches loss 1e-16 .. 1e-19 at every depth 2..8. The map is a diffeomorphism for any
# ``rho1``, so the scaled chart is exact, not an approximation.


def to_scaled(y, be: Backend = FLOAT) -> list:
    """``(theta, phi, rho1, rho2) -> (p, q, rho1, rho2)`` with ``p = e^{rho1} theta``, ``q = e^{rho1} phi``."""
    e = be.exp(y[2])
    return [y[0] * e, y[1] * e, y[2], y[3]]


def from_scaled(z, be: Backend = FLOAT) -> list:
    """Inverse of :func:`to_scaled`."""
    e = be.exp(-z[2])
    return [z[0] * e, z[1] * e, z[2], z[3]]


def scaled_rhs(z, signs, depth: int, problem, be: Backend) -> list:
    """``dz/dt`` in the scaled chart: ``p' = e^{rho1} (theta' + theta rho1')`` and likewise for ``q``."""
    y = from_scaled(z, be)
    f = rhs(y, signs, depth, problem, be)
    e = be.exp(z[2])
    return [e * (f[0] + y[0] * f[2]), e * (f[1] + y[1] * f[2]), f[2], f[3]]


def scaled_jacobian(z, signs, depth: int, problem, h: float = 1e-30) -> np.ndarray:
    """Exact (to rounding) Jacobian of :func:`scaled_rhs` in float64 by complex-step differentiation."""
    return _complex_step(lambda v: scaled_rhs(v, signs, depth, problem, COMPLEX), z, h)


def _complex_step(fun, y, h: float) -> np.ndarray:
    n = len(y)
    J = np.empty((n, n))
    for k in range(n):
        yc = [complex(v) for v in y]
        yc[k] += complex(0.0, h)
        J[:, k] = [c.imag / h for c in fun(yc)]
    return J


def from_matrix(W: np.ndarray) -> tuple[list[float], tuple[int, int]]:
    """Chart coordinates ``(y, signs)`` of a nonsingular 2x2 matrix (via its SVD)."""
    U, s, Vt = np.linalg.svd(np.asarray(W, dtype=float))
    V = Vt.T
    s1, s2 = 1, 1
    if np.linalg.det(U) < 0:
        U = U.copy(); U[:, 1] *= -1; s2 = -s2
    if np.linalg.det(V) < 0:
        V = V.copy(); V[:, 1] *= -1; s2 = -s2
    y = [math.atan2(U[1, 0], U[0, 0]), math.atan2(V[1, 0], V[0, 0]), math.log(s[0]), math.log(s[1])]
    return recentre(y, (s1, s2))


def recentre(y, signs):
    """Shift angles into [-pi/2, pi/2] (flipping both signs per shift); ``W`` is unchanged."""
    y = list(y)
    s1, s2 = signs
    pi = math.pi
    for k in (0, 1):
        v = float(y[k])
        while abs(v) > pi / 2:
            shift = pi if v > 0 else -pi
            y[k] = y[k] - shift
            v = float(y[k])
            s1, s2 = -s1, -s2
    return y, (s1, s2)


def gap(y, depth: int) -> float:
    """Relative gap ``1 - e^{2 (rho2 - rho1)/L}`` of the chart's denominator (0 when singular values meet)."""
    return -math.expm1(2.0 * (float(y[3]) - float(y[2])) / depth)


def det_sign(signs) -> int:
    return int(signs[0] * signs[1])
