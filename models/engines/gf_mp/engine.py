"""The ``gf-mp`` engine class (:class:`GradientFlowMP`): options, the path, the main run, the reference run and
the error estimate; the method is described in :mod:`models.engines.gf_mp`."""

from __future__ import annotations

import math
import time

import numpy as np

from ...errors import require
from ...factorizations import DeepMatrix, product
from ...inits import is_balanced
from ...trajectory import Point
from ..base import AbstractEngine, Budget, Result, Spec
from .driver import Integration, factor_det_errors

PATHS = ("auto", "chart", "raw")


# ---------------------------------------------------------------------------------------------------------------
# The engine.
# ---------------------------------------------------------------------------------------------------------------
def _int_option(name, value, lo, hi):
    require(isinstance(value, (int, np.integer)) and not isinstance(value, bool) and lo <= value <= hi,
            f"{name} must be an integer in [{lo}, {hi}], got {value!r}")
    return int(value)


class GradientFlowMP(AbstractEngine):
    """High-precision gradient flow in mpmath (see the module docstring).

    Options (validated here, eagerly):

    - ``digits`` (default 40; 20..300): decimal digits of the high-precision record ``Point.hp`` and the base working
      precision; the chart path works at ``digits + guard`` digits, the raw path at ``digits + 10``.
    - ``tol`` (default ``10^-(digits - 10)``, i.e. 1e-30): local error tolerance of each step in the scaled max
      norm (relative, with absolute floors: see ``ChartSystem.atol``).
    - ``guard`` (default None: ``10 + decades(until_loss) / 2``): extra working digits on the chart path.
    - ``max_steps`` (default 20000): accepted steps per run before ``Status.BUDGET``.
    - ``path``: "auto" (chart when it applies), "chart" (required, else InvalidInput) or "raw".
    - ``estimate`` (default True): run the reference integration for ``loss_err`` / ``product_err``;
      ``extra_digits`` (default 20) and ``tighter`` (default 100) set its precision and tolerance. Without it
      (or where the reference ended early) every point's ``loss_err`` / ``product_err`` is ``inf``: an error
      nobody estimated is unknown, never zero.
    - ``stages`` (default None: chosen from the tolerance by :func:`models.engines.gf_mp.radau.auto_stages`, 10 at
      tol 1e-26 .. 1e-27, 19 at 1e-50, 34 at 1e-90; the reference run chooses for its own tolerance): Radau IIA
      stages ``s`` (order ``2 s - 1``), 2 .. 40.
    """

    name = "gf-mp"
    options = ("digits", "tol", "max_steps", "path", "guard", "estimate", "extra_digits", "tighter", "stages")
    default_until_loss = 1e-30
    models = ("deep",)
    arithmetic = "mpmath"

    def __init__(self, digits: int = 40, tol: float | None = None, max_steps: int = 20_000, path: str = "auto",
                 guard: int | None = None, estimate: bool = True, extra_digits: int = 20, tighter: float = 100.0,
                 stages: int | None = None):
        digits = _int_option("digits", digits, 20, 300)  # the default tol 10^-(digits-10) must be a float64 > 0
        if tol is not None:
            require(isinstance(tol, (int, float)) and not isinstance(tol, bool) and math.isfinite(tol)
                    and 10.0 ** -digits <= tol <= 1e-6,
                    f"tol must be a number in [1e-{digits}, 1e-6] (10^-digits .. 1e-6), got {tol!r}")
        max_steps = _int_option("max_steps", max_steps, 1, 10 ** 9)
        require(path in PATHS, f"path must be one of {PATHS}, got {path!r}")
        if guard is not None:
            guard = _int_option("guard", guard, 0, 2000)
        require(isinstance(estimate, bool), f"estimate must be True or False, got {estimate!r}")
        extra_digits = _int_option("extra_digits", extra_digits, 1, 1000)
        require(isinstance(tighter, (int, float)) and not isinstance(tighter, bool) and math.isfinite(tighter)
                and tighter >= 2, f"tighter must be a number >= 2, got {tighter!r}")
        kmax = None if stages is None else _int_option("stages", stages, 2, 40)
        self.digits = digits
        self.tol = float(tol) if tol is not None else 10.0 ** -(digits - 10)
        self.max_steps, self.path, self.guard, self.estimate = max_steps, path, guard, estimate
        self.extra_digits, self.tighter, self.kmax = extra_digits, float(tighter), kmax

    def describe_options(self) -> dict:
        return {"digits": self.digits, "tol": self.tol, "path": self.path, "guard": self.guard,
                "estimate": self.estimate, "extra_digits": self.extra_digits, "tighter": self.tighter,
                "stages": self.kmax, "max_steps": self.max_steps}

    # ------------------------------------------------------------------------------------------------------
    def _chart_applies(self, spec: Spec) -> bool:
        if self.path == "raw":
            return False
        model = spec.model
        ok = (isinstance(model, DeepMatrix) and model.shape == (2, 2) and model.full_width and model.depth >= 2
              and is_balanced(spec.init.factors) and np.linalg.det(product(spec.init.factors)) != 0)
        require(ok or self.path != "chart", "path='chart' needs a balanced, full-width, 2x2 deep factorization "
                                           "with a nonsingular end-to-end matrix")
        return ok

    def work_digits(self, spec: Spec, use_chart: bool) -> int:
        """Working decimal digits of the main run."""
        if not use_chart:
            return self.digits + 10
        if self.guard is not None:
            return self.digits + self.guard
        decades = 30.0 if spec.until_loss is None else max(0.0, -math.log10(float(spec.until_loss)))
        return self.digits + 10 + int(math.ceil(decades / 2))

    def _advance(self, spec: Spec, budget: Budget) -> Result:
        require(isinstance(spec.model, DeepMatrix),
                f"gf-mp integrates deep matrix factorizations only, got {type(spec.model).__name__}")
        require(spec.until_loss is not None or spec.t_max is not None or spec.record_at,
                "gradient flow needs until_loss, t_max or record_at to know when to stop")
        if spec.model.depth == 1 and self.path != "raw":  # the linear model: closed form (issue 12)
            from ..linear_flow_mp import run_linear_mp
            return run_linear_mp(spec, self.digits, estimate=self.estimate, extra_digits=self.extra_digits)
        use_chart = self._chart_applies(spec)
        start, wall = budget.start, budget.wall
        work = self.work_digits(spec, use_chart)
        # The main run may use up to 40% of the budget when a reference run follows (it costs ~1.5x the main).
        main_deadline = start + (0.4 * wall if self.estimate else wall)
        main = Integration(spec, use_chart=use_chart, digits=self.digits, work_dps=work, tol=self.tol,
                           kmax=self.kmax, max_steps=self.max_steps, deadline=main_deadline)
        main.run()
        # one stats schema (models.engines.base.STATS_KEYS): the main run's counters at top level, the
        # reference (error-estimate) run's under error_run
        stats = dict(main.stats, seconds=round(main.seconds, 3))
        tolerances = {"tol": self.tol, "work_digits": work}
        ref_by_key = None
        if self.estimate and len(main.records) > 1:
            ref = Integration(spec, use_chart=use_chart, digits=self.digits + self.extra_digits,
                              work_dps=work + self.extra_digits, tol=self.tol / self.tighter, kmax=self.kmax,
                              max_steps=4 * self.max_steps, deadline=max(start + wall, time.perf_counter() + 1.0),
                              max_records=len(main.records))
            ref.run()
            ref_by_key = {r["key"]: r for r in ref.records}
            stats["error_run"] = dict(ref.stats, seconds=round(ref.seconds, 3), status=ref.status.value)
            tolerances.update(ref_tol=self.tol / self.tighter, ref_work_digits=work + self.extra_digits)
            if len(ref.records) < len(main.records):
                stats["error_run_note"] = "the reference run ended early; later points carry no error estimate"
        points = [self._point(spec, rec, None if ref_by_key is None else ref_by_key.get(rec["key"]), main.ctx)
                  for rec in main.records]
        return Result(points, main.status, main.message, f"mpmath-{self.digits}", tolerances, stats)

    def _point(self, spec: Spec, rec: dict, ref: dict | None, ctx) -> Point:
        D = self.digits
        d, dp = spec.model.shape
        w, loss = rec["w"], rec["loss"]
        scale = max(abs(v) for v in w)
        floor_w = scale * ctx.mpf(10) ** (-D)
        floor_l = loss * ctx.mpf(10) ** (-D)
        if ref is None:  # no reference run, or it ended before this record: the error is unknown, so infinite
            perr, lerr = math.inf, math.inf
        else:
            # The reference, moved along the flow to the main record's time (first order, with its own slope),
            # against the main record; the change of slope between the two points bounds the remainder.
            dtau = rec["tau"] - ctx.mpf(ref["tau"])
            dw = max(abs(a - ctx.mpf(b) - ctx.mpf(db) * dtau) + abs(da - ctx.mpf(db)) * abs(dtau)
                     for a, b, da, db in zip(w, ref["w"], rec["dw"], ref["dw"]))
            dl = (abs(loss - ctx.mpf(ref["loss"]) - ctx.mpf(ref["dloss"]) * dtau)
                  + abs(rec["dloss"] - ctx.mpf(ref["dloss"])) * abs(dtau))
            perr = float(2 * dw + floor_w)
            # on the raw path the loss is formed from a product of factors: its rounding bound at the working
            # precision (RawSystem.loss_rounding) can exceed the D-digit floor late in the flow, where ||W|| grows
            lerr = float(2 * dl + floor_l + rec.get("loss_round", 0))
        hp = {"digits": D, "loss": ctx.nstr(loss, D),
              "product": [[ctx.nstr(w[i * dp + j], D) for j in range(dp)] for i in range(d)],
              "t": ctx.nstr(rec["t"], D)}
        # the engine's dW/dt at the record (its velocity pushed through the entries map), for the gradient-flow
        # check of the claims, and the product at the full working precision:
        # the field is stiff late in the flow, so the check needs the state, not its D-digit rounding
        tangent = rec["dw_dt"]
        hp["tangent"] = [[ctx.nstr(tangent[i * dp + j], D) for j in range(dp)] for i in range(d)]
        hp["work_digits"] = int(ctx.dps)
        hp["product_work"] = [[ctx.nstr(w[i * dp + j], int(ctx.dps)) for j in range(dp)] for i in range(d)]
        fm = rec.get("factors_mp")      # recorded up to FACTORS_WORK_MAX entries (driver)
        if fm is not None:
            # the raw path's factors at the working precision, for the gradient-flow check (flow_check): their
            # float64 rounding (Point.factors) moves the residual by ~1e-16 ||W||, which passes the residual
            # itself near loss 1e-10 (measured: depth 4, the check's error 1.7 at loss 1e-10, 53 at 1e-11)
            hp["factors_work"] = [[[ctx.nstr(v, int(ctx.dps)) for v in row] for row in F] for F in fm]
        if "fdets" in rec:   # the raw path: each factor's det and its error (issue 11), like product_err
            hp["factor_dets"], hp["factor_det_err"] = factor_det_errors(rec, ref, D, ctx)
        W = np.array([float(v) for v in w]).reshape(d, dp)
        return Point(float(rec["t"]), None, float(loss), W, rec["det_sign"], rec["factors"], lerr, perr, hp,
                     np.array([float(v) for v in tangent]).reshape(d, dp))
