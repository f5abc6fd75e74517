"""The records every engine returns: :class:`Point`, :class:`Trajectory` and the outcome :class:`Status`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from enum import Enum

import numpy as np

from models.stored.jsonio import number as _num


class Status(Enum):
    """How a run ended. The value is the stable name written to JSON; ``message`` is the sentence for reports."""

    COMPLETED = "completed"
    BUDGET = "budget"
    DIVERGED = "diverged"
    PRECISION_LOST = "precision_lost"
    SOLVER_FAILED = "solver_failed"
    INACCURATE = "inaccurate"

    @property
    def message(self) -> str:
        return _STATUS_MESSAGES[self]

    @property
    def trustworthy(self) -> bool:
        """Whether the recorded points may be used as evidence (they are up to the last point)."""
        return self in (Status.COMPLETED, Status.BUDGET)

    @property
    def failed(self) -> bool:
        """The engine could not go on (diverged, lost precision, solver failed)."""
        return self in (Status.DIVERGED, Status.PRECISION_LOST, Status.SOLVER_FAILED)


_STATUS_MESSAGES = {
    Status.COMPLETED: "reached the requested end (time, step count or loss)",
    Status.BUDGET: "stopped at its step, time or wall-clock budget before the requested end; the points are valid",
    Status.DIVERGED: "the iterates overflowed or became non-finite",
    Status.PRECISION_LOST: "the working precision can no longer resolve the trajectory (for example the det sign); "
                           "the points after the loss of precision were discarded",
    Status.SOLVER_FAILED: "the integrator failed (step size underflow or no convergence of the implicit solve)",
    Status.INACCURATE: "the error estimate does not resolve the recorded points (an end-to-end entry error as "
                       "large as the largest entry: not one correct digit)",
}

#: a completed (or budget) run whose relative ``error_estimate`` is not below this is ``inaccurate``
RESOLVED = 1.0

#: what to try when an engine cannot go on, by (engine, status); the sentence is appended to the run's message
ADVICE = {
    ("gf", Status.PRECISION_LOST): "gf-mp (--engine gf-mp; more --digits for smaller losses) goes further",
    ("gf", Status.SOLVER_FAILED): "gf-mp (--engine gf-mp) or a smaller rtol (--rtol) may go on",
    ("gf", Status.DIVERGED): "a smaller init scale, or gf-mp (--engine gf-mp), may go on",
    ("gf", Status.INACCURATE): "gf-mp (--engine gf-mp) or a smaller rtol (--rtol) gives a smaller error",
    ("gf-mp", Status.PRECISION_LOST): "more digits (--digits) go further",
    ("gf-mp", Status.SOLVER_FAILED): "more digits (--digits) or more steps (max_steps) may go on",
    ("gf-mp", Status.DIVERGED): "a smaller init scale may go on",
    ("gf-mp", Status.INACCURATE): "more digits (--digits) give a smaller error",
    ("gd", Status.DIVERGED): "a smaller step size (--lr) may go on",
    ("gd", Status.PRECISION_LOST): "gf or gf-mp (--engine gf-mp) follow the flow itself",
    ("gd", Status.INACCURATE): "a smaller step size (--lr), or gf / gf-mp for the flow itself",
}


@dataclass(frozen=True, eq=False)
class Point:
    """One recorded state.

    ``t`` (gradient flow) or ``step`` (gradient descent) locates it. ``product`` is the end-to-end matrix or
    tensor in float64; ``det_sign`` the sign of its det (square matrices; computed without cancellation, ``None``
    when unresolvable or undefined). ``loss_err`` and ``product_err`` are the engine's estimates of the absolute
    error of ``loss`` and of the entries of ``product`` (max over entries). ``hp`` holds high-precision values as
    decimal strings (``{"digits": D, "loss": "...", "product": [["..."]]}``) for engines that have them.
    ``tangent`` is the engine's own ``dW/dt`` at the recorded state (gradient-flow engines; the right-hand side it
    integrates, mapped to the end-to-end matrix), so that a claim can check it against the gradient-flow vector
    field computed independently (``properties.flow_check``).
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
    tangent: np.ndarray | None = None

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
        if self.tangent is not None:
            out["tangent"] = _arr(self.tangent)
        if with_factors and self.factors is not None:
            out["factors"] = [_arr(W) for W in self.factors]
        return out


