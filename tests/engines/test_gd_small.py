"""The compiled small-matrix GD loop (models.engines.gd_small): step for step torch.optim.SGD, stopping rules,
records, det signs, divergence, and the batched members independent of each other."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models import DeepMatrix, inits
from models.engines.gd_small import run_deep_gd
from models.errors import InvalidInput
from models.generators import rc20_larger
from models.problems import rc20, sensing

REL = 1e-12


def _sgd_products(problem, factors, lr, steps):
    params = [torch.tensor(np.asarray(F), dtype=torch.float64, requires_grad=True) for F in factors]
    opt = torch.optim.SGD(params, lr=lr)
    A = torch.tensor(problem.operator)
    y = torch.tensor(problem.targets)
    prods, losses = [], []
    for k in range(steps + 1):
        opt.zero_grad()
        P = params[0]
        for W in params[1:]:
            P = W @ P
        r = A @ P.reshape(-1) - y
        loss = problem.loss_scale * (r * r).sum()
        prods.append(P.detach().numpy().copy())
        losses.append(float(loss.detach()))
        if k < steps:
            loss.backward()
            opt.step()
    return np.array(prods), np.array(losses), [p.detach().numpy() for p in params]


@pytest.mark.parametrize("case", ["rc20_mean_d3", "rc20_half_d2", "larger3_d4", "sensing_d3"])
def test_every_step_equals_torch_sgd(case):
    rng = np.random.default_rng(7)
    if case == "rc20_mean_d3":
        problem, depth, d = rc20(reduction="mean"), 3, 2
    elif case == "rc20_half_d2":
        problem, depth, d = rc20(-2.0, 0.5, 0.1), 2, 2
    elif case == "larger3_d4":
        problem, depth, d = rc20_larger((3, 3)), 4, 3
    else:
        problem, depth, d = sensing(rng.standard_normal((4, 2, 2)), rng.standard_normal(4)), 3, 2
    init = inits.gaussian(DeepMatrix(depth, (d, d)), 0.7, seed=3)
    prods, losses, final = _sgd_products(problem, init.factors, 0.05, 60)
    res = run_deep_gd(problem, np.stack(init.factors), lr=0.05, steps=60, record_every=1)
    m = res.member(0)
    assert list(m["step"]) == list(range(61))
    scale = np.max(np.abs(prods))
    assert np.max(np.abs(m["product"] - prods)) <= REL * scale
    assert np.max(np.abs(m["loss"] - losses) / losses) <= REL
    for l in range(depth):
        assert np.max(np.abs(res.factors[0][l] - final[l])) <= REL * max(np.max(np.abs(final[l])), 1.0)
    assert res.status == ["budget"] and res.final_step[0] == 60


def test_stops_at_the_first_iterate_below_until_loss_and_records_it():
    problem = rc20()
    init = inits.balanced(DeepMatrix(3, (2, 2)), 0.5, seed=1)
    res = run_deep_gd(problem, np.stack(init.factors), lr=0.05, steps=100_000, until_loss=1e-3, record_every=100)
    m = res.member(0)
    assert res.status == ["completed"]
    assert m["loss"][-1] <= 1e-3 < m["loss"][-2]
    assert m["step"][-1] == res.final_step[0] and all(s % 100 == 0 for s in m["step"][:-1])
    # the iterate before the last one is above the threshold: rerun one step short
    short = run_deep_gd(problem, np.stack(init.factors), lr=0.05, steps=int(res.final_step[0]) - 1)
    assert short.final_loss[0] > 1e-3 and short.status == ["budget"]


def test_det_sign_is_the_sign_of_the_product_det_and_members_are_independent():
    problem = rc20()
    model = DeepMatrix(3, (2, 2))
    inits_ = [inits.gaussian(model, 0.3, seed=s, det=("positive" if s % 2 else "negative")) for s in range(4)]
    F = np.stack([np.stack(i.factors) for i in inits_])
    res = run_deep_gd(problem, F, lr=0.02, steps=300, record_every=30)
    for b in range(4):
        one = run_deep_gd(problem, F[b], lr=0.02, steps=300, record_every=30)
        assert np.array_equal(one.member(0)["product"], res.member(b)["product"])
        m = res.member(b)
        want = np.sign(np.linalg.det(m["product"]))
        assert np.array_equal(m["det_sign"], want.astype(np.int8))
        assert m["det_sign"][0] == (1 if b % 2 else -1)


def test_divergence_keeps_the_last_finite_iterate():
    problem = rc20()
    init = inits.gaussian(DeepMatrix(3, (2, 2)), 3.0, seed=0)
    res = run_deep_gd(problem, np.stack(init.factors), lr=5.0, steps=10_000, record_every=1)
    assert res.status == ["diverged"]
    assert np.isfinite(res.final_loss[0]) and np.all(np.isfinite(res.factors[0]))
    assert res.final_step[0] < 10_000


def test_bad_input_is_invalid_input():
    with pytest.raises(InvalidInput):
        run_deep_gd(rc20(), np.ones((1, 2, 3, 3)), lr=0.1, steps=1)
    with pytest.raises(InvalidInput):
        run_deep_gd(rc20(), np.ones((1, 2, 2, 2)), lr=-1.0, steps=1)
    with pytest.raises(InvalidInput):
        run_deep_gd(rc20(), np.full((1, 2, 2, 2), np.nan), lr=0.1, steps=1)
