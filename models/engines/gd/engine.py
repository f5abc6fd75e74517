"""The ``gd`` engine class (:class:`GradientDescent`): options, input checks and the entry points; the method is
described in :mod:`models.engines.gd`."""

from __future__ import annotations

import math

import numpy as np
import torch

from ...errors import require
from ..base import AbstractEngine, Budget, Result, Spec
from .kernels import KERNELS, build_kernel
from .loop import BatchResult, run_loop


# ================================================================================================================
# The engine
# ================================================================================================================
def resolve_device(device) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    require(device in ("cpu", "cuda") or isinstance(device, torch.device),
            f"device must be None, 'cpu' or 'cuda', got {device!r}")
    dev = torch.device(device)
    require(dev.type in ("cpu", "cuda"), f"device must be None, 'cpu' or 'cuda', got {device!r}")
    if dev.type == "cuda":
        require(torch.cuda.is_available(), "device 'cuda' requested but torch sees no CUDA device")
    return dev



def _positive_int_or_none(name: str, v) -> int | None:
    if v is None:
        return None
    require(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1,
            f"{name} must be a positive integer or None, got {v!r}")
    return int(v)


class GradientDescent(AbstractEngine):
    """Batched float64 gradient descent (see the module docstring).

    Options: ``lr`` (step size, positive finite), ``device`` (None: CUDA if torch sees one, else CPU; or "cpu",
    "cuda"), ``record_every`` (record every k steps; None: the start and the end only, or ``per_decade`` points per
    decade of loss in :meth:`run`), ``check_every`` (steps between divergence / ``until_loss`` / budget checks),
    ``kernel`` ("auto", "elementwise", "matmul": deep matrix kernels; for CP "elementwise" is the sparse kernel,
    "matmul" the dense-product one, "auto" the dense one for batches of 16 or more on a CPU),
    ``step_rule`` ("constant", the default: ``lr`` every step; "normalized": one global step per iteration,
    ``lr / (sqrt(avg ||grad||^2) + rms_eps)`` with the average's decay ``rms_alpha``, as the official trainers'
    GroupRMSprop; deep matrix factorizations only; see :mod:`models.engines.gd_rules`). The step rule and its
    options are part of every result's settings (``describe_options``).
    """

    name = "gd"
    batched = True
    options = ("lr", "device", "record_every", "check_every", "kernel", "step_rule", "rms_alpha", "rms_eps")
    stops_by = ("steps", "until_loss")   # (t_max too, converted to ceil(t_max / lr) steps: see time_of)
    records_by = ("record_at", "record_every")
    clock = "step"

    def __init__(self, lr: float = 1e-2, device=None, record_every: int | None = None, check_every: int = 128,
                 kernel: str = "auto", step_rule: str = "constant", rms_alpha: float = 0.99, rms_eps: float = 1e-6):
        require(isinstance(lr, (int, float, np.floating)) and not isinstance(lr, bool) and math.isfinite(lr)
                and lr > 0, f"lr must be a positive finite number, got {lr!r}")
        self.lr = float(lr)
        self.device = resolve_device(device)
        self.record_every = _positive_int_or_none("record_every", record_every)
        ce = _positive_int_or_none("check_every", check_every)
        require(ce is not None, f"check_every must be a positive integer, got {check_every!r}")
        self.check_every = ce
        require(kernel in KERNELS, f"kernel must be one of {KERNELS}, got {kernel!r}")
        self.kernel = kernel
        from ..gd_rules import check_rule
        self.rule = check_rule(step_rule, rms_alpha, rms_eps)

    def describe_options(self) -> dict:
        return {"lr": self.lr, "device": str(self.device), "record_every": self.record_every,
                "check_every": self.check_every, "kernel": self.kernel, **self.rule}

    # ------------------------------------------------------------------------------------------------------
    def _advance(self, spec: Spec, budget: Budget) -> Result:
        factors = [np.asarray(F, dtype=float)[None] for F in spec.init.factors]
        res, K = self._loop(spec, factors, {}, budget)
        traj = res.trajectory(0)
        stats = dict(res.stats)
        stats["step_rule"] = self.rule["step_rule"]
        if hasattr(K, "rule_time"):
            stats["rule_time"] = float(K.rule_time()[0])
        stats["steps"] = int(res.final_step[0])
        stats["steps_per_s"] = stats["trajectory_steps"] / max(res.seconds, 1e-12)
        stats.pop("member", None)
        return Result(list(traj.points), traj.status, traj.status.message, "float64",
                      {"rounding_model": "8 eps L (k+1) prod ||W_j||_F"}, stats, traj.error_estimate)

    def _advance_batch(self, spec: Spec, factors: list[np.ndarray], budget: Budget, settings: dict) -> BatchResult:
        res, K = self._loop(spec, factors, settings, budget)
        if hasattr(K, "rule_time"):
            res.stats["rule_time"] = [float(v) for v in K.rule_time()]
        return res

    def _loop(self, spec: Spec, factors: list[np.ndarray], settings: dict, budget: Budget):
        """The batched loop on ``factors`` (one ``(B, ...)`` array per layer) under ``spec``'s stop rule and
        recording: the same for B = 1 and B = 10,000."""
        steps = spec.steps
        require(spec.t_max is None or self.rule["step_rule"] == "constant",
                "t_max converts to steps only with the constant step rule; give steps or until_loss")
        if spec.t_max is not None:
            from_t = int(math.ceil(spec.t_max / self.lr - 1e-9))
            steps = from_t if steps is None else min(steps, from_t)
        require(steps is not None or spec.until_loss is not None,
                "gradient descent needs steps (or t_max, converted to ceil(t_max / lr) steps) or until_loss")
        opts = dict(spec.options)
        unknown = set(opts) - {"record_every", "check_every"}
        require(not unknown, f"unknown gd run options {sorted(unknown)!r}; allowed: record_every, check_every")
        every = (spec.record_every or _positive_int_or_none("record_every", opts.get("record_every"))
                 or self.record_every)
        check_every = _positive_int_or_none("check_every", opts.get("check_every")) or self.check_every
        record_at = None
        if spec.record_at:
            record_at = []
            for v in spec.record_at:
                require(float(v) >= 0 and float(v) == int(v), f"gd record_at entries must be step numbers, got {v!r}")
                record_at.append(int(v))
            record_at = tuple(record_at)
        per_decade = None if (every or record_at) else spec.per_decade
        K = build_kernel(spec.problem, spec.model, factors, self.lr, self.device, self.kernel, rule=self.rule)
        with torch.no_grad():
            res = run_loop(K, spec.problem, spec.model, steps=steps, until_loss=spec.until_loss, record_every=every,
                           record_at=record_at, per_decade=per_decade, check_every=check_every,
                           budget=budget, settings=settings, device=self.device)
        return res, K
