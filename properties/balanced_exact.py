"""Balanced 2x2 deep-factorization inits that are balanced *exactly* in float64 (issue 11).

``models.inits.balanced`` builds ``W_j = R_j S R_{j-1}^T`` with float64 rotations, so ``C_j = W_{j+1}^T W_{j+1} -
W_j W_j^T`` is ~1e-16 of ``||W_j||^2`` instead of 0. Gradient flow conserves ``C_j``, and high-precision runs see
it: on the raw factors a factor det can flip where ``|det W_j| ~ sqrt(||W_j||^2 ||C||)`` (depth 2, scale 1e-4:
at ``|det| ~ 1e-10``, resolved to 1e-47), and the raw flow from such factors leaves the balanced (chart) flow of
the same ``W(0)`` by ~1e-18 within ``t = 0.2`` (depth 3, scale 0.1), far above gf-mp's error estimates.

Here the rotations are Pythagorean: ``P = [[a^2 - b^2, -2ab], [2ab, a^2 - b^2]]`` has ``P^T P = n^2 I`` exactly
(``n = a^2 + b^2``), and with every rotation drawn from one hypotenuse ``n`` (1105 = 5 * 13 * 17 has four
primitive representations; with swaps, signs and transposes :func:`_rotation` gives 24 distinct rotations, indexed
by k mod 32, so 8 of them are drawn twice as often as the rest), ``W_j = P_j D P_{j-1}^T`` (``D`` diagonal with
20-bit dyadic entries) gives ``W_{j+1}^T W_{j+1} = n^2 P_j D^2 P_j^T = W_j W_j^T`` with every product exact in
float64 (integers below 2^21 times 20-bit dyadics). :func:`imbalance` checks it in exact rational arithmetic.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from models.factorizations import DeepMatrix
from models.inits import Init

HYPOTENUSE_ROOTS = ((33, 4), (32, 9), (31, 12), (24, 23))   # a^2 + b^2 = 1105 for each
N = 1105


def _rotation(k: int) -> np.ndarray:
    a, b = HYPOTENUSE_ROOTS[k % 4]
    c, s = a * a - b * b, 2 * a * b
    if (k // 4) % 2:
        c, s = s, c
    P = np.array([[c, -s], [s, c]], dtype=float)
    return P if (k // 8) % 2 == 0 else -P if (k // 16) % 2 == 0 else P.T


def _dyadic(x: float, bits: int = 20) -> float:
    m, e = np.frexp(x)
    return float(np.ldexp(np.round(m * 2.0 ** bits), int(e) - bits))


def balanced_exact(model: DeepMatrix, scale: float, seed: int, det: str = "positive") -> Init:
    """An exactly balanced init of a 2x2 depth-L factorization: end-to-end singular values ``scale * (u, v)``
    with ``u, v ~ U[0.5, 1]`` (as ``models.inits.balanced``), Pythagorean rotations drawn by ``seed``, and the
    sign of ``det W(0)`` as asked (one rotation of ``P_0`` reflected: ``det P_0 < 0``)."""
    assert model.shape == (2, 2) and model.full_width
    L = model.depth
    rng = np.random.default_rng([int(seed), 1105])
    sv = np.sort(rng.uniform(0.5, 1.0, 2))[::-1] * float(scale)
    D = np.diag([_dyadic(s ** (1.0 / L) / N ** 2) for s in sv])
    Ps = [_rotation(int(k)) for k in rng.integers(0, 32, L + 1)]
    if det == "negative":
        Ps[0] = Ps[0] @ np.diag([1.0, -1.0])      # still P^T P = n^2 I, exactly
    factors = tuple(Ps[j + 1] @ D @ Ps[j].T for j in range(L))
    return Init(factors, "balanced_exact", {"scale": float(scale), "seed": int(seed), "det": det})


def imbalance(factors) -> Fraction:
    """``max_j max|W_{j+1}^T W_{j+1} - W_j W_j^T|`` in exact rational arithmetic (0 for an exactly balanced
    init)."""
    Fs = [[[Fraction(float(v)) for v in row] for row in np.asarray(F)] for F in factors]
    worst = Fraction(0)
    for A, B in zip(Fs, Fs[1:]):
        n = len(A)
        for i in range(n):
            for k in range(n):
                btb = sum(B[r][i] * B[r][k] for r in range(len(B)))
                aat = sum(A[i][r] * A[k][r] for r in range(len(A[0])))
                worst = max(worst, abs(btb - aat))
    return worst


__all__ = ["balanced_exact", "imbalance"]
