"""gd's ``normalized`` step rule (models.engines.gd_rules): against its definition (GroupRMSprop, written here
on torch autograd) step for step, and its small-step limit, the gradient-flow path at time ``sum eta_k``.

Tolerances: step for step, float64 rounding over 30 steps (1e-12 relative, observed ~1e-15). Small-step limit:
GD with a time-varying step is a first-order method, so the distance to the ``gf`` solution at the accumulated
time must halve with the step (ratio in [0.4, 0.6]) and be below ``2 lr`` (measured 1.86 lr); ``gf``'s own error
estimate (~5e-9) is far below both.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models import CP, DeepMatrix, inits
from models import generators as G
from models.engines import get_engine
from models.engines.gd import GradientDescent
from models.errors import InvalidInput
from models.problems import rc20


def _group_rmsprop(problem, model, factors, lr, steps, alpha=0.99, eps=1e-6):
    """The definition: autograd gradients, one global step lr / (sqrt(v_k / (1 - alpha^k)) + eps)."""
    params = [torch.tensor(np.asarray(F), dtype=torch.float64, requires_grad=True) for F in factors]
    y = torch.tensor(problem.targets, dtype=torch.float64)
    v = 0.0
    for k in range(1, steps + 1):
        P = params[0]
        for W in params[1:]:
            P = W @ P
        r = P.reshape(-1)[torch.tensor(problem.obs_flat)] - y
        for p in params:
            p.grad = None
        (problem.loss_scale * (r * r).sum()).backward()
        sq = sum(float((p.grad * p.grad).sum()) for p in params)
        v = alpha * v + (1 - alpha) * sq
        step = lr / (np.sqrt(v / (1 - alpha ** k)) + eps)
        with torch.no_grad():
            for p in params:
                p -= step * p.grad
    P = params[0]
    for W in params[1:]:
        P = W @ P
    return P.detach().numpy()


@pytest.mark.parametrize("which", ["rc20", "rect"])
def test_normalized_matches_group_rmsprop_step_for_step(which):
    if which == "rc20":
        problem, depth = rc20(), 3
    else:
        problem, _ = G.random_completion((5, 4), rank=1, m=12, seed=2, reduction="mean")
        depth = 2
    model = DeepMatrix(depth, problem.shape)
    members = [inits.gaussian(model, 0.4, seed=s).factors for s in range(2)]
    batch = [np.stack([fs[j] for fs in members]) for j in range(depth)]
    eng = GradientDescent(lr=0.01, step_rule="normalized")
    res = eng.run(problem, model, batch, steps=30)
    assert res.settings["step_rule"] == "normalized" and res.settings["rms_alpha"] == 0.99
    for b, fs in enumerate(members):
        ref = _group_rmsprop(problem, model, fs, 0.01, 30)
        scale = float(np.max(np.abs(ref)))
        assert float(np.max(np.abs(res.final_product[b] - ref))) <= 1e-12 * scale


def test_normalized_small_step_limit_is_the_gradient_flow_path():
    problem, model = rc20(), DeepMatrix(3, (2, 2))
    init = inits.balanced(model, 0.1, seed=0, det="positive")
    errs = []
    for lr in (1e-3, 5e-4):
        batch = [F[None] for F in init.factors]
        res = GradientDescent(lr=lr, step_rule="normalized").run(problem, model, batch, steps=int(round(2 / lr)))
        tau = res.stats["rule_time"][0]
        assert tau > 5.0           # the normalized steps are ~2.7x lr here: far more flow time than 2.0
        ref = get_engine("gf", rtol=1e-12).run(problem, model, init, t_max=tau).final
        assert ref.t == pytest.approx(tau, rel=1e-12) and ref.product_err < 1e-7
        errs.append(float(np.max(np.abs(res.final_product[0] - ref.product))))
        assert errs[-1] <= 2 * lr
    assert 0.4 <= errs[1] / errs[0] <= 0.6


def test_step_rule_options_are_checked_and_recorded():
    for bad in ({"step_rule": "adam"}, {"rms_alpha": 1.0}, {"rms_eps": -1.0}, {"rms_alpha": "0.9"}):
        with pytest.raises(InvalidInput):
            GradientDescent(**bad)
    assert GradientDescent().describe_options()["step_rule"] == "constant"
    tm = CP((3, 3, 3), 2)
    from models.problems import random_tensor_completion
    tp, _ = random_tensor_completion((3, 3, 3), 10, seed=0)
    f = inits.cp_gaussian(tm, 0.3, seed=0).factors
    with pytest.raises(InvalidInput):
        GradientDescent(step_rule="normalized").run(tp, tm, [F[None] for F in f], steps=2)
    tr = GradientDescent(lr=0.01, step_rule="normalized").run(rc20(), DeepMatrix(2, (2, 2)),
                                                              inits.balanced(DeepMatrix(2, (2, 2)), 0.3, seed=0),
                                                              steps=50)
    assert tr.settings["step_rule"] == "normalized" and tr.settings["rms_eps"] == 1e-6
    assert tr.stats["step_rule"] == "normalized" and tr.stats["rule_time"] > 0
