"""The fast gradient-descent kernels behind the engine contract: ``gd-small``, ``gd-cp`` and ``gd-dense``.

Three kernels serve the papers' experiments at their own sizes faster than the general ``gd`` loop:
:func:`models.engines.gd_small.run_deep_gd` (numba, square deep matrix factorizations of a few entries, millions of
steps), :func:`models.engines.cp_fast.run_cp_gd` (torch ``bmm`` on Khatri-Rao products, CP tensor completion,
the GroupRMSprop step rule, component norms) and :func:`models.engines.dmf_fast.run_dmf_gd` (hand-written torch
gradients for dense deep matrix factorizations, the ACHL19 100x100 runs; singular values and alignment records).
Claims and commands reach them through ``get_engine("gd-small" | "gd-cp" | "gd-dense", ...).run(problem, model,
init_or_batch, **spec)`` as every other engine.

All batch natively (``batched``): a batch returns a :class:`KernelBatch`, one :class:`~models.trajectory.Trajectory`
per member, and **the kernel's own record in** ``KernelBatch.kernel_run`` (a
:class:`~models.engines.gd_small.SmallRun`, :class:`~models.engines.cp_fast.CPRun` or
:class:`~models.engines.dmf_fast.DMFRun`): every recorded step of a
``gd-small`` member with its det sign, the loss history every ``check_every`` steps, the reconstruction errors and
the component norms of ``gd-cp`` (``norm_steps``, ``component_norms``), the singular values and ``|U^T grad V|``
statistics of ``gd-dense``. A single ``Init`` returns the member's
trajectory (a batch of one, the same arithmetic). What the kernels honour of the contract:

- stops: ``steps`` (required: the kernels run at most that many updates; reaching it is status ``completed``, as
  for ``gd``, while ``kernel_run.status`` keeps the kernel's "budget") and ``until_loss``; ``gd-cp`` also takes
  the run options ``target`` (the tensor to reconstruct) and ``until_reconstruction`` (stop when ``||T - T*|| /
  ||T*||`` is at most it, checked every ``check_every`` steps). No kernel checks ``wall_budget`` (a kernel
  runs uninterrupted; its step count bounds the run).
- records: ``gd-small`` every ``record_every`` steps and at the end (``per_decade`` and ``record_at`` are not
  honoured: the kernel records on a fixed stride); ``gd-cp`` the start and the end of each member as points (the
  kernel keeps no intermediate tensors; its loss history and component norms are in ``kernel_run``); ``gd-dense``
  every ``record_every`` steps and at the end, each record a point (with ``record_products=False``, as the claims
  run, the start and the end only: the records stay in ``kernel_run``).
- errors: rounding only, with the ``gd`` engine's model (:mod:`models.engines.gd`): ``product_err = 8 eps L (k+1)
  prod_j ||W_j||_F`` (deep; the kernel records the scale at every recorded step) and ``8 eps N (k+1) sum_r prod_n
  ||w_r^n||`` (CP, at the start and the end), ``eps`` of the kernel's dtype (``gd-cp`` runs float32 with
  ``dtype="float32"`` or ``"float32-f64"``, ``gd-dense`` with ``dtype="float32"``), and ``loss_err = loss_scale sum_i (2 |r_i| a_i perr + (a_i perr)^2) + 2 m eps loss``.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import require
from ..factorizations import CP, DeepMatrix
from ..trajectory import Point, Status, Trajectory, relative_error
from .base import AbstractEngine, Budget, Result, Spec, TrajectoryBatch, rounding_loss_error, stats_schema


class KernelBatch(TrajectoryBatch):
    """The :class:`~models.engines.base.Batch` of a fast kernel: the members' trajectories, and ``kernel_run``,
    the kernel's own record (see the module docstring)."""

    def __init__(self, trajectories, kernel_run):
        super().__init__(trajectories)
        self.kernel_run = kernel_run


def _positive_int(name: str, v, allow_none: bool = False, allow_zero: bool = False):
    if v is None and allow_none:
        return None
    require(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and (v >= 1 or (allow_zero and v == 0)),
            f"{name} must be a {'non-negative' if allow_zero else 'positive'} integer, got {v!r}")
    return int(v)


def _lr(lr) -> float:
    require(isinstance(lr, (int, float, np.floating)) and not isinstance(lr, bool) and math.isfinite(lr) and lr > 0,
            f"lr must be a positive finite number, got {lr!r}")
    return float(lr)


