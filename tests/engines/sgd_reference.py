"""The reference the gd tests compare with: torch.optim.SGD on the autograd loss, written as a user would."""

from __future__ import annotations

import numpy as np
import torch

from models import DeepMatrix


def sgd_reference(problem, model, factors, lr, steps):
    """End-to-end matrices (or CP tensors) after 0..steps steps of ``torch.optim.SGD`` on the autograd loss, and the
    final factors. Deep models use the problem's dense operator; CP models gather the observed entries."""
    params = [torch.tensor(np.asarray(F), dtype=torch.float64, requires_grad=True) for F in factors]
    opt = torch.optim.SGD(params, lr=lr)
    y = torch.tensor(problem.targets, dtype=torch.float64)
    out = []
    for k in range(steps + 1):
        if isinstance(model, DeepMatrix):
            P = params[0]
            for W in params[1:]:
                P = W @ P
            r = torch.tensor(problem.operator) @ P.reshape(-1) - y
        else:
            letters = "abcdefgh"[: model.order]
            P = torch.einsum(",".join(c + "z" for c in letters) + "->" + letters, *params)
            flat = np.ravel_multi_index(tuple(problem.indices.T), problem.dims)
            r = P.reshape(-1)[torch.tensor(flat)] - y
        out.append(P.detach().numpy().copy())
        if k == steps:
            break
        opt.zero_grad()
        (problem.loss_scale * (r * r).sum()).backward()
        opt.step()
    return out, [p.detach().numpy().copy() for p in params]
