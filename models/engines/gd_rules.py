"""Step rules of ``gd`` other than the constant step (issue 12): ``normalized``, the rule of the official RC20 /
ACHL19 trainers (``GroupRMSprop``).

``GroupRMSprop`` keeps one number per model, an exponential average of the squared norm of the *whole* gradient
(all layers together), and divides the learning rate by its root: one global step size per iteration,

    v_k   = alpha v_{k-1} + (1 - alpha) sum_j ||grad_{W_j} phi(W_k)||_F^2          (v_0 = 0)
    eta_k = lr / (sqrt(v_k / (1 - alpha^k)) + eps)                               (k = 1, 2, ...)
    W_j  <-  W_j - eta_k grad_{W_j} phi(W_k)                                      (every layer, same iterate)

(``alpha = 0.99``, ``eps = 1e-6`` by default, the trainers' values; the ``1 - alpha^k`` bias correction as in
their code). Each member of a batch is its own model with its own ``v``. This is gradient descent with a
time-varying step, so in the small-step limit it follows the gradient-flow path, at the time ``tau_k = sum_i
eta_i`` (``stats["rule_time"]`` holds each member's ``tau`` at its last step): plateaus, where the gradient is
tiny, are crossed in far fewer steps than with a constant step.

Implemented for deep matrix factorizations (any problem) on the batch-first ``matmul`` kernel of
:mod:`models.engines.gd`, whose forward pass and end-to-end gradient it reuses; the layer gradients are formed
first (with the old factors), then their norms, the step and the update. CP tensors: not offered here (their GD
kernels belong to the experiments' engines).
"""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import torch

from ..errors import require
from ..factorizations import DeepMatrix
from .gd.kernels import F64, Chunks, DeepMatmulKernel

STEP_RULES = ("constant", "normalized")
DEFAULT_ALPHA = 0.99
DEFAULT_EPS = 1e-6


def check_rule(step_rule, rms_alpha, rms_eps) -> dict:
    """Validated step-rule options (``InvalidInput`` otherwise)."""
    require(step_rule in STEP_RULES, f"step_rule must be one of {STEP_RULES}, got {step_rule!r}")
    require(isinstance(rms_alpha, (int, float)) and not isinstance(rms_alpha, bool) and 0 <= rms_alpha < 1,
            f"rms_alpha must be a number in [0, 1), got {rms_alpha!r}")
    require(isinstance(rms_eps, (int, float)) and not isinstance(rms_eps, bool) and math.isfinite(rms_eps)
            and rms_eps >= 0, f"rms_eps must be a finite number >= 0, got {rms_eps!r}")
    return {"step_rule": step_rule, "rms_alpha": float(rms_alpha), "rms_eps": float(rms_eps)}


class NormalizedDeepMatmul(DeepMatmulKernel):
    """The ``matmul`` deep-matrix kernel with the ``normalized`` step (module docstring)."""

    kind = "matmul-normalized"

    def __init__(self, problem, model: DeepMatrix, factors, lr: float, device: torch.device, alpha: float,
                 eps: float):
        super().__init__(problem, model, factors, lr, device)
        kw = {"dtype": F64, "device": device}
        b, L, dims = self.b, model.depth, model.dims
        self.alpha, self.eps = alpha, eps
        self.v = torch.zeros(b, **kw)             # the average of squared gradient norms, per member
        self.power = torch.ones(b, **kw)          # alpha^k
        self.tau = torch.zeros(b, **kw)           # sum of the steps taken (the gradient-flow time)
        H = {L: self.G}
        bwd: list = []
        for j in range(L, 1, -1):                 # H_{j-1} = W_j^T H_j with the old factors
            H[j - 1] = torch.zeros((b, dims[j - 1], dims[0]), **kw)
            bwd.append(partial(torch.bmm, self.W[j - 1].transpose(1, 2), H[j], out=H[j - 1]))
        grads = [H[1]]                            # d phi / d W_1 = H_1
        for j in range(2, L + 1):                 # d phi / d W_j = H_j P_{j-1}^T
            g = torch.zeros((b, dims[j], dims[j - 1]), **kw)
            bwd.append(partial(torch.bmm, H[j], self.P[j - 1].transpose(1, 2), out=g))
            grads.append(g)
        self.grads = grads
        bwd.append(self._update)
        self._bwd_ops = bwd
        self.set_mask(None)

    def _update(self) -> None:
        sq = None
        for g in self.grads:
            t = (g * g).sum(dim=(1, 2))
            sq = t if sq is None else sq.add_(t)
        a = self.alpha
        self.v.mul_(a).add_(sq, alpha=1 - a)
        self.power.mul_(a)
        step = self.lr / ((self.v / (1 - self.power)).sqrt_().add_(self.eps))
        if self.mask is not None:
            step.mul_(self.mask)                  # frozen members stay put and their time stops
        step = torch.nan_to_num(step, nan=0.0)    # v = 0 with eps = 0 (a zero gradient): no move
        self.tau.add_(step)
        s3 = step.view(-1, 1, 1)
        for W, g in zip(self.W, self.grads):
            W.addcmul_(g, s3, value=-1.0)


class RuleChunks(Chunks):
    """:class:`models.engines.gd.kernels.Chunks` that also reports each member's accumulated time."""

    def rule_time(self) -> np.ndarray:
        return np.concatenate([k.tau.cpu().numpy() for k in self.kernels])


def build_rule_kernel(problem, model, factors: list[np.ndarray], lr: float, device: torch.device,
                      rule: dict) -> RuleChunks:
    require(isinstance(model, DeepMatrix),
            f"the {rule['step_rule']!r} step rule is implemented for deep matrix factorizations only, got "
            f"{type(model).__name__}")
    k = NormalizedDeepMatmul(problem, model, factors, lr, device, rule["rms_alpha"], rule["rms_eps"])
    return RuleChunks([k], [(0, factors[0].shape[0])])
