"""Engines against each other and against autograd: numpy factor gradients, gd -> gf as the step shrinks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models import inits
from models.engines import get_engine
from models.factorizations import CP, DeepMatrix, cp_factor_grads, cp_tensor, factor_grads, product
from models.problems import random_tensor_completion, rc20, sensing
from models.trajectory import Status


def _autograd(loss_of, arrays):
    ts = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in arrays]
    loss = loss_of(ts)
    loss.backward()
    return [t.grad.numpy() for t in ts]


@pytest.mark.parametrize("depth, shape, widths", [(1, (2, 2), ()), (3, (2, 2), ()), (4, (3, 5), (4, 2, 6))])
def test_numpy_factor_gradients_match_torch_autograd(depth, shape, widths):
    rng = np.random.default_rng(depth)
    model = DeepMatrix(depth, shape, widths or None)
    fs = [rng.standard_normal(s) for s in model.layer_shapes]
    A = rng.standard_normal((5,) + shape)
    y = rng.standard_normal(5)
    problem = sensing(A, y)

    def loss_of(ts):
        W = ts[0]
        for F in ts[1:]:
            W = F @ W
        r = torch.einsum("mij,ij->m", torch.tensor(A), W) - torch.tensor(y)
        return 0.5 * (r * r).sum()

    ours = factor_grads(fs, problem.grad(product(fs)))
    ref = _autograd(loss_of, fs)
    for g, h in zip(ours, ref):
        np.testing.assert_allclose(g, h, rtol=1e-12, atol=1e-12 * np.max(np.abs(h)))


@pytest.mark.parametrize("order", [3, 4])
def test_numpy_cp_gradients_match_torch_autograd(order):
    problem, _ = random_tensor_completion((3,) * order, 2 * 3 ** (order - 1), rank=1, norm=1.5, seed=order)
    model = CP((3,) * order, 4)
    fs = list(inits.cp_gaussian(model, 0.7, seed=1).factors)
    idx = torch.tensor(problem.indices)
    vals = torch.tensor(problem.targets)

    def loss_of(ts):
        letters = "abcdefgh"[:order]
        T = torch.einsum(",".join(f"{c}r" for c in letters) + "->" + letters, *ts)
        r = T[tuple(idx[:, n] for n in range(order))] - vals
        return 0.5 * (r * r).sum()

    ours = cp_factor_grads(fs, problem.grad(cp_tensor(fs)))
    ref = _autograd(loss_of, fs)
    for g, h in zip(ours, ref):
        np.testing.assert_allclose(g, h, rtol=1e-12, atol=1e-13)


def test_gd_converges_to_gf_at_first_order_in_the_step():
    """GD with step eta and gradient flow at t = k eta differ by O(eta): halving eta halves the gap."""
    model = DeepMatrix(3, (2, 2))
    init = inits.balanced(model, 0.5, seed=1)
    problem = rc20()
    T = 4.0
    times = [1.0, 2.0, 3.0, 4.0]
    flow = get_engine("gf", rtol=1e-12).run(problem, model, init, record_at=times)
    assert flow.status is Status.COMPLETED
    ref = {round(p.t, 9): p for p in flow.points}
    gaps = []
    for eta in (4e-3, 2e-3, 1e-3):
        per = int(round(1.0 / eta))
        traj = get_engine("gd", lr=eta, record_every=per).run(problem, model, init, steps=int(round(T / eta)))
        worst = 0.0
        for p in traj.points[1:]:
            q = ref[round(p.step * eta, 9)]
            worst = max(worst, float(np.max(np.abs(p.product - q.product))))
            flow_err = q.product_err
        assert flow_err < 1e-3 * worst  # the flow is far more accurate than the gap it measures
        gaps.append(worst)
    ratios = [gaps[0] / gaps[1], gaps[1] / gaps[2]]
    for r in ratios:
        assert 1.7 <= r <= 2.3, (gaps, ratios)  # first order: the gap halves with the step
    assert gaps[-1] / 1e-3 < 10.0  # C = gap / eta is O(1) on [0, 4]
