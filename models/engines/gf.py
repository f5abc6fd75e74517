"""``gf``: gradient flow in float64 with scipy's BDF, in log-time ``tau = log(1 + t)``.

Two paths, chosen per run (option ``path="auto"``):

- **chart** (balanced, full-width, 2x2 deep matrix factorization with a nonsingular start): the exact 4-unknown
  end-to-end flow in signed SVD/log coordinates (:mod:`models.chart`), with an exact complex-step Jacobian. The
  det sign is kept by construction, the tiny singular value is stored through its logarithm and the residuals
  are formed without cancellation, so the trajectory stays right down to loss ~1e-14 for every depth. When the
  start has (nearly) equal singular values (``alpha * I``) the chart is singular there, so the raw factors are
  integrated first until the singular values have separated.
- **e2e** (balanced, full-width deep matrix factorization of any other shape, depth >= 2): the end-to-end flow
  of Arora, Cohen & Hazan on ``d d'`` unknowns (:mod:`models.engines.e2e_flow`), with a structured Jacobian
  (dense up to 256 unknowns, matrix-free conjugate gradients above).
  Path ``auto`` moves a square run to the block-SVD chart of :mod:`models.engines.svd_flow` (``e2e-then-svd``)
  once ``s_min / s_max`` falls below ``svd_flow.SWITCH_RATIO`` (1e-6), where stored entries of ``W`` start to lose
  the small singular values and, at ``1e3 eps``, the det sign; path ``e2e`` keeps the stored-W flow and its
  ``precision_lost`` stop.
- **svd** (``path="svd"``, balanced full-width deep factorization of full rank, up to
  ``svd_flow.MAX_UNKNOWNS`` unknowns): that chart from the start.
- **linear** (depth 1, the plain linear model): the closed-form solution of the linear flow
  (:mod:`models.engines.linear_flow`), exact up to rounding.
- **raw** (everything else: unbalanced inits, other shapes, CP tensors): the factors themselves, with an exact
  batched complex-step Jacobian below ``RAW_KRYLOV_MIN`` (500) unknowns (``RAW_KRYLOV_MIN_CP``, 1000, for CP); from
  there on, matrix-free: BDF's Newton systems ``(I + a H) x = b`` (``H`` the loss's Hessian in the factors, symmetric
  and indefinite near saddles) are solved by MINRES on complex-step Hessian-vector products (one complex gradient
  each, exact to rounding; :mod:`models.engines.krylov`), and the run's stats count ``jvps``, ``krylov_solves``,
  ``krylov_iters``, ``krylov_max_iters``, ``krylov_failures`` and ``jacobians`` (the frozen operators; ``raw_solver``
  is ``"krylov"``). A solve whose true residual misses its tolerance is a failed Newton iteration for BDF (it freezes
  a fresh operator and, failing again, halves the step). For square matrix problems the det sign is the product of
  the factors' det signs, and the run stops with ``Status.PRECISION_LOST`` as soon as ``sigma_min(W) / sigma_max(W)``
  falls below ``1e3 * eps``: from there float64 rounding can flip the det (catalog RC20-Pitfall-Depth2), and the
  points after it would describe the wrong trajectory. A det sign change within one step from a ratio below
  ``sqrt(1e3 eps)`` (a decaying det that jumped over that band) stops it the same way.

Recording: the start, the first time the loss falls below each level ``10^(-k/per_decade)`` (located on the
solver's dense output), explicit ``record_at`` times, and the end (``until_loss`` located exactly, or ``t_max``).

Error estimate: the same run is repeated at a tolerance ``loose`` times looser (default 10; ``loose`` times
tighter where the looser tolerance would exceed ``COMPANION_RTOL_MAX`` = 1e-3); each point is
compared with the looser run's point of the same event (the same loss level, or the same time for points recorded
at times), and ``SAFETY`` (10) times the running maximum of the difference is reported as ``product_err`` /
``loss_err``. A point recorded at a loss level therefore carries the error of the *path* through that loss, not
of the time at which it is reached (see :func:`_with_errors` for why, and how it was calibrated). The companion
also runs after a run that lost precision, diverged or failed (the points it kept are evidence). A point the
companion did not reach, and every point of a run with ``loose=0``, carries ``loss_err = product_err = inf``: an
error nobody estimated is unknown, never zero.
"""

from __future__ import annotations

import math
import time

import numpy as np
from scipy.integrate import BDF
from scipy.optimize import brentq

from .. import chart
from ..errors import require
from ..factorizations import (CP, DeepMatrix, cp_factor_grads, cp_tensor, factor_grads, product)
from ..inits import is_balanced
from ..trajectory import Point, Status
from . import e2e_flow, krylov, svd_flow
from .base import SAFETY, T_HORIZON, AbstractEngine, Budget, Result, Spec, Stop, horizon_stop, loss_levels
from .linear_flow import run_linear

