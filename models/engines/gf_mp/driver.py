"""One high-precision integration of :mod:`models.engines.gf_mp` (:class:`Integration`): the loss levels and
explicit times it records, finding a loss level inside the step that passes it, the budget and the stops; and
:func:`factor_det_errors`, the error estimate of the raw path's factor dets."""

from __future__ import annotations

import math
import time

from ...trajectory import Status
from ..base import Spec
from .arith import make_context
from .radau import SOLVER_COUNTERS, Radau, StepFailure, auto_stages
from .systems import ChartSystem, RawSystem, chart_from_entries


# ---------------------------------------------------------------------------------------------------------------
# One integration.
# ---------------------------------------------------------------------------------------------------------------
class _Stop(Exception):
    def __init__(self, status: Status, message: str):
        super().__init__(message)
        self.status, self.message = status, message


GAP_MIN = 1e-3                       # relative singular-value gap needed before leaving the raw factors
T_HORIZON = 1e100                    # without t_max, a run whose loss stalls ends here (status budget)
#: the raw path keeps its factors at the working precision with each record (``hp["factors_work"]``, for the
#: gradient-flow check) only up to this many entries in all: each record holds them until the run ends, and each
#: point carries them as decimal strings of the working digits (the 2x2 problems of RC20 have 4 per factor)
FACTORS_WORK_MAX = 4096


