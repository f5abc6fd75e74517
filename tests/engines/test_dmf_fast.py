"""models.engines.dmf_fast against torch autograd + torch.optim.SGD, step for step (relative 1e-12)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.engines.dmf_fast import run_dmf_gd
from models.errors import SuiteError
from models.generators import random_completion, random_sensing

RTOL = 1e-12


def _factors(widths, B, seed, scale=0.4):
    """``W_1 .. W_L`` of shapes ``(widths[j+1], widths[j])``, batched."""
    rng = np.random.default_rng(seed)
    return [scale * rng.standard_normal((B, widths[j + 1], widths[j])) for j in range(len(widths) - 1)]


def _autograd(problem, factors, lr, steps, rule="constant", alpha=0.99, eps=1e-4):
    """Each member alone: autograd loss, torch.optim.SGD (constant) or the GroupRMSprop formula on autograd
    gradients; returns the final factors (batched) and the losses after 0..steps steps."""
    outs, losses = [], []
    y = torch.tensor(problem.targets, dtype=torch.float64)
    for b in range(factors[0].shape[0]):
        ps = [torch.tensor(F[b], dtype=torch.float64, requires_grad=True) for F in factors]
        opt = torch.optim.SGD(ps, lr=lr)
        v, ls = 0.0, []
        for k in range(1, steps + 2):
            P = ps[0]
            for W in ps[1:]:
                P = W @ P
            if problem.obs_flat is not None:
                r = P.reshape(-1)[torch.tensor(problem.obs_flat)] - y
            else:
                r = torch.tensor(problem.operator) @ P.reshape(-1) - y
            loss = problem.loss_scale * (r * r).sum()
            ls.append(float(loss.detach()))
            if k == steps + 1:
                break
            opt.zero_grad()
            loss.backward()
            if rule == "constant":
                opt.step()
            else:
                with torch.no_grad():
                    v = alpha * v + (1 - alpha) * sum(float((p.grad ** 2).sum()) for p in ps)
                    eta = lr / (np.sqrt(v / (1 - alpha ** k)) + eps)
                    for p in ps:
                        p -= eta * p.grad
        outs.append([p.detach().numpy() for p in ps])
        losses.append(ls)
    return [np.stack([o[j] for o in outs]) for j in range(len(factors))], np.array(losses).T


def _rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.mark.parametrize("widths", [(10, 12), (10, 7, 12), (10, 10, 10, 12), (10, 9, 8, 11, 12)])
@pytest.mark.parametrize("reduction", ["half_sum", "mean"])
def test_completion_matches_autograd_sgd(widths, reduction):
    problem, _ = random_completion((12, 10), rank=2, m=50, seed=3, reduction=reduction)
    fs = _factors(widths, 3, seed=len(widths))
    lr = 0.05 if reduction == "half_sum" else 0.5
    res = run_dmf_gd(problem, fs, lr=lr, steps=25, record_every=1, device="cpu")
    ref, ref_loss = _autograd(problem, fs, lr, 25)
    for a, b in zip(res.factors, ref):
        assert _rel(a, b) < RTOL
    assert np.allclose(res.loss, ref_loss, rtol=RTOL, atol=0)
    # the run moved: not a trivially equal comparison
    assert _rel(res.factors[0], fs[0]) > 1e-3
    P = res.factors[0]
    for W in res.factors[1:]:
        P = W @ P
    assert _rel(res.product, P) < RTOL


def test_sensing_matches_autograd_sgd():
    problem, _ = random_sensing((6, 5), rank=1, m=14, seed=1)
    fs = _factors((5, 5, 6), 2, seed=7)
    res = run_dmf_gd(problem, fs, lr=0.1, steps=30, device="cpu")
    ref, _ = _autograd(problem, fs, 0.1, 30)
    for a, b in zip(res.factors, ref):
        assert _rel(a, b) < RTOL


def test_group_rmsprop_matches_the_official_formula():
    problem, _ = random_completion((12, 10), rank=2, m=60, seed=4, reduction="mean")
    fs = _factors((10, 10, 10, 12), 2, seed=2, scale=0.1)
    res = run_dmf_gd(problem, fs, lr=1e-2, steps=40, step_rule="group_rmsprop", device="cpu")
    ref, _ = _autograd(problem, fs, 1e-2, 40, rule="group_rmsprop")
    for a, b in zip(res.factors, ref):
        assert _rel(a, b) < RTOL


def test_records_singular_values_and_alignment():
    problem, _ = random_completion((12, 10), rank=2, m=60, seed=5, reduction="mean")
    fs = _factors((10, 10, 12), 2, seed=3)
    res = run_dmf_gd(problem, fs, lr=0.3, steps=20, record_every=5, record_svals=3, record_alignment=True,
                     device="cpu")
    assert list(res.steps) == [0, 5, 10, 15, 20]
    assert res.svals.shape == (5, 2, 3) and res.diag_mean.shape == (5, 2)
    s = np.linalg.svd(res.product, compute_uv=False)[:, :3]
    np.testing.assert_allclose(res.svals[-1], s, rtol=1e-12)
    for b in range(2):
        assert abs(res.loss[-1, b] - problem.loss(res.product[b])) <= 1e-12 * problem.loss(res.product[b])
        # |U^T G V| by numpy at the last record
        U, _, Vt = np.linalg.svd(res.product[b])
        M = np.abs(U[:, :10].T @ problem.grad(res.product[b]) @ Vt[:10].T)
        assert abs(res.diag_mean[-1, b] - np.mean(np.diag(M))) < 1e-12 * np.abs(M).max()
        assert abs(res.offdiag_mean[-1, b] - (M.sum() - np.trace(M)) / 90) < 1e-12 * np.abs(M).max()


def test_members_stop_at_their_loss():
    problem, _ = random_completion((8, 8), rank=1, m=40, seed=0, reduction="mean")
    fs = _factors((8, 8, 8), 2, seed=1, scale=0.5)
    res = run_dmf_gd(problem, fs, lr=0.5, steps=20000, until_loss=1e-8, check_every=10, device="cpu")
    assert res.status == ["completed", "completed"]
    assert np.all(res.final_loss <= 1e-8) and np.all(res.final_step % 10 == 0)
    # a stopped member is frozen: its final factors give its final loss
    for b in range(2):
        assert problem.loss(res.product[b]) == pytest.approx(res.final_loss[b], rel=1e-9)


@pytest.mark.parametrize("kw", [{"lr": -1.0}, {"lr": 0.1, "step_rule": "adam"}, {"lr": 0.1, "device": "tpu"},
                                {"lr": 0.1, "steps": -1}])
def test_bad_options_raise_suite_error(kw):
    problem, _ = random_completion((4, 4), rank=1, m=8, seed=0)
    opts = {"steps": 2, **kw}
    with pytest.raises(SuiteError):
        run_dmf_gd(problem, _factors((4, 4), 1, 0), **opts)


def test_shapes_must_chain():
    problem, _ = random_completion((4, 4), rank=1, m=8, seed=0)
    with pytest.raises(SuiteError):
        run_dmf_gd(problem, _factors((5, 4), 1, 0), lr=0.1, steps=1)