EPS = float(np.finfo(float).eps)
PRECISION_FLOOR = 1e3 * EPS
PATHS = ("auto", "chart", "e2e", "svd", "raw")
#: the e2e path restarts BDF with atol 1e-14 x the largest entry once that entry grows past this factor
E2E_ATOL_REGROW = 10.0
#: the raw path solves BDF's Newton systems matrix-free (MINRES on complex-step Hessian-vector products,
#: :class:`models.engines.krylov.HessianJacobian`) from this many unknowns on (deep matrix factorizations;
#: ``RAW_KRYLOV_MIN_CP`` for CP); below it, a dense complex-step Jacobian and LU (exact, and faster there).
#: Measured (depth 3, Gaussian init 0.3, to loss 1e-10, no error-estimate run, MINRES_RTOL 1e-8, one thread,
#: loaded 2-core machine; CPU seconds dense / Krylov): 10x10 (300 unknowns) 0.30 / 0.60, 13x13 (507) 0.64 / 0.69,
#: 15x15 (675) 1.24 / 0.92, 20x16 (832) 2.33 / 1.12, 30x30 (2,700; to the precision stop) 5.6 / 0.08. CP order 3
#: (a CP gradient costs more per vector): dims 10, R = 20 (600) 14.8 / 25.1; dims 15, R = 30 (1,350) 93 s CPU
#: to loss 1e-9 in a 150 s wall budget / 134 s CPU to 1e-10.
RAW_KRYLOV_MIN = 500
RAW_KRYLOV_MIN_CP = 1000
#: the ``raw_solver`` option's values (see GradientFlow)
RAW_SOLVERS = ("auto", "dense", "krylov")
# Without t_max a run ends at base.T_HORIZON at the latest (float64 log-time is still exact there; beyond it
# ``e^tau`` approaches overflow), e.g. RC20 with eps != 0 and w11 running off to the wrong side.


