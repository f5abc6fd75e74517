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

What the base class owns (scipy's ``OdeSolver.step`` / ``_step_impl`` split is the model): :meth:`AbstractEngine.run`
validates the spec (:class:`Spec`), opens the run's :class:`Budget` (wall clock from ``wall_budget``, the engine's
``max_steps``), calls the engine's private ``_advance(spec, budget)``, and packages the result with one ``stats``
schema (:data:`STATS_KEYS` at top level for every engine, the error-estimate run's counters under ``error_run``).
The stop rule's pieces are here too: :class:`Stop` (what a budget, a horizon or a failure raises inside an
engine), :data:`T_HORIZON`, the loss levels recorded per decade (:func:`loss_levels`), and the companion-run
error estimate (:data:`SAFETY` times the running maximum of the difference, :func:`running_error`; an engine
whose companion is another instance of itself says so with :meth:`AbstractEngine.companion`, and
:meth:`AbstractEngine.run_pair` runs both).
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np

from ..errors import InvalidInput, require
from ..factorizations import CP, DeepMatrix
from ..inits import Init
from ..problems import MatrixProblem, TensorProblem
from ..trajectory import Point, Status, Trajectory, relative_error


@dataclass(frozen=True, eq=False)
class Spec:
    """What to simulate and when to stop.

    ``until_loss``: stop once the loss is at or below it. ``t_max``: stop at this time (gradient flow).
    ``steps``: number of steps (gradient descent). ``per_decade``: number of recorded points per decade of loss
    (the default recording), or an explicit tuple of times/steps in ``record_at``, or every ``record_every``
    steps (step engines). ``wall_budget``: seconds before the run stops with status ``budget`` (``math.inf``:
    none).
    """

    problem: MatrixProblem | TensorProblem
    model: DeepMatrix | CP
    init: Init
    until_loss: float | None = None
    t_max: float | None = None
    steps: int | None = None
    per_decade: int = 4
    record_at: tuple[float, ...] | None = None
    record_every: int | None = None
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
        if self.record_every is not None:
            require(isinstance(self.record_every, (int, np.integer)) and not isinstance(self.record_every, bool)
                    and self.record_every >= 1, f"record_every must be a positive integer, got {self.record_every!r}")
        require(float(self.wall_budget) > 0, f"wall_budget must be positive, got {self.wall_budget!r}")
        check_pair(self.problem, self.model)
        checked = tuple(self.model.check(list(self.init.factors)))
        if any(a is not b for a, b in zip(checked, self.init.factors)):  # a new Init, never a changed one
            object.__setattr__(self, "init", Init(checked, self.init.kind, dict(self.init.params)))


def check_pair(problem, model) -> None:
    """That ``model`` fits ``problem``: a deep matrix factorization of the problem's shape on a matrix problem, or
    a CP factorization of its dims on a tensor problem."""
    if isinstance(model, DeepMatrix):
        require(isinstance(problem, MatrixProblem), "a deep matrix factorization needs a matrix problem")
        require(model.shape == problem.shape, f"model shape {model.shape} differs from problem shape {problem.shape}")
    elif isinstance(model, CP):
        require(isinstance(problem, TensorProblem), "a CP factorization needs a tensor problem")
        require(model.dims == problem.dims, f"model dims {model.dims} differ from problem dims {problem.dims}")
    else:
        raise InvalidInput(f"unknown model {model!r}")


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


#: Without ``t_max`` a gradient flow ends at this time at the latest (float64 log-time is still exact there).
#: Reaching it means the loss stalls above ``until_loss``: the flow converges to a positive loss, or too slowly.
T_HORIZON = 1e100

#: The companion-run error estimate is SAFETY times the running maximum of the main-companion difference.
SAFETY = 10.0

#: Keys every trajectory's ``stats`` has at top level (None where an engine does not count that thing):
#: accepted steps (iterations for ``gd``), rejected steps, right-hand side evaluations, Jacobians, LU
#: factorizations, and the path taken. The error-estimate run's counters, where there is one, sit under
#: ``error_run`` with the same keys.
STATS_KEYS = ("steps", "rejected", "nfev", "njev", "nlu", "path")


class Stop(Exception):
    """Raised inside an engine to end a run with ``status`` (budget, horizon, divergence, lost precision, solver
    failure); the engine keeps the points recorded so far."""

    def __init__(self, status: Status, message: str):
        super().__init__(message)
        self.status, self.message = status, message