def _loss_err(problem, residuals: np.ndarray, loss: float, perr: float, eps: float) -> float:
    """:func:`~models.engines.base.rounding_loss_error` with ``a_i`` from
    :meth:`~models.problems.MatrixProblem.measurement_norms` (no dense operator; 1 for tensor entries)."""
    a = problem.measurement_norms() if hasattr(problem, "measurement_norms") else 1.0
    return float(rounding_loss_error(problem.loss_scale, residuals, a, perr, eps, abs(loss)))


class _KernelEngine(AbstractEngine):
    batched = True
    clock = "step"
    stops_by = ("steps", "until_loss")
    run_options: tuple[str, ...] = ()

    def _advance(self, spec: Spec, budget: Budget) -> Result:
        batch = self._advance_batch(spec, [np.asarray(F, dtype=float)[None] for F in spec.init.factors], budget, {})
        tr = batch[0]
        stats = {k: v for k, v in tr.stats.items() if k not in ("member", "B")}
        return Result(list(tr.points), tr.status, tr.message, tr.precision, tr.tolerances, stats, tr.error_estimate)

    def _checked(self, spec: Spec) -> tuple[int, float, dict]:
        require(spec.steps is not None, f"{self.name} needs steps (the kernel runs at most that many updates)")
        require(spec.t_max is None, f"{self.name} stops by steps or until_loss, not t_max")
        require(not spec.record_at, f"{self.name} does not take record_at"
                + ("; it records every record_every steps" if "record_every" in self.records_by else ""))
        opts = dict(spec.options)
        unknown = sorted(set(opts) - set(self.run_options))
        require(not unknown, f"unknown {self.name} run options {unknown!r}; allowed: {', '.join(self.run_options) or 'none'}")
        return int(spec.steps), (0.0 if spec.until_loss is None else float(spec.until_loss)), opts

    def _trajectory(self, settings, points, status, stats, precision, seconds) -> Trajectory:
        # the kernels say "budget" when they reach ``steps``: a stop the caller named, so "completed" as for ``gd``
        # (the kernel's own record keeps its word)
        st = Status.COMPLETED if str(status) == "budget" else Status(str(status))
        return Trajectory(self.name, dict(settings), tuple(points), st, st.message, relative_error(points), precision,
                          {"rounding_model": self.rounding_model}, stats_schema(stats), seconds)


class GradientDescentSmall(_KernelEngine):
    """``gd-small``: full-batch float64 gradient descent on square deep matrix factorizations by the compiled loop
    of :mod:`models.engines.gd_small` (the RC20 2x2 experiments: millions of steps in about a second).

    Options: ``lr`` (step size), ``record_every`` (record every k steps; None: the start and the end only; the
    run's own ``record_every`` takes precedence)."""

    name = "gd-small"
    options = ("lr", "record_every")
    records_by = ("record_every",)
    models = ("deep",)
    rounding_model = "8 eps L (k+1) prod ||W_j||_F"

    def __init__(self, lr: float = 1e-2, record_every: int | None = None):
        self.lr = _lr(lr)
        self.record_every = _positive_int("record_every", record_every, allow_none=True)

    def describe_options(self) -> dict:
        return {"lr": self.lr, "record_every": self.record_every, "step_rule": "constant"}

    def _advance_batch(self, spec: Spec, factors, budget: Budget, settings: dict) -> KernelBatch:
        from .gd_small import run_deep_gd

        steps, until, _ = self._checked(spec)
        model = spec.model
        require(isinstance(model, DeepMatrix) and all(s[0] == s[1] == model.shape[0] for s in model.layer_shapes),
                f"{self.name} runs square deep matrix factorizations (every layer d x d)")
        every = spec.record_every or self.record_every
        res = run_deep_gd(spec.problem, np.stack(factors, axis=1), lr=self.lr, steps=steps, until_loss=until,
                          record_every=every)
        p, L, eps = spec.problem, model.depth, np.finfo(np.float64).eps

        def point(k, loss, prod, det, scale, fac):
            perr = 8.0 * eps * L * (k + 1) * scale
            lerr = _loss_err(p, p.residuals(prod), loss, perr, eps)
            det = int(det)
            return Point(None, int(k), float(loss), np.array(prod), det if det != 0 else None, fac, lerr, perr)

        trajectories = []
        for b in range(res.final_step.shape[0]):
            n = int(res.n_rec[b])
            fac = tuple(np.array(res.factors[b, j]) for j in range(L))
            fk = int(res.final_step[b])
            pts = [point(res.step[r, b], res.loss[r, b], res.product[r, b], res.det_sign[r, b], res.scale[r, b],
                         fac if (r == n - 1 and int(res.step[r, b]) == fk) else None) for r in range(n)]
            if not pts or pts[0].step != 0:  # without record_every the kernel records the end only: add the start
                W0 = [F[b] for F in factors]
                P0 = np.linalg.multi_dot(W0[::-1]) if L > 1 else W0[0]
                r0 = p.residuals(P0)
                sign = int(np.prod([np.sign(np.linalg.det(W)) for W in W0]))
                pts.insert(0, point(0, float(p.loss_scale * np.sum(r0 * r0)), P0, sign,
                                    float(np.prod([np.linalg.norm(W) for W in W0])), None))
            if (not pts or pts[-1].step < fk) and math.isfinite(float(res.final_loss[b])):
                scale = float(np.prod([np.linalg.norm(W) for W in fac]))
                pts.append(point(fk, res.final_loss[b], res.final_product[b], res.final_det_sign[b], scale, fac))
            stats = {"steps": fk, "path": "numba", "B": int(res.final_step.shape[0]), "member": b,
                     "kernel_seconds": res.seconds}
            trajectories.append(self._trajectory(settings, pts, res.status[b], stats, "float64", res.seconds))
        return KernelBatch(trajectories, res)