class GradientFlow(AbstractEngine):
    """Float64 gradient flow (see the module docstring).

    Options: ``rtol`` (BDF relative tolerance, default 1e-10), ``atol`` (absolute, default 1e-14 on the chart's
    O(1) angles and log singular values; 1e-14 times the init scale on raw factors), ``path`` ("auto", "chart",
    "e2e", "svd", "raw"), ``loose`` (tolerance ratio of the error-estimate run; 0 disables it, and every point's error is then
    infinite), ``max_steps``, ``raw_solver`` (how BDF's Newton systems are solved on the raw factors: "auto", by
    size, see ``RAW_KRYLOV_MIN``; "dense", complex-step Jacobian and LU; "krylov", MINRES on Hessian-vector
    products: the bench and the cross-checks run either at any size).
    """

    name = "gf"
    options = ("rtol", "atol", "path", "loose", "max_steps", "raw_solver")
    default_until_loss = 1e-12

    def __init__(self, rtol: float = 1e-10, atol: float | None = None, path: str = "auto", loose: float = 10.0,
                 max_steps: int = 200_000, raw_solver: str = "auto"):
        require(isinstance(rtol, (int, float)) and 1e-14 <= rtol < 1e-2, f"rtol must be in [1e-14, 1e-2), got {rtol!r}")
        require(atol is None or (isinstance(atol, (int, float)) and atol > 0), f"atol must be positive, got {atol!r}")
        require(path in PATHS, f"path must be one of {PATHS}, got {path!r}")
        require(loose == 0 or loose > 1, f"loose must be 0 (no error estimate) or > 1, got {loose!r}")
        require(isinstance(max_steps, int) and max_steps > 0, f"max_steps must be a positive integer, got {max_steps!r}")
        require(raw_solver in RAW_SOLVERS, f"raw_solver must be one of {RAW_SOLVERS}, got {raw_solver!r}")
        self.rtol, self.atol, self.path, self.loose, self.max_steps = float(rtol), atol, path, float(loose), max_steps
        self.raw_solver = raw_solver

    def describe_options(self) -> dict:
        out = {"rtol": self.rtol, "atol": self.atol, "path": self.path, "loose": self.loose}
        if self.raw_solver != "auto":       # the records of the default engine keep their description
            out["raw_solver"] = self.raw_solver
        return out

    # ------------------------------------------------------------------------------------------------------
    def companion(self) -> "GradientFlow":
        """The error-estimate run: ``loose`` times looser (tighter where that would pass ``COMPANION_RTOL_MAX``),
        without an estimate of its own."""
        require(self.loose > 0, "loose=0: this gf engine has no companion run")
        ratio = self.loose if self.rtol * self.loose <= COMPANION_RTOL_MAX else 1.0 / self.loose
        return self._variant(self.rtol * ratio, None if self.atol is None else self.atol * ratio, 0.0)

    def without_estimate(self) -> "GradientFlow":
        return self._variant(self.rtol, self.atol, 0.0)

    def _variant(self, rtol, atol, loose) -> "GradientFlow":
        # not through __init__: a companion's tolerance may lie outside the range offered to users
        eng = object.__new__(GradientFlow)
        eng.rtol, eng.atol, eng.path, eng.loose, eng.max_steps = float(rtol), atol, self.path, float(loose), self.max_steps
        eng.raw_solver = self.raw_solver
        return eng

    def _advance(self, spec: Spec, budget: Budget) -> Result:
        require(spec.until_loss is not None or spec.t_max is not None or spec.record_at,
                "gradient flow needs until_loss, t_max or record_at to know when to stop")
        if isinstance(spec.model, DeepMatrix) and spec.model.depth == 1 and self.path != "raw":
            return run_linear(spec)  # depth 1: the linear model's closed form (models.engines.linear_flow)
        use_chart = self._chart_applies(spec)
        if not use_chart and self.path in ("auto", "e2e", "svd"):
            ok = e2e_flow.applies(spec.problem, spec.model, spec.init.factors)
            require(ok or self.path == "auto", f"the {self.path} path needs a balanced, full-width deep factorization "
                                               "of depth >= 2 on a matrix problem")
            if self.path == "svd":
                require(svd_flow.unknowns(spec.model.shape) <= svd_flow.MAX_UNKNOWNS,
                        f"the svd path takes at most {svd_flow.MAX_UNKNOWNS} unknowns (shape {spec.model.shape} has "
                        f"{svd_flow.unknowns(spec.model.shape)})")
                require(np.linalg.matrix_rank(product(spec.init.factors)) == min(spec.model.shape),
                        "the svd path needs an end-to-end matrix of full rank at the start")
            use_chart = {"svd": "svd", "e2e": "e2e", "auto": "e2e-svd"}[self.path] if ok else False
        main = _Integration(spec, use_chart, self.rtol, self.atol, budget, raw_solver=self.raw_solver)
        main.run()
        points = main.points
        stats = dict(main.stats)
        if not self.loose:
            # no companion run: nothing estimates the error, so it is unknown, i.e. infinite (never zero)
            points = [_unknown_error(p) for p in points]
            stats["error_run_note"] = "loose=0: no companion run, every point's error is unknown (infinite)"
        elif points:
            # also on an untrustworthy run (precision lost, diverged, solver failed): the points it kept are valid
            # and a claim may use them, so they need an estimate as much as any other
            taus = [math.log1p(p.t) for p in points]
            # the companion is `loose` times looser; where that would pass the cap COMPANION_RTOL_MAX it is `loose`
            # times tighter instead (capping it at the main run's own tolerance made the two runs identical and
            # every error estimate exactly 0)
            c = self.companion()
            comp = _Integration(spec, use_chart, c.rtol, c.atol,
                                Budget(max(spec.wall_budget - main.elapsed, 1.0), c.max_steps),
                                eval_taus=taus, raw_solver=c.raw_solver)
            comp.run()
            points, unmatched = _with_errors(main, comp)
            stats["error_run"] = {"rtol": comp.rtol, "status": comp.status.value, **comp.stats}
            if unmatched:
                stats["error_run_note"] = (f"the looser run ended early: {unmatched} point(s) carry no error "
                                           "estimate (infinite)")
        return Result(points, main.status, main.message, "float64",
                      {"rtol": self.rtol, "atol": main.atol_used, "loose": self.loose}, stats)

    def _chart_applies(self, spec: Spec) -> bool:
        if self.path in ("raw", "e2e", "svd"):
            return False
        ok = (isinstance(spec.model, DeepMatrix) and spec.model.shape == (2, 2) and spec.model.full_width
              and spec.model.depth >= 2
              and is_balanced(spec.init.factors) and abs(np.linalg.det(product(spec.init.factors))) > 0)
        require(ok or self.path != "chart", "the chart path needs a balanced, full-width, 2x2 deep factorization "
                                           "with a nonsingular end-to-end matrix")
        return ok


#: the loosest tolerance a companion run is given; above it the companion runs tighter than the main run
COMPANION_RTOL_MAX = 1e-3
LOSS_FLOOR = 64 * EPS  # relative: the rounding of a loss evaluated from a state, and of locating a level


def _unknown_error(p: Point) -> Point:
    return Point(p.t, p.step, p.loss, p.product, p.det_sign, p.factors, math.inf, math.inf, p.hp, p.tangent)