class Budget:
    """The limits of one run: ``wall`` seconds from ``start`` and at most ``max_steps`` accepted steps (None: no
    step limit). :meth:`check` raises :class:`Stop` with ``Status.BUDGET`` when either is spent."""

    def __init__(self, wall: float, max_steps: int | None = None, start: float | None = None):
        self.wall, self.max_steps = float(wall), max_steps
        self.start = time.perf_counter() if start is None else start

    @property
    def deadline(self) -> float:
        return self.start + self.wall

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> float:
        return self.deadline - time.perf_counter()

    def check(self, steps: int) -> None:
        if self.max_steps is not None and steps >= self.max_steps:
            raise Stop(Status.BUDGET, f"stopped after max_steps={self.max_steps} steps")
        if time.perf_counter() - self.start > self.wall:
            raise Stop(Status.BUDGET, f"stopped at the wall-clock budget of {self.wall:g} s")


def horizon_stop(loss: float) -> Stop:
    """The stop of a flow that reached :data:`T_HORIZON` with ``loss`` still above ``until_loss``."""
    return Stop(Status.BUDGET, f"reached the time horizon t = {T_HORIZON:.0e} with loss {float(loss):.3g} above "
                               f"until_loss: the flow converges to a positive loss, or too slowly")


def loss_levels(loss0: float, per_decade: int, until_loss: float | None) -> list[float]:
    """The loss levels ``10^(j/per_decade)`` strictly between ``until_loss`` (or 0) and ``loss0``, descending:
    the points a run records on its way down (each the first time the loss falls to it)."""
    k = per_decade
    top = math.floor(math.log10(max(loss0, 1e-300)) * k)
    stop = until_loss or 0.0
    levels, j = [], top
    while True:
        lv = 10.0 ** (j / k)
        if lv < loss0 and lv > stop:
            levels.append(lv)
        if lv <= max(stop, 1e-300) or j < -400 * k:
            break
        j -= 1
    return levels


def rounding_loss_error(loss_scale: float, residuals, a, perr, eps: float, loss):
    """The gradient-descent engines' rounding bound on a recorded loss: ``loss_scale sum_i (2 |r_i| a_i perr +
    (a_i perr)^2) + 2 m eps loss``, ``a_i`` the l1 norm of measurement ``i`` (1 for an entry), ``perr`` the bound
    on the end-to-end entries. ``residuals`` is ``(m,)`` or ``(m, B)`` (then ``perr`` and ``loss`` are per member
    and the result is ``(B,)``)."""
    r = np.asarray(residuals)
    a = np.asarray(a, dtype=float)
    if r.ndim == 2 and a.ndim == 1:
        a = a[:, None]
    with np.errstate(all="ignore"):
        return loss_scale * (2.0 * np.abs(r) * a * perr + (a * perr) ** 2).sum(axis=0) + 2.0 * r.shape[0] * eps * loss


def running_error(main_vals, comp_vals, safety: float = SAFETY) -> np.ndarray:
    """``safety x`` the running maximum of ``|main - comp|`` along the points (axis 0; elementwise over trailing
    axes): the companion-run error estimate of a quantity recorded by a main run and its companion."""
    d = np.abs(np.asarray(main_vals, dtype=float) - np.asarray(comp_vals, dtype=float))
    return safety * np.maximum.accumulate(d, axis=0)


class Batch(ABC):
    """What :meth:`AbstractEngine.run` returns for a batch of initializations: B >= 1 trajectories run together
    (one record type whatever B). ``batch[b]`` (or :meth:`trajectory`) is member ``b`` as a
    :class:`~models.trajectory.Trajectory`, exactly what a run of that member alone returns; ``status`` (B,)
    holds :class:`~models.trajectory.Status` value names; ``final_factors`` (one ``(B, ...)`` array per layer or
    CP mode), ``final_loss`` (B,) and ``final_product`` (B, ...) describe each member's last trusted state.
    Engines that batch natively (``gd``) add their own array views (see :class:`models.engines.gd.BatchResult`)."""

    status: np.ndarray
    final_factors: list
    final_loss: np.ndarray
    final_product: np.ndarray

    @property
    def B(self) -> int:
        return int(self.status.shape[0])

    def __len__(self) -> int:
        return self.B

    def __getitem__(self, b: int) -> Trajectory:
        return self.trajectory(b)

    def __iter__(self):
        return (self.trajectory(b) for b in range(self.B))

    @abstractmethod
    def trajectory(self, b: int) -> Trajectory:
        """Member ``b`` as a trajectory."""