@dataclass(frozen=True, eq=False)
class Trajectory:
    """Recorded points of one run, with what made it and how much to trust it.

    ``error_estimate`` is the engine's estimate of the largest error in the recorded end-to-end entries,
    relative to the largest entry at the same point (``max_p product_err_p / max|W_p|``).

    An error estimate is never silently wrong (both rules are applied when the record is made):

    - a run that reached its end (``completed``) or its budget (``budget``) but whose estimate does not resolve its
      points (relative error ``>=`` :data:`RESOLVED` = 1, i.e. not one correct digit of the end-to-end entries, or
      an estimate that is not a finite number) gets status ``inaccurate`` instead, which is not
      :attr:`Status.trustworthy`;
    - a run that failed (``diverged``, ``precision_lost``, ``solver_failed``) reports an unknown estimate as
      infinite: an ``error_estimate`` of 0 or NaN becomes ``inf``, and so do per-point errors of exactly 0 after
      the initial point (an integrated point is never exact; 0 there means "not estimated").

    A failed or inaccurate run's ``message`` ends with what would go on (:data:`ADVICE`: gf-mp, a smaller rtol,
    more digits, a smaller step size).

    Memory: a run keeps what it records, never the whole history. A recorded :class:`Point` of a d x d' problem
    holds its float64 end-to-end matrix, ``8 d d'`` bytes, plus ~40 bytes of scalars (loss, step or time, det
    sign, the two error estimates), and the factors (``8 sum_j d_j d_{j-1}`` bytes) where the engine keeps them
    (``gd``: the last point only). ``gd`` stores its records as arrays (``BatchResult``: ``8 d d' + 26`` bytes per
    recorded point per member, plus 8 bytes per recorded step); ``BatchResult.trajectory(b)`` copies one
    member's records into points. Measured for depth-3 100x100 completion with 5,000 observations: 200 steps
    recorded every 100 hold 3 x 80,026 bytes of records plus 240,000 bytes of final factors
    (tests/engines/test_gd_problems.py checks this accounting on a smaller problem). ``gf-mp`` points add their
    decimal strings (``hp``: about ``digits`` bytes per entry; on the raw path also every factor entry at the
    working digits, ``hp["factors_work"]``: 11 kB of a 29 kB JSON for 13 points of a depth-4 2x2 run at 40 working
    digits, ~133 kB estimated for 62 points of depth-8 2x2 at 60).
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

    def __post_init__(self) -> None:
        status, err, points = self.status, float(self.error_estimate), self.points
        if status.failed:
            if not (err > 0 and math.isfinite(err)) and not math.isinf(err):
                err = math.inf
            points = tuple(_unknown_as_inf(p, i) for i, p in enumerate(points))
        elif status.trustworthy and not _resolves(err, points):
            status = Status.INACCURATE
        message = self.message
        advice = ADVICE.get((self.engine, status))
        if status is Status.INACCURATE and self.status is not Status.INACCURATE:
            message = f"{message or self.status.message}; but {Status.INACCURATE.message}"
        if advice and advice not in (message or ""):
            message = f"{message or status.message}; {advice}"
        for name, value in (("status", status), ("error_estimate", err), ("points", points), ("message", message)):
            object.__setattr__(self, name, value)

    @property
    def final(self) -> Point:
        return self.points[-1]

    @property
    def det_sign_change(self) -> dict | None:
        """The first change of det sign between recorded points: ``{"from", "to", "after", "at"}``, ``after`` and
        ``at`` locating (``{"t": ...}`` or ``{"step": ...}``) the last point with the first sign and the first point
        with the other; None when the sign never changes (points whose sign is unresolved are skipped). Gradient
        flow preserves the sign; gradient descent with a finite step need not."""
        prev = None
        for p in self.points:
            if p.det_sign in (-1, 1):
                if prev is not None and p.det_sign != prev.det_sign:
                    return {"from": prev.det_sign, "to": p.det_sign, "after": _where(prev), "at": _where(p)}
                prev = p
        return None

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
            "det_sign_change": self.det_sign_change,
            "stats": self.stats,
            "seconds": round(float(self.seconds), 6),
            "points": [p.to_json(with_factors=with_factors) for p in self.points],
            "final": self.final.to_json(with_factors=with_factors) if self.points else None,
        }

    def to_dataframe(self):
        """The points as a pandas DataFrame, one column per end-to-end entry (pandas is an optional extra; see
        :func:`models.display.to_dataframe`)."""
        from models.display import to_dataframe
        return to_dataframe(self)

    def _repr_html_(self) -> str:
        """A small table and the loss and entries figure, for notebooks (:func:`models.display.to_html`)."""
        from models.display import to_html
        return to_html(self)


def _arr(a) -> list:
    a = np.asarray(a, dtype=float)
    if np.all(np.isfinite(a)):
        return a.tolist()
    return np.vectorize(_num, otypes=[object])(a).tolist()


def _where(p: Point) -> dict:
    return {"step": int(p.step)} if p.step is not None else {"t": _num(p.t)}


def _resolves(err: float, points) -> bool:
    """Whether an error estimate resolves the points (see :class:`Trajectory`)."""
    return math.isfinite(err) and err < RESOLVED


def _unknown_as_inf(p: Point, index: int) -> Point:
    at_start = index == 0 and (p.t == 0 or p.step == 0)
    if at_start:
        return p
    changes = {}
    if p.loss_err == 0.0:
        changes["loss_err"] = math.inf
    if p.product_err == 0.0:
        changes["product_err"] = math.inf
    return replace(p, **changes) if changes else p


def relative_error(points) -> float:
    """``max_p product_err_p / max|W_p|`` over points (the trajectory-level error estimate)."""
    worst = 0.0
    for p in points:
        scale = float(np.max(np.abs(p.product))) if np.size(p.product) else 0.0
        worst = max(worst, p.product_err / max(scale, np.finfo(float).tiny))
    return worst