def _with_errors(main: "_Integration", comp: "_Integration") -> tuple[list[Point], int]:
    """Attach error estimates from the looser companion run ``comp``; also return the number of points left
    without one (the companion ended before reaching them: their errors are infinite).

    Pairing. Each point is compared with the companion's point *of the same event*: a loss level (and the final
    ``until_loss``) with the companion's state at that same loss, a time (the start, ``record_at``, ``t_max``)
    with its state at that time. So the error of a point recorded at a loss level is the distance of its state
    from the true path *as a curve* (the state where the exact flow has that loss), not from the exact state at
    the same time: after a long plateau a relative error of 1e-10 in the escape time moves the state at a fixed
    time by O(1) while the path itself is accurate, and every claim about states along the path (bounds in
    terms of the loss, limits) needs the path. Points recorded at times carry the same-time difference.

    Size. The raw signals are the differences ``max|W - W_comp|`` and ``|loss - loss_comp| / loss``. Measured
    against a much tighter run, the difference is typically 5-10x the true error of the main run, but an isolated
    point can show a near-zero difference (the two runs' errors happen to cancel there) and the last point of a
    run (read off a long final step) can err as much as the difference. So the estimate is ``SAFETY`` times the
    running maximum of the difference over the points so far (the global error accumulates along the flow):
    absolute for the end-to-end matrix, relative for the loss (the loss falls by many orders of magnitude and its
    error falls with it), with a floor of ``LOSS_FLOOR`` (rounding). Calibration: at rtol 1e-10 against rtol 1e-13,
    paired the same way, over 24 trajectories (depths 2, 3, 4, 6; seeds 0-2; init scales 1 and 0.1; loss 1 to
    1e-11; 548 points), the true error was at most 0.25x the estimate for the matrix (median 0.002) and 0.35x
    for the loss (median 0.04).
    """
    by_event = {ev: p for ev, p in zip(comp.events, comp.points)}
    by_time = dict(zip(comp.eval_taus_done, comp.eval_points))
    out, unmatched = [], 0
    dw = rl = 0.0
    for ev, p in zip(main.events, main.points):
        q = by_event.get(ev) if ev[0] in ("level", "until_loss") else None
        if q is None:
            q = by_time.get(math.log1p(p.t)) if ev[0] != "start" else comp.points[0]
        if q is not None:
            dw = max(dw, float(np.max(np.abs(p.product - q.product))))
            if p.loss > 0:
                rl = max(rl, abs(p.loss - q.loss) / p.loss)
            perr, lerr = SAFETY * dw, min(max(SAFETY * rl, LOSS_FLOOR), 1.0) * abs(p.loss)
        else:
            unmatched += 1
            perr = lerr = math.inf
        out.append(Point(p.t, None, p.loss, p.product, p.det_sign, p.factors, lerr, perr, None, p.tangent))
    return out, unmatched


def _guarded(fun):
    """``fun`` returning NaNs instead of raising on overflow: BDF then rejects the trial state and shrinks the step
    (Newton iterates of a stiff exp-chart can overshoot far outside the range where ``exp`` is finite)."""
    def wrapped(tau, y):
        try:
            with np.errstate(over="ignore", invalid="ignore"):
                return fun(tau, y)
        except (OverflowError, ZeroDivisionError, ValueError, np.linalg.LinAlgError):
            return np.full(np.shape(y), np.nan)
    return wrapped


class RawField:
    """The loss of a deep matrix or CP factorization as a function of its flattened raw factors ``y`` (the ``gf``
    raw path's state, factors concatenated first layer first, each row-major): its gradient, its Hessian times a
    vector and its dense Hessian, the last two by complex steps (exact to rounding; the problems' gradients take
    complex input). The raw flow is ``dy/dtau = -e^tau grad(y)``, its Jacobian ``-e^tau hessian(y)``."""

    def __init__(self, problem, model, factors):
        self.problem, self.model = problem, model
        self.shapes = [np.shape(W) for W in factors]
        self.sizes = [int(np.prod(s)) for s in self.shapes]

    def flatten(self, factors) -> np.ndarray:
        return np.concatenate([np.ravel(W) for W in factors])

    def unflatten(self, y) -> list:
        lead = y.shape[:-1]
        out, k = [], 0
        for shp, n in zip(self.shapes, self.sizes):
            out.append(y[..., k:k + n].reshape(lead + shp))
            k += n
        return out

    def grad(self, y):
        """The loss's gradient in the factors (also for a batch ``(..., n)`` and complex ``y``)."""
        fs = self.unflatten(y)
        if isinstance(self.model, CP):
            gs = cp_factor_grads(fs, self.problem.grad(cp_tensor(fs)))
        else:
            gs = factor_grads(fs, self.problem.grad(product(fs)))
        return np.concatenate([g.reshape(y.shape[:-1] + (-1,)) for g in gs], axis=-1)

    def hvp(self, y, v):
        """The Hessian at ``y`` times ``v``: the complex-step directional derivative ``grad(y + i h v).imag / h``
        (one complex gradient)."""
        h = 1e-30 / max(float(np.max(np.abs(v))), 1e-300)
        return self.grad(y + 1j * h * np.asarray(v, dtype=float)).imag / h

    def hessian(self, y):
        """The dense Hessian at ``y``: one batched complex gradient along every unit vector (``n`` gradients)."""
        n = y.shape[0]
        h = 1e-30
        Y = np.repeat(y[None, :].astype(complex), n, axis=0)
        Y[np.arange(n), np.arange(n)] += 1j * h
        return (self.grad(Y).imag / h).T