class TrajectoryBatch(Batch):
    """A :class:`Batch` of trajectories run one after another (engines that do not batch natively)."""

    def __init__(self, trajectories):
        self.trajectories = tuple(trajectories)
        self.status = np.array([t.status.value for t in self.trajectories])
        finals = [t.final for t in self.trajectories]
        self.final_loss = np.array([p.loss for p in finals], dtype=float)
        self.final_product = np.stack([np.asarray(p.product, dtype=float) for p in finals])
        if all(p.factors is not None for p in finals):
            self.final_factors = [np.stack(fs) for fs in zip(*(p.factors for p in finals))]
        else:  # a path that integrates the end-to-end matrix keeps no factors
            self.final_factors = None

    def trajectory(self, b: int) -> Trajectory:
        require(isinstance(b, (int, np.integer)) and 0 <= b < self.B, f"member index must be in [0, {self.B}), got {b!r}")
        return self.trajectories[int(b)]


def check_batch(problem, model, batch) -> list[np.ndarray]:
    """The members of a batch as one ``(B, *shape)`` float64 array per layer (or CP mode). ``batch``: a list of
    :class:`~models.inits.Init`, or already one ``(B, ...)`` array per layer; every array is checked (shapes,
    finite entries, the same B >= 1 throughout)."""
    check_pair(problem, model)
    if isinstance(batch, (list, tuple)) and batch and all(isinstance(i, Init) for i in batch):
        members = [model.check(list(i.factors)) for i in batch]
        return [np.stack([m[j] for m in members]) for j in range(len(members[0]))]
    if isinstance(model, DeepMatrix):
        shapes, what = model.layer_shapes, "W"
    else:
        shapes, what = [(d, model.rank) for d in model.dims], "U"
    require(isinstance(batch, (list, tuple)) and len(batch) == len(shapes),
            f"a batch must be a list of Init or of {len(shapes)} arrays (B, ...), got "
            f"{type(batch).__name__} of length {len(batch) if hasattr(batch, '__len__') else '?'}")
    out = []
    B = None
    for j, (F, shp) in enumerate(zip(batch, shapes), start=1):
        F = np.asarray(F, dtype=float)
        require(F.ndim == 3 and F.shape[1:] == tuple(shp),
                f"factor {what}_{j} batch must have shape (B, {shp[0]}, {shp[1]}), got {F.shape}")
        B = F.shape[0] if B is None else B
        require(F.shape[0] == B and B >= 1, f"factor {what}_{j} batch has {F.shape[0]} members, expected {B}")
        require(bool(np.all(np.isfinite(F))), f"factor {what}_{j} batch has non-finite entries")
        out.append(F)
    return out


