"""The batched loop of :mod:`models.engines.gd` (:func:`run_loop`): runs a kernel between checks, freezes members
that diverge or reach ``until_loss``, records points with their rounding-error estimate, and returns a
:class:`BatchResult`."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ...errors import require
from ...factorizations import DeepMatrix
from ...trajectory import Point, Status, Trajectory, relative_error
from ..base import Batch, Budget, Stop, rounding_loss_error, stats_schema
from .kernels import EPS, F64, Chunks, det_sign_batch

_MAX_STEPS_NO_LIMIT = 2 ** 62


# ================================================================================================================
# Results
# ================================================================================================================
@dataclass(frozen=True, eq=False)
class BatchResult(Batch):
    """Recorded points of B gradient-descent trajectories run together.

    Rows are the recorded steps shared by the batch: ``steps`` (n_rec,), and per row and member ``loss``
    (n_rec, B), ``product`` (n_rec, B, ...), ``det_sign`` (n_rec, B) int8 (+1/-1; 0 where undefined or not
    resolvable in float64), ``recorded`` (n_rec, B) bool (False once a member stopped or diverged: its entries are
    NaN / 0 there), ``loss_err`` and ``product_err`` (n_rec, B). ``final_*`` describe each member's last trusted
    state: ``final_step`` (B,), ``final_loss`` (B,), ``final_product`` (B, ...), ``final_det_sign`` (B,),
    ``final_factors`` (list of (B, ...) arrays, first layer / mode first). ``status`` (B,) holds
    :class:`~models.trajectory.Status` value names ("completed", "diverged", "budget").
    """

    steps: np.ndarray
    loss: np.ndarray
    product: np.ndarray
    det_sign: np.ndarray
    recorded: np.ndarray
    loss_err: np.ndarray
    product_err: np.ndarray
    final_step: np.ndarray
    final_loss: np.ndarray
    final_product: np.ndarray
    final_det_sign: np.ndarray
    final_loss_err: np.ndarray
    final_product_err: np.ndarray
    final_factors: list
    status: np.ndarray
    seconds: float
    settings: dict = field(default_factory=dict)
    stats: dict = field(default_factory=dict)

    @property
    def B(self) -> int:
        return int(self.status.shape[0])

    def trajectory(self, b: int) -> Trajectory:
        """Member ``b`` as a :class:`~models.trajectory.Trajectory` (its recorded rows plus its final state)."""
        require(isinstance(b, (int, np.integer)) and 0 <= b < self.B, f"member index must be in [0, {self.B}), got {b!r}")
        b = int(b)
        points = []
        for r in np.flatnonzero(self.recorded[:, b]):
            points.append(_point(int(self.steps[r]), self.loss[r, b], self.product[r, b], self.det_sign[r, b],
                                 self.loss_err[r, b], self.product_err[r, b], None))
        factors = tuple(np.array(F[b]) for F in self.final_factors)
        fs = int(self.final_step[b])
        if points and points[-1].step == fs:
            last = points[-1]
            points[-1] = Point(None, fs, last.loss, last.product, last.det_sign, factors, last.loss_err,
                               last.product_err)
        elif (not points or points[-1].step < fs) and math.isfinite(float(self.final_loss[b])):
            points.append(_point(fs, self.final_loss[b], self.final_product[b], self.final_det_sign[b],
                                 self.final_loss_err[b], self.final_product_err[b], factors))
        status = Status(str(self.status[b]))
        stats = dict(self.stats)
        stats.update({"steps": fs, "member": b})
        return Trajectory("gd", dict(self.settings), tuple(points), status, status.message, relative_error(points),
                          "float64", {}, stats_schema(stats), self.seconds)


def _point(step, loss, prod, det, lerr, perr, factors) -> Point:
    det = int(det)
    return Point(None, int(step), float(loss), np.array(prod), det if det != 0 else None, factors, float(lerr),
                 float(perr))


def _spent(budget: Budget, steps: int) -> bool:
    """Whether ``budget`` is spent after ``steps`` steps (the base class's own check, without raising)."""
    try:
        budget.check(steps)
    except Stop:
        return True
    return False


# ================================================================================================================
# The batched loop
# ================================================================================================================
def run_loop(K: Chunks, problem, model, *, steps: int | None, until_loss: float | None, record_every: int | None,
              record_at: tuple[int, ...] | None, per_decade: int | None, check_every: int,
              budget: Budget, settings: dict, device: torch.device) -> BatchResult:
    """Run kernel ``K`` to the stop rule, recording as asked. ``budget``: the run's
    :class:`~models.engines.base.Budget` (wall clock from the run's start, and ``max_steps`` where the engine has
    one), checked at every check point (every ``check_every`` steps) as the other engines check it every step."""
    start = time.perf_counter()
    B = K.b
    depth = model.depth if isinstance(model, DeepMatrix) else model.order
    is_matrix = isinstance(model, DeepMatrix)
    a_rows = problem.measurement_norms() if is_matrix else np.ones(problem.m)
    ls = problem.loss_scale
    end_step = steps if steps is not None else _MAX_STEPS_NO_LIMIT
    rec_at = sorted({int(s) for s in record_at if 0 <= s <= end_step}) if record_at else []

    active = np.ones(B, bool)
    status = np.array([Status.COMPLETED.value] * B, dtype=object)
    final_step = np.zeros(B, np.int64)
    last_rec_loss = np.full(B, np.inf)
    rows: list[tuple] = []
    n_checks = 0
    steps_done = 0  # trajectory-steps actually iterated (frozen members included)

    def evaluate(at_step):
        """Loss, product error and loss error per member, at step ``at_step`` (scalar or per member)."""
        with np.errstate(all="ignore"):
            r = K.residuals()
            loss = ls * (r * r).sum(axis=0)
            perr = 8.0 * EPS * depth * (np.asarray(at_step, dtype=float) + 1.0) * K.scale()
            lerr = rounding_loss_error(ls, r, a_rows, perr, EPS, loss)
        return loss, perr, lerr

    def record(s: int, sel: np.ndarray, loss, perr, lerr):
        with np.errstate(all="ignore"):
            prod = K.product()
        det = det_sign_batch(K.factors()) if is_matrix else np.zeros(B, np.int8)
        loss_r = np.where(sel, loss, np.nan)
        prod_r = np.where(sel.reshape((B,) + (1,) * (prod.ndim - 1)), prod, np.nan)
        rows.append((s, sel.copy(), loss_r, prod_r, np.where(sel, det, 0).astype(np.int8),
                     np.where(sel, lerr, np.nan), np.where(sel, perr, np.nan)))

    s = 0
    snap_step = 0
    mask_dirty = False
    ptr = 0  # next entry of rec_at
    for op in K.fwd_ops:
        op()
    while True:
        # ---- check at step s (fwd_ops have been run for the current iterate) --------------------------------
        n_checks += 1
        loss, perr, lerr = evaluate(s)
        with np.errstate(all="ignore"):
            fin = K.finite() & np.isfinite(loss) & np.isfinite(lerr)
        newly = active & ~fin
        if newly.any():
            K.restore(newly)
            status[newly] = Status.DIVERGED.value
            final_step[newly] = snap_step
            active &= ~newly
            mask_dirty = True
            for op in K.fwd_ops:  # the restored members need their product recomputed
                op()
            loss, perr, lerr = evaluate(s)
        at_end = s >= end_step
        over_budget = not at_end and _spent(budget, s)
        while ptr < len(rec_at) and rec_at[ptr] < s:
            ptr += 1
        sel = np.zeros(B, bool)
        if s == 0 or at_end or over_budget or (record_every and s % record_every == 0) \
                or (ptr < len(rec_at) and rec_at[ptr] == s):
            sel |= active
        if per_decade:
            sel |= active & (loss <= last_rec_loss * 10.0 ** (-1.0 / per_decade))
        reached = active & (loss <= until_loss) if until_loss is not None else np.zeros(B, bool)
        sel |= reached
        if sel.any():
            record(s, sel, loss, perr, lerr)
            last_rec_loss = np.where(sel, loss, last_rec_loss)
        if reached.any():
            final_step[reached] = s
            active &= ~reached
            mask_dirty = True
        if at_end or over_budget:
            final_step[active] = s
            if over_budget:
                status[active] = Status.BUDGET.value
            active[:] = False
        if not active.any():
            break
        K.snapshot()
        snap_step = s
        if mask_dirty:
            K.set_mask(torch.tensor(active, dtype=F64, device=device))
            mask_dirty = False
        # ---- run to the next check ------------------------------------------------------------------------
        nxt = min(end_step, s + check_every)
        if record_every:
            nxt = min(nxt, (s // record_every + 1) * record_every)
        while ptr < len(rec_at) and rec_at[ptr] <= s:
            ptr += 1
        if ptr < len(rec_at):
            nxt = min(nxt, rec_at[ptr])
        n = nxt - s
        for op in K.tail_ops:
            op()
        ops = K.ops
        for _ in range(n - 1):
            for op in ops:
                op()
        for op in K.fwd_ops:
            op()
        s = nxt
        steps_done += n * B

    # ---- final states (frozen members sit at their final step; diverged ones at their last finite check) ------
    for op in K.fwd_ops:
        op()
    loss, f_perr, f_lerr = evaluate(final_step)
    factors = K.factors()
    with np.errstate(all="ignore"):
        prod = K.product()
    det = det_sign_batch(factors) if is_matrix else np.zeros(B, np.int8)
    seconds = time.perf_counter() - start
    shape = tuple(model.shape) if is_matrix else tuple(model.dims)
    if rows:
        steps_arr = np.array([row[0] for row in rows], np.int64)
        stacked = [np.stack([row[i] for row in rows]) for i in range(1, 7)]
    else:
        steps_arr = np.zeros(0, np.int64)
        stacked = [np.zeros((0, B), bool), np.zeros((0, B)), np.zeros((0, B) + shape), np.zeros((0, B), np.int8),
                   np.zeros((0, B)), np.zeros((0, B))]
    recorded, loss_rows, prod_rows, det_rows, lerr_rows, perr_rows = stacked
    stats = {"steps": int(final_step.max()) if B else 0, "B": B, "device": str(device), "kernel": K.kind,
             "granularity": K.gran, "chunks": len(K.kernels), "checks": n_checks,
             "trajectory_steps": int(steps_done), "steps_per_s": steps_done / max(seconds, 1e-12)}
    return BatchResult(steps_arr, loss_rows, prod_rows, det_rows, recorded, lerr_rows, perr_rows, final_step,
                       loss, prod, det, f_lerr, f_perr, factors, status.astype(str), seconds, settings, stats)
