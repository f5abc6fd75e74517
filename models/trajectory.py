"""The records every engine returns: :class:`Point`, :class:`Trajectory` and the outcome :class:`Status`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum

import numpy as np


class Status(Enum):
    """How a run ended. The value is the stable name written to JSON; ``message`` is the sentence for reports."""

    COMPLETED = "completed"
    BUDGET = "budget"
    DIVERGED = "diverged"
    PRECISION_LOST = "precision_lost"
    SOLVER_FAILED = "solver_failed"

    @property
    def message(self) -> str:
        return _STATUS_MESSAGES[self]

    @property
    def trustworthy(self) -> bool:
        """Whether the recorded points may be used as evidence (they are up to the last point)."""
        return self in (Status.COMPLETED, Status.BUDGET)


_STATUS_MESSAGES = {
    Status.COMPLETED: "reached the requested end (time, step count or loss)",
    Status.BUDGET: "stopped at its step, time or wall-clock budget before the requested end; the points are valid",
    Status.DIVERGED: "the iterates overflowed or became non-finite",
    Status.PRECISION_LOST: "the working precision can no longer resolve the trajectory (for example the det sign); "
                           "the points after the loss of precision were discarded",
    Status.SOLVER_FAILED: "the integrator failed (step size underflow or no convergence of the implicit solve)",
}


@dataclass(frozen=True, eq=False)
class Point:
    """One recorded state.

    ``t`` (gradient flow) or ``step`` (gradient descent) locates it. ``product`` is the end-to-end matrix or
    tensor in float64; ``det_sign`` the sign of its det (square matrices; computed without cancellation, ``None``
    when unresolvable or undefined). ``loss_err`` and ``product_err`` are the engine's estimates of the absolute
    error of ``loss`` and of the entries of ``product`` (max over entries). ``hp`` holds high-precision values as
    decimal strings (``{"digits": D, "loss": "...", "product": [["..."]]}``) for engines that have them.
    """

    t: float | None
    step: int | None
    loss: float
    product: np.ndarray
    det_sign: int | None
    factors: tuple[np.ndarray, ...] | None = None
    loss_err: float = 0.0
    product_err: float = 0.0
    hp: dict | None = None

    def to_json(self, *, with_factors: bool = False) -> dict:
        out = {}
        if self.t is not None:
            out["t"] = _num(self.t)
        if self.step is not None:
            out["step"] = int(self.step)
        out["loss"] = _num(self.loss)
        out["product"] = _arr(self.product)
        out["det_sign"] = self.det_sign
        out["loss_err"] = _num(self.loss_err)
        out["product_err"] = _num(self.product_err)
        if self.hp is not None:
            out["hp"] = self.hp
        if with_factors and self.factors is not None:
            out["factors"] = [_arr(W) for W in self.factors]
        return out


@dataclass(frozen=True, eq=False)
class Trajectory:
    """Recorded points of one run, with what made it and how much to trust it.

    ``error_estimate`` is the engine's estimate of the largest error in the recorded end-to-end entries,
    relative to the largest entry at the same point (``max_p product_err_p / max|W_p|``).

    Memory: a run keeps what it records, never the whole history. A recorded :class:`Point` of a d x d' problem
    holds its float64 end-to-end matrix, ``8 d d'`` bytes, plus ~40 bytes of scalars (loss, step or time, det
    sign, the two error estimates), and the factors (``8 sum_j d_j d_{j-1}`` bytes) where the engine keeps them
    (``gd``: the last point only). ``gd`` stores its records as arrays (``BatchResult``: ``8 d d' + 26`` bytes per
    recorded point per member, plus 8 bytes per recorded step); ``BatchResult.trajectory(b)`` copies one
    member's records into points. Measured for depth-3 100x100 completion with 5,000 observations: 200 steps
    recorded every 100 hold 3 x 80,026 bytes of records plus 240,000 bytes of final factors
    (tests/engines/test_gd_problems.py checks this accounting on a smaller problem). ``gf-mp`` points add their
    decimal strings (``hp``: about ``digits`` bytes per entry).
    """

    engine: str
    settings: dict
    points: tuple[Point, ...]
    status: Status
    message: str = ""
    error_estimate: float = math.nan
    precision: str = "float64"
    tolerances: dict = field(default_factory=dict)
    stats: dict = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def final(self) -> Point:
        return self.points[-1]

    @property
    def losses(self) -> np.ndarray:
        return np.array([p.loss for p in self.points])

    @property
    def products(self) -> np.ndarray:
        return np.stack([p.product for p in self.points])

    @property
    def times(self) -> np.ndarray:
        return np.array([p.t if p.t is not None else p.step for p in self.points], dtype=float)

    def to_json(self, *, with_factors: bool = False) -> dict:
        """A strict-JSON-ready dict (non-finite numbers become the strings "nan", "inf", "-inf")."""
        return {
            "engine": self.engine,
            "settings": self.settings,
            "status": self.status.value,
            "message": self.message or self.status.message,
            "precision": self.precision,
            "tolerances": {k: _num(v) if isinstance(v, float) else v for k, v in self.tolerances.items()},
            "error_estimate": _num(self.error_estimate),
            "stats": self.stats,
            "seconds": round(float(self.seconds), 6),
            "points": [p.to_json(with_factors=with_factors) for p in self.points],
            "final": self.final.to_json(with_factors=with_factors) if self.points else None,
        }


def _num(x) -> float | str:
    x = float(x)
    if math.isfinite(x):
        return x
    return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")


def _arr(a) -> list:
    a = np.asarray(a, dtype=float)
    if np.all(np.isfinite(a)):
        return a.tolist()
    return np.vectorize(_num, otypes=[object])(a).tolist()


def relative_error(points) -> float:
    """``max_p product_err_p / max|W_p|`` over points (the trajectory-level error estimate)."""
    worst = 0.0
    for p in points:
        scale = float(np.max(np.abs(p.product))) if np.size(p.product) else 0.0
        worst = max(worst, p.product_err / max(scale, np.finfo(float).tiny))
    return worst