class GradientDescentCP(_KernelEngine):
    """``gd-cp``: batched gradient descent on CP tensor completion by :mod:`models.engines.cp_fast` (dense
    Khatri-Rao products in torch; the RC20 / RMC21 tensor experiments).

    Options: ``lr``; ``step_rule`` ("constant", "group_rmsprop", the official codes' GroupRMSprop, which ``gd``
    calls "normalized": that name is accepted too, or "group_rmsprop_capped", GroupRMSprop with its step capped
    by a bound on 1 / the Gauss-Newton curvature, which converges where GroupRMSprop bounces) with their
    ``beta`` and ``eps``; ``dtype`` ("float64"; "float32", as the official order-4 runs; "float32-f64", float32
    products with the factors kept and updated in float64, so that updates below a float32 ulp of the factors
    are not lost); ``threads`` (torch
    threads during the run; None: torch's setting); ``check_every`` (steps between loss-history rows and
    ``until_reconstruction`` checks); ``norms_every`` (record the component norms every k steps; 0: not). Run
    options (``options=`` of :meth:`run`): ``target``, ``until_reconstruction``."""

    name = "gd-cp"
    options = ("lr", "step_rule", "beta", "eps", "dtype", "threads", "check_every", "norms_every")
    records_by = ()
    models = ("cp",)
    run_options = ("target", "until_reconstruction")
    rounding_model = "8 eps N (k+1) sum_r prod_n ||w_r^n||"

    def __init__(self, lr: float = 1e-2, step_rule: str = "constant", beta: float = 0.99, eps: float = 1e-6,
                 dtype: str = "float64", threads: int | None = None, check_every: int = 50, norms_every: int = 0):
        from .cp_fast import DTYPES, STEP_RULES

        self.lr = _lr(lr)
        if step_rule == "normalized":  # gd's name for the same rule (models.engines.gd_rules), as --step-rule says
            step_rule = "group_rmsprop"
        require(step_rule in STEP_RULES, f"step_rule must be one of {STEP_RULES} or normalized, got {step_rule!r}")
        require(dtype in DTYPES, f"dtype must be one of {DTYPES}, got {dtype!r}")
        for nm, v in (("beta", beta), ("eps", eps)):
            require(isinstance(v, (int, float)) and math.isfinite(v) and v >= 0, f"{nm} must be >= 0, got {v!r}")
        require(beta < 1, f"beta must be < 1, got {beta!r}")
        self.step_rule, self.beta, self.eps, self.dtype = step_rule, float(beta), float(eps), dtype
        self.threads = _positive_int("threads", threads, allow_none=True)
        self.check_every = _positive_int("check_every", check_every)
        self.norms_every = _positive_int("norms_every", norms_every, allow_zero=True)

    def describe_options(self) -> dict:
        return {"lr": self.lr, "step_rule": self.step_rule, "beta": self.beta, "eps": self.eps, "dtype": self.dtype,
                "threads": self.threads, "check_every": self.check_every, "norms_every": self.norms_every}

    def _advance_batch(self, spec: Spec, factors, budget: Budget, settings: dict) -> KernelBatch:
        from .cp_fast import run_cp_gd

        steps, until, opts = self._checked(spec)
        require(isinstance(spec.model, CP), f"{self.name} runs CP factorizations")
        rec = opts.get("until_reconstruction", 0.0)
        require(isinstance(rec, (int, float)) and math.isfinite(rec) and rec >= 0,
                f"until_reconstruction must be a number >= 0, got {rec!r}")
        res = run_cp_gd(spec.problem, factors, lr=self.lr, steps=steps, step_rule=self.step_rule, until_loss=until,
                        target=opts.get("target"), until_reconstruction=float(rec), check_every=self.check_every,
                        beta=self.beta, eps=self.eps, dtype=self.dtype, threads=self.threads,
                        norms_every=self.norms_every)
        p, N = spec.problem, len(spec.model.dims)
        eps = float(np.finfo(np.float64 if self.dtype == "float64" else np.float32).eps)  # the products' arithmetic

        def point(k, fac, T, loss):
            scale = float(np.sum(np.prod([np.linalg.norm(U, axis=0) for U in fac], axis=0)))
            perr = 8.0 * eps * N * (k + 1) * scale
            r = p.residuals(T)
            loss = float(p.loss_scale * np.sum(r * r)) if loss is None else float(loss)
            return Point(None, int(k), loss, np.array(T), None, fac, _loss_err(p, r, loss, perr, eps), perr)

        trajectories = []
        for b in range(len(res.status)):
            start = tuple(np.array(F[b]) for F in factors)
            T0 = np.einsum(",".join(f"{chr(97 + n)}z" for n in range(N)) + "->" + "".join(chr(97 + n) for n in range(N)),
                           *start)
            pts = [point(0, start, T0, None)]
            fk = int(res.final_step[b])
            if fk > 0 and math.isfinite(float(res.final_loss[b])):
                pts.append(point(fk, tuple(np.array(F[b]) for F in res.factors), res.tensor[b], res.final_loss[b]))
            stats = {"steps": fk, "path": f"torch bmm {self.dtype}", "B": len(res.status), "member": b,
                     "kernel_seconds": res.seconds}
            trajectories.append(self._trajectory(settings, pts, res.status[b], stats, self.dtype, res.seconds))
        return KernelBatch(trajectories, res)


