"""The engine contract.

Rules every engine follows:

1. ``run(problem, model, init, **spec)`` is the only public entry point; it validates the spec eagerly
   (raising :class:`~models.errors.InvalidInput` naming the field and value), times the run, and returns a
   :class:`~models.trajectory.Trajectory`. Subclasses implement ``_run(spec) -> Result`` only.
2. A run that diverges, overflows, loses precision or whose solver fails does not raise: it returns a trajectory
   whose ``status`` says so, holding only the points recorded while the run was still trustworthy.
3. Every point carries the engine's error estimate (``loss_err``, ``product_err``); the trajectory carries the
   relative ``error_estimate`` and the solver statistics.
4. Engines never change global numeric state (mpmath precision, torch default dtype, numpy error state).
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from ..errors import InvalidInput, require
from ..factorizations import CP, DeepMatrix
from ..inits import Init
from ..problems import MatrixProblem, TensorProblem
from ..trajectory import Point, Status, Trajectory, relative_error


@dataclass(frozen=True, eq=False)
class Spec:
    """What to simulate and when to stop.

    ``until_loss``: stop once the loss is at or below it. ``t_max``: stop at this time (gradient flow).
    ``steps``: number of steps (gradient descent). ``record``: number of recorded points per decade of loss
    (default) or an explicit tuple of times/steps in ``record_at``. ``wall_budget``: seconds before the run
    stops with status ``budget``.
    """

    problem: MatrixProblem | TensorProblem
    model: DeepMatrix | CP
    init: Init
    until_loss: float | None = None
    t_max: float | None = None
    steps: int | None = None
    per_decade: int = 4
    record_at: tuple[float, ...] | None = None
    wall_budget: float = 120.0
    options: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.until_loss is not None:
            v = float(self.until_loss)
            require(math.isfinite(v) and v > 0, f"until_loss must be a positive number, got {self.until_loss!r}")
        if self.t_max is not None:
            v = float(self.t_max)
            require(math.isfinite(v) and v > 0, f"t_max must be a positive number, got {self.t_max!r}")
        if self.steps is not None:
            require(isinstance(self.steps, int) and self.steps >= 0, f"steps must be an integer >= 0, got {self.steps!r}")
        require(self.per_decade >= 1, f"per_decade must be >= 1, got {self.per_decade!r}")
        require(float(self.wall_budget) > 0, f"wall_budget must be positive, got {self.wall_budget!r}")
        if isinstance(self.model, DeepMatrix):
            require(isinstance(self.problem, MatrixProblem), "a deep matrix factorization needs a matrix problem")
            require(self.model.shape == self.problem.shape,
                    f"model shape {self.model.shape} differs from problem shape {self.problem.shape}")
        elif isinstance(self.model, CP):
            require(isinstance(self.problem, TensorProblem), "a CP factorization needs a tensor problem")
            require(self.model.dims == self.problem.dims,
                    f"model dims {self.model.dims} differ from problem dims {self.problem.dims}")
        else:
            raise InvalidInput(f"unknown model {self.model!r}")
        object.__setattr__(self.init, "factors", tuple(self.model.check(list(self.init.factors))))


@dataclass
class Result:
    """What ``_run`` hands back to :meth:`AbstractEngine.run`."""

    points: list[Point]
    status: Status
    message: str = ""
    precision: str = "float64"
    tolerances: dict = field(default_factory=dict)
    stats: dict = field(default_factory=dict)
    error_estimate: float | None = None


class AbstractEngine(ABC):
    """Base of every dynamics engine; see the module docstring for the contract."""

    name: str = "abstract"

    def run(self, problem, model, init: Init, **spec) -> Trajectory:
        options = spec.pop("options", {})
        s = Spec(problem, model, init, options=options, **spec)
        start = time.perf_counter()
        res = self._run(s)
        seconds = time.perf_counter() - start
        require(len(res.points) > 0 or res.status is not Status.COMPLETED, "engine returned no points")
        err = res.error_estimate if res.error_estimate is not None else relative_error(res.points)
        settings = {
            "engine": self.name,
            "problem": problem.describe(),
            "model": describe_model(model),
            "init": init.describe(),
            "until_loss": s.until_loss,
            "t_max": s.t_max,
            "steps": s.steps,
            **self.describe_options(),
        }
        return Trajectory(self.name, settings, tuple(res.points), res.status, res.message or res.status.message, err,
                          res.precision, res.tolerances, res.stats, seconds)

    def describe_options(self) -> dict:
        """Engine options recorded in ``Trajectory.settings``."""
        return {}

    @abstractmethod
    def _run(self, spec: Spec) -> Result:
        """Integrate or iterate; see the module docstring."""


def describe_model(model) -> dict:
    if isinstance(model, DeepMatrix):
        return {"kind": "deep_matrix", "depth": model.depth, "shape": list(model.shape), "widths": list(model.widths)}
    return {"kind": "cp", "dims": list(model.dims), "rank": model.rank}