class Integration:
    """One high-precision run (a private helper of :class:`GradientFlowMP`).

    Records the start, the loss levels, the explicit times and the end, each under a key (``("start",)``,
    ``("level", k)``, ``("time", i)``, ``("final",)``) so that the reference run's points can be matched.
    ``max_records``: stop after that many records (the reference run stops where the main run stopped).
    """

    LAND_TIGHT = 1e-3  # a loss level is recorded at most this many tolerances (relative) below the level,
    LAND_SLACK = 1e4   # or this many when Newton's method on the step length stalls (see _land)
    LAND_KAPPA = 1e-6  # the stage solver's Newton tolerance (in tolerance units) on steps aimed at a level

    def __init__(self, spec: Spec, *, use_chart: bool, digits: int, work_dps: int, tol: float, kmax: int,
                 max_steps: int, deadline: float, max_records: int | None = None):
        self.spec, self.use_chart, self.digits, self.work_dps = spec, use_chart, digits, work_dps
        kmax = kmax or auto_stages(tol)
        self.kmax, self.max_steps, self.deadline, self.max_records = kmax, max_steps, deadline, max_records
        self.ctx = ctx = make_context(work_dps)
        self.tol = ctx.mpf(tol)
        # half-widths of the band of log loss in which a level is recorded: loss in [level e^(-2 band), level]
        self.band, self.loose_band = self.LAND_TIGHT * self.tol / 2, self.LAND_SLACK * self.tol / 2
        self.records: list[dict] = []
        self.status, self.message = Status.COMPLETED, ""
        self.stats = dict.fromkeys(SOLVER_COUNTERS, 0)
        self.stats.update({"recharts": 0, "loose_landings": 0, "path": None, "work_dps": work_dps, "tol": float(tol),
                           "stages": kmax})
        self.seconds = 0.0
        self.solver = None

    # ----- bookkeeping ---------------------------------------------------------------------------------------
    def run(self) -> None:
        start = time.perf_counter()
        try:
            self._run()
        except _Stop as stop:
            self.status, self.message = stop.status, stop.message
        except StepFailure as exc:
            self.status, self.message = Status.SOLVER_FAILED, f"the Radau solver failed: {exc}"
        finally:
            if self.solver is not None:
                self._collect()
        self.seconds = time.perf_counter() - start

    def _record(self, key, z):
        ctx = self.ctx
        w, loss, sign, factors = self.system.observe(z)
        tau = z[-1]
        self.records.append({"key": key, "tau": tau, "t": ctx.expm1(tau), "w": w, "loss": loss, "det_sign": sign,
                             "factors": factors, "dw": self.system.dW_dtau(z),
                             "dloss": self.system.dloss_dtau(z), "dw_dt": self.system.dW_dt(z)})
        if self.system.kind == "raw":
            rec = self.records[-1]
            rec["loss_round"] = self.system.loss_rounding(z)    # the loss's rounding bound (part of loss_err)
            # the factors at the working precision: the gradient-flow check needs the state, not its float64
            # rounding (late in the flow the residual is far below the float64 rounding of the product)
            if self.system.nvar <= FACTORS_WORK_MAX:
                rec["factors_mp"] = self.system.unflatten(z)
            dets = self.system.factor_dets(z)
            if dets is not None:     # issue 11: each factor's det
                rec.update(fdets=dets, dfdets=self.system.factor_dets_dtau(z),
                           fdet_floors=self.system.factor_det_floors(z))
        if self.max_records is not None and len(self.records) >= self.max_records:
            raise _Done()

    def _check_budget(self):
        if self.stats["steps"] + self.solver.stats["steps"] >= self.max_steps:
            raise _Stop(Status.BUDGET, f"stopped after max_steps={self.max_steps} steps")
        if time.perf_counter() > self.deadline:
            raise _Stop(Status.BUDGET, "stopped at the wall-clock budget")

    def _collect(self):
        for key in SOLVER_COUNTERS:
            self.stats[key] += self.solver.stats[key]
            self.solver.stats[key] = 0

    def _new_solver(self, z):
        """A solver for the current system from state ``z`` (keeping the previous solver's step length)."""
        h0 = None
        if self.solver is not None:
            self._collect()
            h0 = self.solver.h
        sys_ = self.system
        self.solver = Radau(sys_.zfun, sys_.zjac, z, z[-1], ctx=self.ctx, rtol=self.tol,
                            atol=sys_.atol(z, self.tol)[:-1], stages=self.kmax, h0=h0, valid=sys_.valid,
                            stats={}, slope_jac=getattr(sys_, "slope_jacobian", False),
                            project=getattr(sys_, "slow_projection", None))
        return self.solver

    # ----- setup ---------------------------------------------------------------------------------------------
    def _initial_system(self):
        spec = self.spec
        # path="raw" watches every factor det (see RawSystem.precision_problem); a raw start that leaves for the
        # chart keeps the end-to-end det stop (the chart path's behaviour is unchanged)
        raw = RawSystem(spec.problem, spec.model, self.ctx, self.digits, 
                        per_factor_tol=None if self.use_chart else self.tol)
        z_raw = raw.state(spec.init.factors)
        if not self.use_chart:
            self.stats["path"] = "raw"
            return raw, z_raw
        cs = self._chart_from_raw(raw, z_raw)
        if cs is not None:
            self.stats["path"] = "chart"
            return cs
        self.stats["path"] = "raw-then-chart"
        return raw, z_raw

    def _chart_from_raw(self, raw, z):
        """The chart system and scaled state at the raw state ``z``, or None when the singular values are too
        close."""
        ctx = self.ctx
        y, signs = chart_from_entries(raw.entries(z), ctx, raw.det(z))
        system = ChartSystem(self.spec.problem, self.spec.model.depth, signs, ctx)
        e1 = ctx.exp(y[2])
        zc = [y[0] * e1, y[1] * e1, y[2], y[3], z[-1]]
        if system.gap(zc) <= GAP_MIN:
            return None
        return system, zc

    def _levels(self, loss0):
        """``[(k, 10^(-k/per_decade))]`` strictly between the final loss and ``loss0``, descending."""
        ctx, pd = self.ctx, self.spec.per_decade
        stop = self.spec.until_loss
        out = []
        k = math.floor(-float(ctx.log10(loss0)) * pd)
        while True:
            lv = ctx.mpf(10) ** (ctx.mpf(-k) / pd)
            if stop is not None and lv <= ctx.mpf(stop) * (1 + ctx.mpf(10) ** -12):
                break
            if lv < loss0:
                out.append((k, lv))
            if k > 400 * pd:
                break
            k += 1
        return out

    # ----- the run -------------------------------------------------------------------------------------------
    def _run(self):
        try:
            self._integrate()
        except _Done:
            pass

    def _integrate(self):
        ctx, spec = self.ctx, self.spec
        self.system, z = self._initial_system()
        self._record(("start",), z)
        loss0 = self.records[0]["loss"]
        # Loss events (levels, then until_loss) and time events (record_at, then t_max), both in order.
        events = [(("level", k), lv) for k, lv in self._levels(loss0)]
        if spec.until_loss is not None:
            if loss0 <= ctx.mpf(spec.until_loss):
                return
            events.append((("final",), ctx.mpf(spec.until_loss)))
        t_end = spec.t_max
        if t_end is None and spec.until_loss is None and spec.record_at:
            t_end = max(spec.record_at)
        times = sorted({float(t) for t in (spec.record_at or ()) if t > 0 and (t_end is None or t < t_end)})
        tevents = [(("time", i), ctx.log1p(ctx.mpf(t))) for i, t in enumerate(times)]
        if t_end is not None:
            tevents.append((("final",), ctx.log1p(ctx.mpf(t_end))))
        else:
            tevents.append((("horizon",), ctx.log1p(ctx.mpf(T_HORIZON))))
        self._new_solver(z)
        band = self.band
        while True:
            self._check_budget()
            solver = self.solver
            key, tlim = tevents[0]
            self._step(tlim)
            self._check_precision(solver.y)        # before anything inside the step is recorded
            # the loss levels this step passed: each recorded on the level, inside the step (issue 12: a level
            # costs a stage solve or two, not a step end)
            while events:
                key_l, level = events[0]
                g, _ = self._level_offset(solver.y, level)
                if g > 0:
                    break
                events.pop(0)
                z = solver.y if g >= -2 * band else self._land(solver, level)
                if self.system.kind == "raw" and not self.system.precision_ok(z):
                    self._check_precision(z)          # raises: the level is not recorded (not reached)
                self._record(key_l, z)
                if key_l == ("final",):
                    return
            if solver.x == tlim:
                self._record(key, solver.y)
                tevents.pop(0)
                if key == ("final",):
                    return
                if key == ("horizon",):
                    raise _Stop(Status.BUDGET, f"reached the time horizon t = {T_HORIZON:.0e} with loss "
                                               f"{float(self.records[-1]['loss']):.3g} above until_loss: the "
                                               f"flow converges to a positive loss, or too slowly")
            self._post_step()

    def _step(self, limit):
        """One solver step to at most ``limit`` (an explicit time)."""
        self.solver.step(limit)

    def _level_offset(self, z, level):
        """``(log loss - log level, d log loss / dtau)`` at state ``z``."""
        ctx, sys_ = self.ctx, self.system
        return ctx.log(sys_.loss(z)) - ctx.log(level), -sys_.rate(z)

    def _land(self, solver, level):
        """The state (with its ``tau``) where the loss crosses ``level`` inside the last accepted step, which
        passed it (by more than the band below it). Newton's method on ``tau`` (aiming ``band`` below the level),
        started from the root of ``log loss`` on the step's collocation polynomials (itself found by Newton's
        method from the cubic Hermite interpolant of ``log loss`` over the step); each iterate is an exact Radau
        step from the start of the half step holding it (:meth:`Radau.side`, its stages solved to ``LAND_KAPPA``
        so that its end is smooth in its length), so the point is as accurate as a step end: a level is recorded
        with ``loss`` in ``[level (1 - LAND_TIGHT tol), level]``, or, should Newton's method stall there, in
        ``[level (1 - LAND_SLACK tol), level]`` after a few iterations (counted in the stats as
        ``loose_landings``). The trajectory goes on from the step's end, which no recorded level shortens. The
        record holds the loss actually reached."""
        band, loose = self.band, self.loose_band
        xb = solver.x
        gb, db = self._level_offset(solver.y, level)
        xa, za = solver.last_start()
        ga, da = self._level_offset(za + [xa], level)
        x = _hermite_root(xa, ga + band, da, xb, gb + band, db)
        x = self._dense_root(solver, level, x, xa, xb)
        lo, glo, hi, ghi = xa, ga, xb, gb          # the bracket: g > 0 at lo, g < 0 at hi
        prev = None
        for it in range(16):
            self._check_budget()
            z = solver.side(x, kappa=self.LAND_KAPPA) + [x]
            g, d = self._level_offset(z, level)
            if -2 * band <= g <= 0:
                return z
            if it >= 4 and -2 * loose <= g <= 0:
                self.stats["loose_landings"] += 1
                return z
            if g > 0:
                lo, glo = x, g
            else:
                hi, ghi = x, g
            # Newton's step, then secant steps; the instantaneous rate d at a point inside a long stiff step
            # can be far off (the fast components' tiny deviations dominate it) where the loss itself is right,
            # so a step that leaves the bracket falls back to regula falsi on the bracket
            xn = x - (g + band) / d if prev is None or prev[1] == g else x - (g + band) * (x - prev[0]) / (g - prev[1])
            if not lo < xn < hi:
                xn = lo + (glo + band) * (hi - lo) / (glo - ghi)
                if not lo < xn < hi:
                    xn = (lo + hi) / 2
            prev, x = (x, g), xn
        raise StepFailure("could not find a loss level inside a step")

    def _dense_root(self, solver, level, x, xa, xb):
        """Newton's method for the aim ``log level - band`` on the last step's dense output, from ``x``, while it
        improves (late in a stiff flow the dense output's rate can be far off: then ``x`` is kept)."""
        band, best = self.band, None
        for _ in range(6):
            g, d = self._level_offset(solver.dense(x) + [x], level)
            if best is not None and abs(g + band) >= best[1]:
                return best[0]
            best = (x, abs(g + band))
            xn = min(max(x - (g + band) / d, xa), xb)
            if xn == x:
                break
            x = xn
        return x

    def _check_precision(self, z):
        """On the raw path: stop (``Status.PRECISION_LOST``) when the working precision no longer resolves the
        state at ``z`` (:meth:`.systems.RawSystem.precision_problem`: a watched det below its floor, every
        factor's against ``max(10^(10 - digits), sqrt(tol))`` on ``path="raw"``, ``det W`` against ``10^(10 -
        digits)`` on a raw start of the chart path, or the loss's rounding bound above ``10^-20`` of it), or a
        watched det changed sign since the last step from inside the band where it is not resolved (it jumped
        over the band: :meth:`.systems.RawSystem.sign_jump`)."""
        sys_ = self.system
        if sys_.kind != "raw":
            return
        ctx = self.ctx
        problem = sys_.precision_problem(z)
        if problem is not None:
            raise _Stop(Status.PRECISION_LOST,
                        f"{problem} at t ~ {ctx.nstr(ctx.expm1(z[-1]), 5)}: {self.work_dps} digits and tol "
                        f"{ctx.nstr(self.tol, 2)} cannot resolve it")
        # issue 11: a det that decays through that band can cross it inside one step
        watch = sys_.det_watch(z)
        prev, self._raw_det = getattr(self, "_raw_det", None), watch
        jump = None if prev is None else sys_.sign_jump(prev, watch)
        if jump is not None:
            raise _Stop(Status.PRECISION_LOST, f"{jump} (the step ending at t ~ {ctx.nstr(ctx.expm1(z[-1]), 5)}); "
                                               f"{self.work_dps} digits and tol {ctx.nstr(self.tol, 2)} cannot "
                                               f"resolve it")

    def _post_step(self):
        """Re-chart and raw-to-chart switch after an accepted step (its precision was checked before)."""
        solver = self.solver
        z = solver.y
        sys_ = self.system
        if sys_.kind == "raw":
            if self.use_chart:
                cs = self._chart_from_raw(sys_, z)
                if cs is not None:
                    self.system, zc = cs
                    self._new_solver(zc)
                    return
        else:
            zc = sys_.recentre(z)
            if zc is not None:
                self.stats["recharts"] += 1
                solver.set_state(solver.x, zc)
        solver.atol = sys_.atol(solver.y, self.tol)[:-1]


