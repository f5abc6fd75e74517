"""A toolkit for CP tensor factorizations (Razin, Maman & Cohen 2021), shared by the RMC21 claims, the GD claims and
their tests: random completion problems, the equivalent one-hidden-layer convolutional arithmetic circuit, the
conserved norm differences and the unbalancedness, component tensors, their alignments with a gradient, and the
component-norm rates by torch autograd (independent of :func:`models.factorizations.cp_factor_grads`).

Factors are ``U_n = [w_1^n .. w_R^n]`` (``d_n x R``), the component ``W_r = w_r^1 (x) ... (x) w_r^N``.
"""

from __future__ import annotations

import numpy as np

from models.problems import TensorProblem, tensor_completion


def random_problem(dims, n_obs: int, rng: np.random.Generator, reduction: str = "half_sum") -> TensorProblem:
    """Completion of ``n_obs`` random entries with i.i.d. N(0, 1) values (no low-rank structure)."""
    total = int(np.prod(dims))
    flat = np.sort(rng.choice(total, size=int(n_obs), replace=False))
    idx = np.stack(np.unravel_index(flat, tuple(dims)), axis=1)
    return tensor_completion(tuple(dims), idx, rng.standard_normal(len(flat)), reduction=reduction)


def network_forward(factors, inputs) -> np.ndarray:
    """The one-hidden-layer convolutional arithmetic circuit of RMC21 on a batch of inputs.

    ``inputs[n]`` is a ``(B, d_n)`` array (the n-th "patch" of each of B inputs, one-hot for tensor entries). The
    hidden layer is locally connected and linear: channel r at position n computes ``<w_r^n, x_n>`` (weights not
    shared across positions); global product pooling multiplies the N positions channel by channel; the output
    sums the R channels. Written with plain matrix products, independently of :func:`cp_tensor`."""
    B = np.asarray(inputs[0]).shape[0]
    pooled = np.ones((B, np.asarray(factors[0]).shape[1]))
    for U, x in zip(factors, inputs):
        pooled = pooled * (np.asarray(x, dtype=float) @ np.asarray(U, dtype=float))   # (B, R) hidden activations
    return pooled.sum(axis=1)


def one_hot_inputs(dims, index_tuples) -> list[np.ndarray]:
    idx = np.asarray(index_tuples, dtype=int)
    return [np.eye(d)[idx[:, n]] for n, d in enumerate(dims)]


def unbalancedness(factors) -> float:
    """``eps = max_r max_{n,n'} | ||w_r^n||^2 - ||w_r^n'||^2 |`` (catalog RMC21-Lem-Conservation)."""
    sq = np.stack([np.sum(np.asarray(U) ** 2, axis=0) for U in factors])   # (N, R)
    return float(np.max(sq.max(axis=0) - sq.min(axis=0)))


def norm_differences(factors) -> np.ndarray:
    """``||w_r^n||^2 - ||w_r^1||^2`` for n = 2..N and every r (the conserved quantities), shape (N-1, R)."""
    sq = np.stack([np.sum(np.asarray(U) ** 2, axis=0) for U in factors])
    return sq[1:] - sq[:1]


def component_tensor(factors, r: int) -> np.ndarray:
    out = np.asarray(factors[0])[:, r]
    for U in factors[1:]:
        out = np.multiply.outer(out, np.asarray(U)[:, r])
    return out


def alignments(factors, G: np.ndarray) -> np.ndarray:
    """``g_r = < -G, W_r / ||W_r|| >`` for each component (NaN for a zero component)."""
    out = np.full(np.asarray(factors[0]).shape[1], np.nan)
    for r in range(len(out)):
        Wr = component_tensor(factors, r)
        n = float(np.linalg.norm(Wr))
        if n > 0:
            out[r] = -float(np.sum(G * Wr)) / n
    return out


def norm_rates_autograd(problem: TensorProblem, factors) -> np.ndarray:
    """``d/dt ||W_r||`` under gradient flow, by torch autograd: the velocity is minus the autograd gradient of the
    loss (built from an einsum of the factors), pushed through ``r -> prod_n ||w_r^n||`` with a Jacobian-vector
    product. Uses neither :func:`cp_factor_grads` nor the theorem's formula."""
    import torch

    fs = [torch.tensor(np.asarray(U, dtype=float), dtype=torch.float64, requires_grad=True) for U in factors]
    letters = "abcdefgh"[: len(fs)]
    T = torch.einsum(",".join(f"{c}z" for c in letters) + "->" + letters, *fs)
    flat = torch.tensor(problem.obs_flat, dtype=torch.long)
    r = T.reshape(-1)[flat] - torch.tensor(problem.targets, dtype=torch.float64)
    loss = problem.loss_scale * torch.sum(r * r)
    grads = torch.autograd.grad(loss, fs)
    vel = tuple(-g.detach() for g in grads)

    def norms(*us):
        out = torch.ones(us[0].shape[1], dtype=torch.float64)
        for u in us:
            out = out * torch.linalg.vector_norm(u, dim=0)
        return out

    _, rate = torch.autograd.functional.jvp(norms, tuple(f.detach() for f in fs), vel)
    return rate.numpy()


__all__ = ["alignments", "component_tensor", "network_forward", "norm_differences", "norm_rates_autograd",
           "one_hot_inputs", "random_problem", "unbalancedness"]