class GradientDescentDense(_KernelEngine):
    """``gd-dense``: batched gradient descent on dense deep matrix factorizations (completion and sensing) by the
    hand-written kernel of :mod:`models.engines.dmf_fast` (the ACHL19 experiments at 100x100, several inits at
    once; CUDA graphs on a GPU).

    Options: ``lr``; ``step_rule`` ("constant" or "group_rmsprop", the official trainers' GroupRMSprop, which
    ``gd`` calls "normalized": that name is accepted too) with ``rms_alpha`` (0.99) and ``rms_eps`` (1e-6 as ``gd``; the
    ACHL19 runner's 1e-4 is passed by its claims); ``device`` (None:
    CUDA when torch sees one, else the CPU, as ``gd``; the claims pass "cpu"); ``dtype`` ("float64" or
    "float32"); ``threads`` (torch threads during the run; None: torch's setting); ``check_every`` (steps between
    ``until_loss`` checks); ``record_every`` (None: the start and the end only; the run's own ``record_every``
    takes precedence); ``record_svals`` (the k largest singular values at each record, in ``kernel_run.svals``);
    ``record_alignment`` (ACHL19 figure 3's ``|U^T grad V|`` statistics, with ``record_svals``);
    ``record_products`` (keep the end-to-end matrix at each record so that every record is a point; False: the
    points are the start and the end, the records stay in ``kernel_run``, as the claims run). The kernel does
    not check ``wall_budget``."""

    name = "gd-dense"
    options = ("lr", "step_rule", "rms_alpha", "rms_eps", "device", "dtype", "threads", "check_every",
               "record_every", "record_svals", "record_alignment", "record_products")
    records_by = ("record_every",)
    models = ("deep",)
    rounding_model = "8 eps L (k+1) prod ||W_j||_F"

    def __init__(self, lr: float = 1e-2, step_rule: str = "constant", rms_alpha: float = 0.99,
                 rms_eps: float = 1e-6, device=None, dtype: str = "float64", threads: int | None = None,
                 check_every: int = 100, record_every: int | None = None, record_svals: int = 0,
                 record_alignment: bool = False, record_products: bool = True):
        from .dmf_fast import DTYPES, STEP_RULES, resolve_device

        self.lr = _lr(lr)
        if step_rule == "normalized":  # gd's name for the same rule (models.engines.gd_rules)
            step_rule = "group_rmsprop"
        require(step_rule in STEP_RULES, f"step_rule must be one of {STEP_RULES} or normalized, got {step_rule!r}")
        require(dtype in DTYPES, f"dtype must be one of {tuple(DTYPES)}, got {dtype!r}")
        for nm, v in (("rms_alpha", rms_alpha), ("rms_eps", rms_eps)):
            require(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0,
                    f"{nm} must be a number >= 0, got {v!r}")
        require(rms_alpha < 1, f"rms_alpha must be < 1, got {rms_alpha!r}")
        for nm, v in (("record_alignment", record_alignment), ("record_products", record_products)):
            require(isinstance(v, bool), f"{nm} must be true or false, got {v!r}")
        self.step_rule, self.rms_alpha, self.rms_eps, self.dtype = step_rule, float(rms_alpha), float(rms_eps), dtype
        self.device = resolve_device(device)
        self.threads = _positive_int("threads", threads, allow_none=True)
        self.check_every = _positive_int("check_every", check_every)
        self.record_every = _positive_int("record_every", record_every, allow_none=True)
        self.record_svals = _positive_int("record_svals", record_svals, allow_zero=True)
        require(not record_alignment or self.record_svals > 0, "record_alignment needs record_svals >= 1")
        self.record_alignment, self.record_products = record_alignment, record_products

    def describe_options(self) -> dict:
        return {"lr": self.lr, "step_rule": self.step_rule, "rms_alpha": self.rms_alpha, "rms_eps": self.rms_eps,
                "device": str(self.device), "dtype": self.dtype, "threads": self.threads,
                "check_every": self.check_every, "record_every": self.record_every,
                "record_svals": self.record_svals, "record_alignment": self.record_alignment,
                "record_products": self.record_products}

    def _advance_batch(self, spec: Spec, factors, budget: Budget, settings: dict) -> KernelBatch:
        from .dmf_fast import run_dmf_gd

        steps, until, _ = self._checked(spec)
        model = spec.model
        require(isinstance(model, DeepMatrix), f"{self.name} runs deep matrix factorizations")
        every = spec.record_every or self.record_every or 0
        res = run_dmf_gd(spec.problem, factors, lr=self.lr, steps=steps, step_rule=self.step_rule, until_loss=until,
                         record_every=every, record_svals=self.record_svals, record_alignment=self.record_alignment,
                         check_every=self.check_every, rms_alpha=self.rms_alpha, rms_eps=self.rms_eps,
                         device=self.device, dtype=self.dtype, threads=self.threads,
                         record_products=self.record_products)
        p, L = spec.problem, model.depth
        eps = float(np.finfo(np.float64 if self.dtype == "float64" else np.float32).eps)

        def point(k, loss, prod, scale, fac, det):
            perr = 8.0 * eps * L * (k + 1) * float(scale)
            lerr = _loss_err(p, p.residuals(prod), float(loss), perr, eps)
            return Point(None, int(k), float(loss), np.array(prod), det, fac, lerr, perr)

        def det_sign(fs):  # the product of the factors' det signs (square factors), else unresolved
            if not all(F.shape[0] == F.shape[1] for F in fs):
                return None
            s = int(np.prod([np.sign(np.linalg.det(F)) for F in fs]))
            return s if s != 0 else None

        trajectories = []
        for b in range(len(res.status)):
            fk = int(res.final_step[b])
            start = [F[b] for F in factors]
            end = tuple(np.array(F[b]) for F in res.factors)
            last = int(np.searchsorted(res.steps, fk, side="right"))  # the records up to the member's last step
            pts = [point(0, res.loss[0, b], np.linalg.multi_dot(start[::-1]) if L > 1 else start[0],
                         res.scale[0, b], None, det_sign(start))]
            if res.products is not None:
                pts += [point(res.steps[r], res.loss[r, b], res.products[r, b], res.scale[r, b], None, None)
                        for r in range(1, last) if int(res.steps[r]) < fk]
            if fk > 0 and math.isfinite(float(res.final_loss[b])):
                scale = float(np.prod([np.linalg.norm(F) for F in end]))
                pts.append(point(fk, res.final_loss[b], res.product[b], scale, end, det_sign(end)))
            stats = {"steps": fk, "path": f"torch bmm {self.dtype} {self.device}", "B": len(res.status), "member": b,
                     "kernel_seconds": res.seconds}
            trajectories.append(self._trajectory(settings, pts, res.status[b], stats, self.dtype, res.seconds))
        return KernelBatch(trajectories, res)


__all__ = ["GradientDescentCP", "GradientDescentDense", "GradientDescentSmall", "KernelBatch"]