class _Integration:
    """One BDF integration in log-time on the chart or the raw factors (a private helper of GradientFlow)."""

    def __init__(self, spec: Spec, use_chart: bool, rtol: float, atol, budget: Budget, *, eval_taus=None,
                 raw_solver: str = "auto"):
        # use_chart: True (the 2x2 chart), "e2e" (the end-to-end flow, models.engines.e2e_flow, moving to the SVD
        # chart of models.engines.svd_flow where a square W nears singularity: "e2e-svd", path "auto"), "svd"
        # (that chart from the start) or False (raw)
        self.e2e = e2e_flow.EndToEnd(spec.problem, spec.model.depth) if use_chart in ("e2e", "e2e-svd", "svd") else None
        self.svd_first, self.svd_may_switch = use_chart == "svd", use_chart == "e2e-svd"
        self.svd, self.svd_now = None, False
        use_chart = bool(use_chart) and self.e2e is None
        self.spec, self.use_chart, self.rtol, self.atol, self.budget = spec, use_chart, rtol, atol, budget
        self.problem, self.model = spec.problem, spec.model
        self.eval_taus = eval_taus  # a companion run: also evaluate the state at these log-times
        self.raw_solver = raw_solver
        self.events: list[tuple] = []  # what each point was recorded for (pairs main and companion points)
        self.eval_taus_done: list[float] = []
        self.eval_points: list[Point] = []
        self.points: list[Point] = []
        self.status, self.message = Status.COMPLETED, ""
        self.stats = {"steps": 0, "rejected": None, "nfev": 0, "njev": 0, "nlu": 0, "recharts": 0,
                      "path": "chart" if use_chart else ("e2e" if self.e2e else "raw")}
        self.elapsed = 0.0
        self.atol_used = None
        self.is_square = isinstance(self.model, DeepMatrix) and self.model.shape[0] == self.model.shape[1]
        self.square_factors = self.is_square and all(a == b for a, b in self.model.layer_shapes)

    # ----- the two state representations -------------------------------------------------------------------
    def _raw_setup(self, factors):
        self.raw = RawField(self.problem, self.model, factors)
        return self.raw.flatten(factors)

    def _unflatten(self, y):
        return self.raw.unflatten(y)

    def _raw_grad(self, y):
        return self.raw.grad(y)

    def _raw_jac_op(self, tau, y):
        """The raw field's Jacobian at ``(tau, y)`` as a matrix-free operator (frozen at ``y``, as BDF freezes it)."""
        self.stats["jacobians"] = self.stats.get("jacobians", 0) + 1  # (scipy's njev counts only its own wrapper)
        yj = np.array(y, dtype=float)
        return krylov.HessianJacobian(lambda v: self.raw.hvp(yj, v), math.exp(tau), self.stats)

    def _state(self, y):
        """(product, loss, det_sign, factors) of a state."""
        if self.use_chart_now:
            w = chart.entries(chart.from_scaled(y), self.signs, chart.FLOAT)
            W = np.array(w).reshape(2, 2)
            return W, float(self.problem.loss_flat(w)), chart.det_sign(self.signs), None
        if self.svd_now:
            W = self.svd.matrix(np.asarray(y, dtype=float))
            return W, self.e2e.loss(W), (self.svd.det_sign(y) if self.is_square else None), None
        if self.e2e is not None:
            W = np.array(y, dtype=float).reshape(self.model.shape)
            return W, self.e2e.loss(W), self._e2e_det_sign(W), None
        fs = self._unflatten(np.asarray(y))
        if isinstance(self.model, CP):
            T = cp_tensor(fs)
            return T, float(self.problem.loss(T)), None, tuple(f.copy() for f in fs)
        W = product(fs)
        return W, float(self.problem.loss(W)), self._raw_det_sign(fs, W), tuple(f.copy() for f in fs)

    def _e2e_det_sign(self, W):
        if not self.is_square:
            return None
        s = np.linalg.svd(W, compute_uv=False)
        if not np.all(np.isfinite(s)) or s[-1] <= PRECISION_FLOOR * s[0]:
            return None
        return int(np.sign(np.linalg.det(W)))

    def _raw_det_sign(self, fs, W):
        if not self.is_square:
            return None
        s = np.linalg.svd(W, compute_uv=False)
        if not np.all(np.isfinite(s)) or s[-1] <= PRECISION_FLOOR * s[0]:
            return None
        if self.square_factors:
            return int(np.prod([np.sign(np.linalg.det(f)) for f in fs]))
        return int(np.sign(np.linalg.det(W)))

    # ----- driver --------------------------------------------------------------------------------------------
    def run(self):
        start = time.perf_counter()
        self.budget.start = start
        try:
            self._run()
        except Stop as stop:
            self.status, self.message = stop.status, stop.message
        self.elapsed = time.perf_counter() - start

    def _make_solver(self, tau0, y0, tau_end):
        if self.use_chart_now:
            L = self.model.depth
            fun = lambda tau, z: math.exp(tau) * np.array(chart.scaled_rhs(z, self.signs, L, self.problem, chart.FLOAT))
            jac = lambda tau, z: math.exp(tau) * chart.scaled_jacobian(z, self.signs, L, self.problem)
            if self.atol is not None:
                atol = self.atol
            else:  # p, q are angles times sigma_1: their absolute tolerance scales with sigma_1
                atol = np.array([1e-14 * min(1.0, math.exp(y0[2]))] * 2 + [1e-14] * 2)
        elif self.svd_now:
            fun = lambda tau, y: math.exp(tau) * self.svd.rhs(np.asarray(y, dtype=float))
            jac = lambda tau, y: math.exp(tau) * self.svd.jacobian(y)  # forward differences, bounded steps
            atol = self.svd.atol(self.rtol, y0) if self.atol is None else self.atol
        elif self.e2e is not None:
            shape = self.model.shape
            fun = lambda tau, y: math.exp(tau) * self.e2e.velocity(np.asarray(y).reshape(shape)).reshape(-1)
            # atol 1e-14 times the current largest entry (restarted when it grows 10x, see _run): W's entries are
            # computed from an SVD to ~eps times the largest, so an atol fixed at the start's scale (1e-2 entries
            # growing to 20) sat below the rounding floor and BDF crawled (200k steps where 2k suffice)
            self.e2e_scale = max(float(np.max(np.abs(y0))), 1e-300)
            atol = 1e-14 * self.e2e_scale if self.atol is None else self.atol
            self.atol_used = atol
            return e2e_flow.make_solver(self.e2e, tau0, y0, tau_end, rtol=self.rtol, atol=atol, fun=_guarded(fun))
        else:
            fun = lambda tau, y: -math.exp(tau) * self._raw_grad(y)
            jac = lambda tau, y: -math.exp(tau) * self.raw.hessian(y)
            atol = (1e-14 * max(float(np.max(np.abs(y0))), 1e-300)) if self.atol is None else self.atol
            big = np.size(y0) >= (RAW_KRYLOV_MIN_CP if isinstance(self.model, CP) else RAW_KRYLOV_MIN)
            if self.raw_solver == "krylov" or (self.raw_solver == "auto" and big):
                self.atol_used = atol
                self.stats["raw_solver"] = "krylov"
                return krylov.KrylovBDF(_guarded(fun), tau0, np.array(y0, dtype=float), tau_end, rtol=self.rtol,
                                        atol=atol, jac_op=self._raw_jac_op)
        self.atol_used = atol.tolist() if isinstance(atol, np.ndarray) else atol
        return BDF(_guarded(fun), tau0, np.array(y0, dtype=float), tau_end, rtol=self.rtol, atol=atol, jac=jac)

    def _run(self):
        spec = self.spec
        factors = list(spec.init.factors)
        tau_end = math.log1p(spec.t_max) if spec.t_max is not None else math.log1p(T_HORIZON)
        if spec.record_at:
            tau_end = min(tau_end, math.log1p(max(spec.record_at)))
        targets = sorted({math.log1p(t) for t in spec.record_at}) if spec.record_at else []
        # Initial state: the chart, unless its denominator is (nearly) singular at the start.
        self.use_chart_now = False
        y = self._raw_setup(factors) if self.e2e is None else product(factors).reshape(-1)
        if self.use_chart:
            ych, signs = chart.from_matrix(product(factors))
            if chart.gap(ych, self.model.depth) > 1e-3:
                self.use_chart_now, self.signs, y = True, signs, np.array(chart.to_scaled(ych))
        if self.svd_first:
            self.svd = svd_flow.SVDChart(self.problem, self.model.depth, product(factors))
            self.svd_now, y = True, self.svd.y0
        self.stats["path"] = "chart" if self.use_chart_now else ("raw-then-chart" if self.use_chart else
                                                                 ("svd" if self.svd_now else
                                                                  ("e2e" if self.e2e is not None else "raw")))
        W, loss, ds, fs = self._state(y)
        self.initial_sign = ds
        levels = self._levels(loss)
        tau = 0.0
        self._record(tau, y, ("start",))
        self.eval_queue = list(self.eval_taus[1:]) if self.eval_taus is not None else []
        solver = self._make_solver(tau, y, tau_end)
        while True:
            self.budget.check(self.stats["steps"])
            try:
                with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # rejected trial states
                    msg = solver.step()
            except (ValueError, np.linalg.LinAlgError) as exc:  # a non-finite Jacobian at an extreme state
                msg, solver.status = f"{type(exc).__name__}: {exc}", "failed"
            self.stats["steps"] += 1
            if solver.status == "failed":
                loss_now = self._state(solver.y)[1]
                raise Stop(Status.SOLVER_FAILED, f"BDF failed at t = {math.expm1(solver.t):.3g} with loss "
                                                  f"{loss_now:.3g}: {msg}")
            tau_prev, tau_new = solver.t_old, solver.t
            ynew = solver.y
            if not np.all(np.isfinite(ynew)) or (not self.use_chart_now and np.max(np.abs(ynew)) > 1e150):
                raise Stop(Status.DIVERGED, f"the state became non-finite or overflowed at t = {math.expm1(tau_new):.3g}")
            dense = solver.dense_output()
            W, loss_new, ds_new, _ = self._state(ynew)
            self._check_precision(ds_new, dense, tau_prev, tau_new, W)
            done = self._handle_step(dense, tau_prev, tau_new, loss_new, levels, targets)
            if done:
                self._collect(solver)
                return
            if solver.status == "finished":
                self._collect(solver)
                if not (self.events and self.events[-1] == ("time", tau_end)):
                    self._record(tau_end, solver.y, ("end",))
                    if spec.t_max is None and not spec.record_at:
                        raise horizon_stop(self.points[-1].loss)
                return
            restart = None
            angles = chart.from_scaled(ynew)[:2] if self.use_chart_now else None
            if self.svd_now:
                if self.svd.needs_recentre(ynew):
                    restart = self.svd.recentre(ynew)
            elif (self.e2e is not None and self.atol is None
                  and float(np.max(np.abs(ynew))) > E2E_ATOL_REGROW * self.e2e_scale):
                restart = np.array(ynew, dtype=float)  # the same state under an atol at its scale
                self.stats["atol_resets"] = self.stats.get("atol_resets", 0) + 1
            elif self.svd_may_switch and self.is_square and self._svd_switch(W):
                self.svd = svd_flow.SVDChart(self.problem, self.model.depth, W)
                self.svd_now, restart, self.stats["path"] = True, self.svd.y0, "e2e-then-svd"
            elif self.use_chart_now and (abs(angles[0]) > math.pi / 2 or abs(angles[1]) > math.pi / 2):
                yy, self.signs = chart.recentre(chart.from_scaled(ynew), self.signs)
                restart = np.array(chart.to_scaled(yy), dtype=float)
                self.stats["recharts"] += 1
            elif (not self.use_chart_now and self.use_chart and self.stats["steps"] % 5 == 0):
                ych, signs = chart.from_matrix(product(self._unflatten(ynew)))
                if chart.gap(ych, self.model.depth) > 1e-3:
                    self.use_chart_now, self.signs = True, signs
                    restart = np.array(chart.to_scaled(ych))
            if restart is not None:
                self._collect(solver)
                solver = self._make_solver(tau_new, restart, tau_end)

    def _svd_switch(self, W) -> bool:
        """Whether the stored-W flow hands over to the SVD chart at ``W`` (square, small enough, and
        ``s_min / s_max`` below :data:`svd_flow.SWITCH_RATIO`)."""
        if svd_flow.unknowns(self.model.shape) > svd_flow.MAX_UNKNOWNS:
            return False
        s = np.linalg.svd(W, compute_uv=False)
        return bool(s[-1] > 0 and s[-1] < svd_flow.SWITCH_RATIO * s[0])

    def _collect(self, solver):
        for key in ("nfev", "njev", "nlu"):
            self.stats[key] += int(getattr(solver, key))
        if self.e2e is not None:
            self.stats.update(self.e2e.stats)
        if self.svd is not None:
            self.stats["svd_recentres"] = self.svd.recentres

    def _levels(self, loss0):
        return loss_levels(loss0, self.spec.per_decade, self.spec.until_loss)  # descending

    def _loss_at(self, dense, tau):
        return self._state(dense(tau))[1]

    def _handle_step(self, dense, tau_prev, tau_new, loss_new, levels, targets) -> bool:
        """Record what this step crossed; True when the run is over."""
        while self.eval_queue and self.eval_queue[0] <= tau_new + 8 * EPS * max(1.0, abs(tau_new)):
            tq = self.eval_queue.pop(0)  # (log1p(expm1(tau)) may exceed the end tau by a rounding)
            W, loss, ds, fs = self._state(np.asarray(dense(min(tq, tau_new)), dtype=float))
            self.eval_taus_done.append(tq)
            self.eval_points.append(Point(math.expm1(tq), None, loss, W, ds, fs))
        events = []
        while levels and loss_new <= levels[0]:
            lv = levels.pop(0)
            events.append((self._locate(dense, tau_prev, tau_new, lv), ("level", lv)))
        while targets and targets[0] <= tau_new:
            tq = targets.pop(0)
            events.append((tq, ("time", tq)))
        stop = self.spec.until_loss
        finished = stop is not None and loss_new <= stop
        if finished:
            events.append((self._locate(dense, tau_prev, tau_new, stop), ("until_loss",)))
        for tau, event in sorted(events, key=lambda e: e[0]):
            self._record(tau, dense(tau), event)
        return finished

    def _locate(self, dense, a, b, level):
        fa = self._loss_at(dense, a) - level
        if fa <= 0:
            return a
        if self._loss_at(dense, b) - level > 0:
            # the step's end state is below the level but the interpolant there is not (they agree only to the
            # interpolation error): the crossing is at the end of the step, to that accuracy
            return b
        return brentq(lambda tau: self._loss_at(dense, tau) - level, a, b, xtol=4 * EPS * max(1.0, abs(b)), rtol=4 * EPS)

    def _check_precision(self, ds_new, dense, tau_prev, tau_new, W=None):
        if self.use_chart_now or self.svd_now or not self.is_square or isinstance(self.model, CP):
            return
        if ds_new is None:
            raise Stop(Status.PRECISION_LOST,
                        f"sigma_min/sigma_max of the end-to-end matrix fell below {PRECISION_FLOOR:.1e} at "
                        f"t ~ {math.expm1(tau_new):.3g}: float64 can no longer resolve its det sign")
        # issue 11: a det decaying through that band can cross it inside one step (depth 2, scale 0.5, seed 1
        # recorded det < 0 from loss 1e-2 on). A sign change from a ratio below sqrt(PRECISION_FLOOR) is that;
        # a det crossing 0 at a finite rate from higher up (unbalanced factors) is kept.
        ratio = None
        if W is not None:
            s = np.linalg.svd(W, compute_uv=False)
            ratio = float(s[-1] / s[0])
        prev, self._last_det = getattr(self, "_last_det", None), (ds_new, ratio)
        if prev is not None and prev[0] != ds_new and prev[1] is not None and prev[1] < math.sqrt(PRECISION_FLOOR):
            raise Stop(Status.PRECISION_LOST,
                        f"the det sign changed within one step ending at t ~ {math.expm1(tau_new):.3g} from "
                        f"sigma_min/sigma_max = {prev[1]:.3g}: it passed through the band below {PRECISION_FLOOR:.1e} "
                        f"that float64 cannot resolve")

    def _record(self, tau, y, event):
        y = np.asarray(y, dtype=float)
        W, loss, ds, fs = self._state(y)
        self.points.append(Point(math.expm1(tau), None, loss, W, ds, fs, tangent=self._tangent(y)))
        self.events.append(event)

    def _tangent(self, y):
        """``dW/dt`` of the integrated right-hand side at state ``y`` (complex step along it: exact to rounding);
        ``None`` for CP tensors."""
        if isinstance(self.model, CP):
            return None
        with np.errstate(over="ignore", invalid="ignore"):
            if self.use_chart_now:
                v = np.array(chart.scaled_rhs(y, self.signs, self.model.depth, self.problem, chart.FLOAT))
                h = 1e-30 / max(float(np.max(np.abs(v))), 1e-300)
                zc = [complex(a, h * b) for a, b in zip(y, v)]
                w = chart.entries(chart.from_scaled(zc, chart.COMPLEX), self.signs, chart.COMPLEX)
                return (np.array([c.imag for c in w]) / h).reshape(2, 2)
            if self.svd_now:
                return self.svd.velocity(y)
            if self.e2e is not None:  # the state is W itself: its velocity is the tangent
                return self.e2e.velocity(np.asarray(y, dtype=float).reshape(self.model.shape))
            v = -self._raw_grad(y)
            h = 1e-30 / max(float(np.max(np.abs(v))), 1e-300)
            return product(self._unflatten(y + 1j * h * v)).imag / h