class AbstractEngine(ABC):
    """Base of every dynamics engine; see the module docstring for the contract."""

    name: str = "abstract"
    #: accepted steps per run before ``Status.BUDGET`` (engines that count steps set it in ``__init__``)
    max_steps: int | None = None

    #: whether the engine runs a batch in one go (:meth:`_advance_batch`); otherwise members run one by one
    batched: bool = False
    # What the engine declares, so that commands need no engine special cases:
    #: its constructor options (keyword names)
    options: tuple[str, ...] = ()
    #: the Spec fields that can end a run
    stops_by: tuple[str, ...] = ("until_loss", "t_max")
    #: the recording rules it honours besides ``per_decade`` (``record_at``, ``record_every``)
    records_by: tuple[str, ...] = ("record_at",)
    #: what a point's position counts: "time" (``Point.t``) or "step" (``Point.step``; ``record_at`` then holds
    #: step numbers)
    clock: str = "time"
    #: the ``until_loss`` a run is given when the caller names no stop (None: a stop must be named)
    default_until_loss: float | None = None
    #: the model kinds it runs ("deep": deep matrix factorizations, "cp": CP tensor factorizations)
    models: tuple[str, ...] = ("deep", "cp")
    #: the arithmetic its points are computed in, as the report names it ("float64", "mpmath"; a ``digits``
    #: option adds the digits)
    arithmetic: str = "float64"

    def run(self, problem, model, init, **spec):
        """The one public entry point. ``init``: an :class:`~models.inits.Init` (returns a
        :class:`~models.trajectory.Trajectory`), or a batch, a list of ``Init`` or one ``(B, ...)`` array per
        layer (returns a :class:`Batch`, whatever B; member ``b`` is what a run of it alone returns). ``spec``:
        the fields of :class:`Spec` (``until_loss``, ``t_max``, ``steps``, ``per_decade``, ``record_at``,
        ``record_every``, ``wall_budget``, ``options``)."""
        options = spec.pop("options", {})
        require(spec.get("record_every") is None or "record_every" in self.records_by,
                f"record_every applies to engines that count steps; {self.name} takes record_at")
        if not isinstance(init, Init):
            return self._run_batch(problem, model, init, options, spec)
        s = Spec(problem, model, init, options=options, **spec)
        start = time.perf_counter()
        res = self._advance(s, Budget(float(s.wall_budget), self.max_steps, start))
        seconds = time.perf_counter() - start
        require(len(res.points) > 0 or res.status is not Status.COMPLETED, "engine returned no points")
        err = res.error_estimate if res.error_estimate is not None else relative_error(res.points)
        return Trajectory(self.name, self.settings(s, init.describe()), tuple(res.points), res.status,
                          res.message or res.status.message, err, res.precision, res.tolerances,
                          stats_schema(res.stats), seconds)

    def _run_batch(self, problem, model, batch, options: dict, spec: dict) -> Batch:
        factors = check_batch(problem, model, batch)
        B = factors[0].shape[0]
        if not self.batched:
            members = batch if all(isinstance(i, Init) for i in batch) else \
                [Init(tuple(F[b] for F in factors), "batch", {"member": b}) for b in range(B)]
            return TrajectoryBatch(self.run(problem, model, m, options=dict(options), **spec) for m in members)
        s = Spec(problem, model, Init(tuple(F[0] for F in factors), "batch"), options=options, **spec)
        start = time.perf_counter()
        return self._advance_batch(s, factors, Budget(float(s.wall_budget), self.max_steps, start),
                                   self.settings(s, {"kind": "batch", "params": {"B": B}}))

    def settings(self, s: Spec, init: dict) -> dict:
        """What a run records in ``Trajectory.settings``."""
        return {"engine": self.name, "problem": s.problem.describe(), "model": describe_model(s.model), "init": init,
                "until_loss": s.until_loss, "t_max": s.t_max, "steps": s.steps, **self.describe_options()}

    def _advance_batch(self, spec: Spec, factors: list[np.ndarray], budget: Budget, settings: dict) -> Batch:
        """Run every member of ``factors`` (one ``(B, ...)`` array per layer) together (engines with ``batched``)."""
        raise NotImplementedError

    def describe_options(self) -> dict:
        """Engine options recorded in ``Trajectory.settings``."""
        return {}

    def companion(self) -> "AbstractEngine | None":
        """The engine of this engine's error-estimate run with no estimate of its own (None: it has none)."""
        return None

    def without_estimate(self) -> "AbstractEngine":
        """This engine with its error-estimate run switched off (its points then carry infinite errors)."""
        raise InvalidInput(f"engine {self.name!r} has no error-estimate run to switch off")

    def run_pair(self, problem, model, init: Init, **spec) -> tuple[Trajectory, Trajectory]:
        """The main run (without its own estimate) and its companion on the same spec, for estimating the error
        of quantities the engine does not record (:func:`running_error` on their values)."""
        comp = self.companion()
        require(comp is not None, f"engine {self.name!r} has no companion run")
        return self.without_estimate().run(problem, model, init, **spec), comp.run(problem, model, init, **spec)

    @abstractmethod
    def _advance(self, spec: Spec, budget: Budget) -> Result:
        """Integrate or iterate within ``budget``; see the module docstring."""


def stats_schema(stats: dict) -> dict:
    """``stats`` with every key of :data:`STATS_KEYS` at top level (None where the engine has no such count), and
    likewise inside ``error_run``."""
    out = {k: stats.get(k) for k in STATS_KEYS}
    out.update(stats)
    if isinstance(out.get("error_run"), dict):
        out["error_run"] = {**{k: out["error_run"].get(k) for k in STATS_KEYS}, **out["error_run"]}
    return out


def describe_model(model) -> dict:
    if isinstance(model, DeepMatrix):
        return {"kind": "deep_matrix", "depth": model.depth, "shape": list(model.shape), "widths": list(model.widths)}
    return {"kind": "cp", "dims": list(model.dims), "rank": model.rank}
