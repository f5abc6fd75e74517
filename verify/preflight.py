"""Checks a command makes before it computes anything, and the warnings it prints after a run.

- :func:`check_start`: an init whose end-to-end matrix or loss overflows float64 (``--init`` with entries
  1e200) is bad input; so is a start at a stationary point of the loss (every factor gradient exactly zero, for
  example all-zero factors at depth >= 2): gradient flow and descent stay there for ever, so no stopping rule
  can be reached and there is nothing to simulate.
- :func:`run_warnings`: one line per thing a user must not miss in a finished trajectory: a det sign that
  changed along the run (:attr:`~models.trajectory.Trajectory.det_sign_change`; gradient flow preserves it,
  gradient descent with a finite step may not), a status ``inaccurate`` or a failure, with the run's message
  (which names the engine or option that would go on).
"""

from __future__ import annotations

import math

import numpy as np

from models.errors import InvalidInput
from models.factorizations import DeepMatrix, factor_grads, product
from verify import engine_facts


def check_start(problem, model, init, what: str = "the init") -> None:
    """Raise :class:`InvalidInput` when the start cannot be simulated (see the module docstring)."""
    if not isinstance(model, DeepMatrix):
        return
    factors = [np.asarray(W, dtype=float) for W in init.factors]
    with np.errstate(over="ignore", invalid="ignore"):
        W = product(factors)
        loss = float(problem.loss(W)) if np.all(np.isfinite(W)) else math.inf
    if not np.all(np.isfinite(W)) or not math.isfinite(loss):
        big = max(float(np.max(np.abs(F))) for F in factors)
        raise InvalidInput(f"{what} overflows float64: its end-to-end matrix or loss is not finite (largest factor "
                           f"entry {big:.3g}); scale it down")
    grads = factor_grads(factors, problem.grad(W))
    if all(not np.any(g) for g in grads):
        raise InvalidInput(f"{what} is a stationary point of the loss (every factor gradient is exactly 0, loss "
                           f"{loss:.6g}): gradient flow and descent stay there, so there is nothing to simulate")


def _fmt_where(w: dict) -> str:
    return f"step {w['step']}" if "step" in w else f"t = {w['t']:.6g}"


def run_warnings(traj) -> list[str]:
    """Warning lines for a finished trajectory (see the module docstring)."""
    out = []
    flip = traj.det_sign_change
    if flip is not None:
        out.append(f"warning: the det sign changed from {flip['from']:+d} to {flip['to']:+d} between "
                   f"{_fmt_where(flip['after'])} and {_fmt_where(flip['at'])}"
                   + ("; gradient flow preserves it, so this is the step size (try a smaller --lr)"
                      if engine_facts.clock(traj.engine) == "step" else ""))
    if traj.status.value == "inaccurate" or traj.status.failed:
        out.append(f"warning: {traj.engine} ended with status {traj.status.value} (error estimate "
                   f"{traj.error_estimate:.3g}): {traj.message}")
    return out


__all__ = ["check_start", "run_warnings"]
