"""The alternative that ACHL19's commuting-case theorem rules out, for ``achl19.thm.commuting`` (issue 11).

With diagonal (commuting) sensing and a nonnegative solution, ACHL19 show that gradient flow from ``W_j(0) =
alpha I`` tends, as alpha -> 0, to the minimum-nuclear-norm solution (here the LP ``argmin{sum w : A w = y, w >=
0}``) *whatever the depth*. The alternative it rules out is a depth-dependent bias, the minimizer of the
Schatten-(2/N) quasi-norm ``sum w^(2/N)`` over the same set. For N = 2 the two coincide; for N >= 3 they coincide on
most random instances (the issue measured ~98%), and such instances cannot tell the theorem from the alternative.
:func:`alternative` computes the alternative exactly by enumerating the vertices of the polytope (a concave
function attains its minimum over a polytope at a vertex); the claim draws instances where the two differ.
"""

from __future__ import annotations

import itertools

import numpy as np


def vertices(A: np.ndarray, y: np.ndarray, tol: float = 1e-12) -> list[np.ndarray]:
    """The vertices (basic feasible solutions) of ``{w >= 0 : A w = y}`` for ``A`` of shape ``m x d``."""
    m, d = A.shape
    out = []
    for S in itertools.combinations(range(d), m):
        B = A[:, S]
        if abs(np.linalg.det(B)) < 1e-10:
            continue
        wS = np.linalg.solve(B, y)
        if np.all(wS >= -tol * max(1.0, float(np.max(np.abs(wS))))):
            w = np.zeros(d)
            w[list(S)] = np.maximum(wS, 0.0)
            out.append(w)
    return out


def alternative(A: np.ndarray, y: np.ndarray, depth: int) -> np.ndarray | None:
    """``argmin{sum w^(2/depth) : A w = y, w >= 0}`` (a vertex), or None when the set is empty."""
    vs = vertices(A, y)
    if not vs:
        return None
    return min(vs, key=lambda w: float(np.sum(w ** (2.0 / depth))))


__all__ = ["alternative", "vertices"]