def _hermite_root(xa, fa, da, xb, fb, db):
    """A root in ``[xa, xb]`` of the cubic Hermite interpolant of values ``fa > 0 > fb`` and slopes ``da, db``
    (bisection on the cubic: robust, and accurate to the interpolant's own error)."""
    h = xb - xa

    def p(x):
        t = (x - xa) / h
        return ((2 * t ** 3 - 3 * t ** 2 + 1) * fa + (t ** 3 - 2 * t ** 2 + t) * h * da
                + (-2 * t ** 3 + 3 * t ** 2) * fb + (t ** 3 - t ** 2) * h * db)

    lo, hi = xa, xb
    for _ in range(48):     # to 2^-48 of the step: a start for Newton's method on the dense output
        mid = (lo + hi) / 2
        if p(mid) > 0:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


class _Done(Exception):
    """The reference run has recorded as many points as the main run."""


def factor_det_errors(rec: dict, ref: dict | None, D: int, ctx) -> tuple[list, list]:
    """``(dets as D-digit strings, errors)`` of the factors at a raw-path record: the reference's det moved to the
    record's tau to first order against the record's, times 2, plus the dets' rounding bound and the D-digit
    rounding; ``inf`` without a reference record (an error nobody estimated is unknown)."""
    dets = [ctx.nstr(v, D) for v in rec["fdets"]]
    if ref is None or "fdets" not in ref:
        return dets, [math.inf] * len(dets)
    dtau = rec["tau"] - ctx.mpf(ref["tau"])
    errs = []
    for a, b, da, db, fl in zip(rec["fdets"], ref["fdets"], rec["dfdets"], ref["dfdets"], rec["fdet_floors"]):
        b, db = ctx.mpf(b), ctx.mpf(db)
        move = abs(a - b - db * dtau) + abs(da - db) * abs(dtau)
        errs.append(float(2 * move + fl + abs(a) * ctx.mpf(10) ** (-D)))
    return dets, errs
