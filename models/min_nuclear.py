"""The minimum-nuclear-norm completion (the convex baseline of Arora, Cohen, Hu & Luo 2019), with a certified
accuracy.

``min ||X||_*  subject to  X_ij = y_ij  for every observed (i, j)``, written with cvxpy (``normNuc``, an SDP) and
solved by SCS (a first-order conic solver: ~1-3 s at 100x100 with 2,000-5,000 observed entries; an interior-point
solver such as Clarabel is more accurate per iteration but its KKT system has a dense ``20,100 x 20,100`` block for
the ``200 x 200`` semidefinite cone, gigabytes at 100x100). SCS runs at ``eps_abs = eps_rel = 1e-7``.

The accuracy is certified from the solver's primal and dual answers, not taken from its tolerance:

- upper bound: the solver's ``X`` with its observed entries set to the observations exactly (feasible), whose
  nuclear norm (from an SVD in float64) is at least the minimum;
- lower bound: the dual variable ``Lambda`` of the equality constraints (supported on the observed entries), scaled
  into the unit ball of the spectral norm, gives ``min >= |<Lambda, Y>|`` by weak duality (for every feasible
  ``X``, ``||X||_* >= <Lambda, X> = <Lambda, Y>`` when ``||Lambda||_2 <= 1``).

:class:`NuclearBaseline` reports the feasible ``X`` (``matrix``), its nuclear norm (``nuclear_norm``, the upper
bound) and ``gap = upper - lower`` (>= 0): the minimum lies in ``[nuclear_norm - gap, nuclear_norm]``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .errors import EngineFailure, require

SOLVER = "SCS"
SCS_EPS = 1e-7
SCS_MAX_ITERS = 100_000


@dataclass(frozen=True)
class NuclearBaseline:
    """``matrix`` (feasible: observed entries exact), ``nuclear_norm`` (its nuclear norm, an upper bound on the
    minimum), ``lower`` (a certified lower bound), ``gap`` (``nuclear_norm - lower``), ``solver``, ``status``,
    ``iterations``, ``seconds``, ``max_residual`` (the solver's largest |X_ij - y_ij| before the projection)."""

    matrix: np.ndarray
    nuclear_norm: float
    lower: float
    gap: float
    solver: str
    status: str
    iterations: int
    seconds: float
    max_residual: float

    def reconstruction_error(self, target) -> float:
        """``||X - W*||_F / ||W*||_F``."""
        T = np.asarray(target, dtype=float)
        return float(np.linalg.norm(self.matrix - T) / np.linalg.norm(T))


def min_nuclear_completion(problem, *, eps: float = SCS_EPS, max_iters: int = SCS_MAX_ITERS) -> NuclearBaseline:
    """The minimum-nuclear-norm completion of a completion problem (module docstring)."""
    import cvxpy as cp

    require(getattr(problem, "obs_flat", None) is not None, "the nuclear-norm baseline needs a completion problem")
    require(0 < eps < 1e-2, f"eps must be in (0, 1e-2), got {eps!r}")
    d, dp = problem.shape
    rows = np.asarray(problem.obs_flat) // dp
    cols = np.asarray(problem.obs_flat) % dp
    y = np.asarray(problem.targets, dtype=float)
    X = cp.Variable((d, dp))
    con = X[rows, cols] == y
    prob = cp.Problem(cp.Minimize(cp.normNuc(X)), [con])
    t0 = time.perf_counter()
    try:
        prob.solve(solver=SOLVER, eps_abs=eps, eps_rel=eps, max_iters=int(max_iters))
    except cp.error.SolverError as exc:
        raise EngineFailure(f"{SOLVER} failed on the nuclear-norm problem: {exc}") from None
    seconds = time.perf_counter() - t0
    if X.value is None or con.dual_value is None:
        raise EngineFailure(f"{SOLVER} returned no solution (status {prob.status})")
    Xv = np.array(X.value, dtype=float)
    resid = float(np.max(np.abs(Xv[rows, cols] - y))) if y.size else 0.0
    Xv[rows, cols] = y
    upper = float(np.sum(np.linalg.svd(Xv, compute_uv=False)))
    Lam = np.zeros((d, dp))
    Lam[rows, cols] = np.asarray(con.dual_value, dtype=float).reshape(-1)
    op = float(np.linalg.norm(Lam, 2)) if Lam.any() else 0.0
    lower = abs(float(Lam[rows, cols] @ y)) / max(1.0, op)
    gap = max(upper - lower, 0.0)
    return NuclearBaseline(matrix=Xv, nuclear_norm=upper, lower=lower, gap=gap, solver=f"cvxpy {SOLVER} eps {eps:g}",
                           status=str(prob.status), iterations=int(prob.solver_stats.num_iters or 0),
                           seconds=seconds, max_residual=resid)


__all__ = ["NuclearBaseline", "SOLVER", "min_nuclear_completion"]
