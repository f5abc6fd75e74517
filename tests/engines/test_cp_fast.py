"""The batched CP loop (models.engines.cp_fast) against torch autograd with torch.optim.SGD and with the official
GroupRMSprop update written out; the experiment helpers of rc20.exp.tensor_completion."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from models.engines.cp_fast import run_cp_gd
from models.problems import random_tensor_completion
from properties.experiments_rc20_tc import baseline_error, rank1_residual

REL = 1e-11


def _cap(params, grad_scale):
    """The capped rule's bound, written out: 1 / (grad_scale N max_n sum_r prod_{k != n} ||u_r^k||^2)."""
    N = len(params)
    col = [np.linalg.norm(p.detach().numpy(), axis=0) ** 2 for p in params]
    traces = [sum(math.prod(col[k][r] for k in range(N) if k != n) for r in range(len(col[0]))) for n in range(N)]
    return 1.0 / (grad_scale * N * max(traces))


def _reference(problem, factors, lr, steps, rule, beta=0.99, eps=1e-6, capped=None):
    """Autograd CP tensor, loss of the problem; SGD, or GroupRMSprop as in the official code (capped: also the
    curvature cap, and ``capped`` (a list) collects whether the cap was the step at each step)."""
    params = [torch.tensor(f, dtype=torch.float64, requires_grad=True) for f in factors]
    opt = torch.optim.SGD(params, lr=lr) if rule == "constant" else None
    idx = torch.tensor(np.ravel_multi_index(tuple(problem.indices.T), problem.dims))
    y = torch.tensor(problem.targets)
    letters = "abcdefgh"[: len(params)]
    sq = 0.0
    losses = []
    for k in range(steps + 1):
        T = torch.einsum(",".join(c + "r" for c in letters) + "->" + letters, *params)
        r = T.reshape(-1)[idx] - y
        loss = problem.loss_scale * (r * r).sum()
        losses.append(float(loss.detach()))
        if k == steps:
            break
        for p in params:
            p.grad = None
        loss.backward()
        if opt is not None:
            opt.step()
        else:
            sq = beta * sq + (1 - beta) * sum(float((p.grad ** 2).sum()) for p in params)
            step = lr / (math.sqrt(sq / (1 - beta ** (k + 1))) + eps)
            if rule == "group_rmsprop_capped":
                cap = _cap(params, problem.grad_scale)
                capped.append(cap < step)
                step = min(step, cap)
            with torch.no_grad():
                for p in params:
                    p -= step * p.grad
    return [p.detach().numpy() for p in params], T.detach().numpy(), losses


@pytest.mark.parametrize("dims,rule", [((3, 4, 2), "constant"), ((3, 2, 2, 3), "group_rmsprop"),
                                       ((2, 3), "group_rmsprop"), ((2, 2, 3, 2, 2), "constant")])
def test_steps_equal_the_autograd_reference(dims, rule):
    problem, target = random_tensor_completion(dims, max(2, int(np.prod(dims)) // 2), rank=2, seed=3,
                                               reduction="mean")
    rng = np.random.default_rng(5)
    B, R, steps = 3, 4, 40
    F = [0.5 * rng.standard_normal((B, d, R)) for d in dims]
    res = run_cp_gd(problem, F, lr=0.05, steps=steps, step_rule=rule, target=target, check_every=1)
    assert res.settings["step_rule"] == rule
    for b in range(B):
        fs, T, losses = _reference(problem, [f[b] for f in F], 0.05, steps, rule, capped=[])
        for got, want in zip(res.factors, fs):
            assert np.max(np.abs(got[b] - want)) <= REL * max(1.0, np.max(np.abs(want)))
        assert np.max(np.abs(res.tensor[b] - T)) <= REL * max(1.0, np.max(np.abs(T)))
        hist = res.history[:, 1 + b]
        assert np.allclose(hist, losses, rtol=1e-10, atol=0)
        rec = np.linalg.norm(T - target) / np.linalg.norm(target)
        assert res.reconstruction_error[b] == pytest.approx(rec, rel=1e-10)


@pytest.mark.parametrize("dims", [(3, 4, 2), (2, 3, 2, 2)])
def test_capped_rule_equals_the_autograd_reference_and_the_cap_binds(dims):
    """group_rmsprop_capped step for step against autograd with the rule written out; lr 0.1 from scale 0.2 makes GroupRMSprop's
    step exceed the cap at some steps and not at others, so dropping the cap (or always taking it) fails here."""
    problem, target = random_tensor_completion(dims, int(np.prod(dims)) // 2, rank=1, seed=4, reduction="mean")
    rng = np.random.default_rng(6)
    B, R, steps, lr = 2, 3, 60, 0.1
    F = [0.2 * rng.standard_normal((B, d, R)) for d in dims]
    res = run_cp_gd(problem, F, lr=lr, steps=steps, step_rule="group_rmsprop_capped", target=target, check_every=1)
    plain = run_cp_gd(problem, F, lr=lr, steps=steps, step_rule="group_rmsprop", check_every=1)
    assert res.settings["step_rule"] == "group_rmsprop_capped"
    for b in range(B):
        capped = []
        fs, T, losses = _reference(problem, [f[b] for f in F], lr, steps, "group_rmsprop_capped", capped=capped)
        assert 0 < sum(capped) < steps
        for got, want in zip(res.factors, fs):
            assert np.max(np.abs(got[b] - want)) <= REL * max(1.0, np.max(np.abs(want)))
        assert np.allclose(res.history[:, 1 + b], losses, rtol=1e-10, atol=0)
        assert np.max(np.abs(plain.tensor[b] - T)) > 1e-3  # the cap changed the path


def test_capped_rule_converges_where_group_rmsprop_bounces():
    """Near a zero-loss minimum GroupRMSprop's step grows as the gradient collapses and the iterates bounce at a
    loss floor set by lr; with the cap the same run converges linearly to rounding."""
    problem, target = random_tensor_completion((4, 4, 4), 40, rank=1, seed=1, reduction="mean")
    rng = np.random.default_rng(2)
    F = [target_factor + 0.05 * rng.standard_normal((1, 4, 1)) for target_factor in _rank1_factors(target)]
    ms = float(np.mean(problem.targets ** 2))
    capped = run_cp_gd(problem, F, lr=0.05, steps=600, step_rule="group_rmsprop_capped", check_every=50)
    plain = run_cp_gd(problem, F, lr=0.05, steps=600, step_rule="group_rmsprop", check_every=50)
    assert capped.final_loss[0] <= 1e-20 * ms
    assert np.min(plain.history[10:, 1]) >= 1e-8 * ms


def _rank1_factors(T):
    """Balanced unit-scale factors (1, d, 1) of a rank-1 tensor (from its unfoldings)."""
    N = T.ndim
    vs = [np.linalg.svd(np.moveaxis(T, n, 0).reshape(T.shape[n], -1))[0][:, 0] for n in range(N)]
    lam = np.einsum("abc,a,b,c->", T, *vs) if N == 3 else None
    s = np.sign(lam) * abs(lam) ** (1.0 / N)
    return [(s * v if n == 0 else abs(lam) ** (1.0 / N) * v)[None, :, None] for n, v in enumerate(vs)]


def test_float32_products_with_float64_factors_keep_updates_below_a_float32_ulp():
    """dtype "float32-f64": updates of 1e-9 on factors of size ~1 (below half a float32 ulp, 6e-8) are lost in
    float32 and kept with float64 factors, which then follow the float64 run to float32 accuracy."""
    problem, target = random_tensor_completion((3, 3, 3), 14, rank=1, seed=0, reduction="mean")
    rng = np.random.default_rng(3)
    F = [1.0 + 0.2 * rng.standard_normal((1, 3, 2)) for _ in range(3)]
    F32 = [f.astype(np.float32).astype(np.float64) for f in F]  # representable in float32: no rounding at entry
    runs = {dt: run_cp_gd(problem, F32, lr=1e-9, steps=200, dtype=dt) for dt in ("float32", "float32-f64", "float64")}
    assert all(np.array_equal(a, b) for a, b in zip(runs["float32"].factors, F32))
    for got, want, f0 in zip(runs["float32-f64"].factors, runs["float64"].factors, F32):
        moved = want - f0
        assert np.max(np.abs(moved)) > 1e-8
        assert np.max(np.abs((got - f0) - moved)) <= 1e-5 * np.max(np.abs(moved))


def test_members_stop_on_their_own_loss_and_freeze():
    problem, target = random_tensor_completion((3, 3, 3), 20, rank=1, seed=0)
    rng = np.random.default_rng(1)
    F = [np.stack([0.5 * rng.standard_normal((d, 3)), 1e-3 * rng.standard_normal((d, 3))]) for d in (3, 3, 3)]
    res = run_cp_gd(problem, F, lr=0.2, steps=4000, until_loss=1e-4, check_every=10)
    assert res.status[0] == "completed" and res.final_loss[0] <= 1e-4 and res.final_step[0] < 4000
    # member 0 frozen at its stop: its tensor's loss is the one recorded
    assert problem.loss(res.tensor[0]) == pytest.approx(res.final_loss[0], rel=1e-9)
    # the slow member (init 1e-3, plain GD) has not left the origin: still running at the budget
    assert res.status[1] == "budget" and res.final_step[1] == 4000


def test_rank1_residual_is_zero_on_rank_one_and_bounded_away_on_rank_two():
    rng = np.random.default_rng(0)
    vs = [rng.standard_normal(5) for _ in range(3)]
    X = np.einsum("a,b,c->abc", *vs)
    assert rank1_residual(X) <= 1e-13
    ws = [rng.standard_normal(5) for _ in range(3)]
    Y = X + np.einsum("a,b,c->abc", *ws)
    # any rank-1 approximation is an upper bound; the best one of a generic rank-2 tensor is far from it
    assert rank1_residual(Y) > 0.1
    # an upper bound: never below the distance to the best rank-1 approximation of the mode-1 unfolding
    s = np.linalg.svd(Y.reshape(5, -1), compute_uv=False)
    assert rank1_residual(Y) >= math.sqrt(np.sum(s[1:] ** 2)) / np.linalg.norm(Y) - 1e-12


def test_baseline_error_is_the_norm_of_the_unobserved_part():
    problem, target = random_tensor_completion((4, 4, 4), 20, rank=1, seed=2)
    mask = np.zeros(64, dtype=bool)
    mask[np.ravel_multi_index(tuple(problem.indices.T), problem.dims)] = True
    want = np.linalg.norm(target.reshape(-1)[~mask]) / np.linalg.norm(target)
    assert baseline_error(problem, target) == pytest.approx(want, rel=1e-14)


def test_component_norms_are_recorded_per_member_and_stop_with_it():
    """``norms_every``: the records are prod_n ||w_r^n|| of the iterate at each recorded step (the first from the
    init, each member's last from its final factors, also off the grid), NaN once a member has stopped."""
    problem, target = random_tensor_completion((3, 3, 3), 20, rank=1, seed=0)
    rng = np.random.default_rng(1)
    F = [np.stack([0.5 * rng.standard_normal((d, 3)), 1e-3 * rng.standard_normal((d, 3))]) for d in (3, 3, 3)]
    res = run_cp_gd(problem, F, lr=0.2, steps=600, until_loss=1e-4, check_every=10, norms_every=7)
    assert res.settings["norms_every"] == 7
    assert res.component_norms.shape == (len(res.norm_steps), 2, 3)
    assert res.norm_steps[0] == 0 and np.all(np.diff(res.norm_steps) > 0)

    def norms(fs, b):
        return np.prod([np.linalg.norm(f[b], axis=0) for f in fs], axis=0)

    for b in range(2):
        assert np.allclose(res.component_norms[0, b], norms(F, b), rtol=1e-14, atol=0)
    # member 0 stops before the budget: its last finite record is its final factors' norms, NaN after that
    stop = int(res.final_step[0])
    assert res.status[0] == "completed" and stop < 600
    rec = np.nonzero(~np.isnan(res.component_norms[:, 0, 0]))[0]
    assert stop % 7 != 0  # the stop is recorded although it is not on the grid
    assert res.norm_steps[rec[-1]] == stop and np.all(res.norm_steps[rec[-1] + 1:] > stop)
    assert np.allclose(res.component_norms[rec[-1], 0], norms(res.factors, 0), rtol=1e-12, atol=0)
    # member 1 runs to the budget: the last record is step 600, from its final factors
    assert res.norm_steps[-1] == 600 and res.status[1] == "budget"
    assert np.allclose(res.component_norms[-1, 1], norms(res.factors, 1), rtol=1e-12, atol=0)
    plain = run_cp_gd(problem, F, lr=0.2, steps=600, until_loss=1e-4, check_every=10)
    assert plain.component_norms is None and np.array_equal(plain.tensor, res.tensor)


def _loss_hessian_top(problem, factors):
    """The largest eigenvalue of the loss Hessian in the flattened factors (torch autograd, float64)."""
    shapes = [f.shape for f in factors]
    sizes = [int(np.prod(s)) for s in shapes]
    idx = torch.tensor(np.ravel_multi_index(tuple(problem.indices.T), problem.dims))
    y = torch.tensor(problem.targets)
    letters = "abcdefgh"[: len(factors)]

    def loss(x):
        parts = torch.split(x, sizes)
        fs = [p.reshape(s) for p, s in zip(parts, shapes)]
        T = torch.einsum(",".join(c + "r" for c in letters) + "->" + letters, *fs)
        r = T.reshape(-1)[idx] - y
        return problem.loss_scale * (r * r).sum()

    x = torch.tensor(np.concatenate([f.reshape(-1) for f in factors]))
    H = torch.autograd.functional.hessian(loss, x).numpy()
    return float(np.linalg.eigvalsh(H)[-1])


@pytest.mark.parametrize("reduction", ["mean", "half_sum"])
def test_curvature_cap_is_at_most_one_over_the_hessians_top_eigenvalue_at_zero_loss(reduction):
    """The derivation of group_rmsprop_capped's cap (module docstring of cp_fast): at a zero-loss point the loss
    Hessian's largest eigenvalue is at most grad_scale N max_n sum_r prod_{k != n} ||w_r^k||^2, so cap * lambda_max
    <= 1. Checked with the true Hessian (autograd) at zero-loss points of partially observed problems (unbalanced
    random factors, R = 3, orders 3 and 4), and at a balanced rank-1 factorization of a fully observed tensor, where
    the bound is attained (lambda_max = N x the trace, along the balanced rescaling): so a cap without the factor N
    (or with the trace of one mode instead of the largest) would exceed 1 / lambda_max there."""
    from models.engines.cp_fast import curvature_cap
    from models.problems import tensor_completion

    rng = np.random.default_rng(11)
    for dims in [(3, 4, 2), (2, 3, 2, 2)]:
        fs = [rng.standard_normal((d, 3)) * rng.uniform(0.3, 2.0) for d in dims]
        T = np.einsum(",".join(c + "r" for c in "abcd"[: len(dims)]) + "->" + "abcd"[: len(dims)], *fs)
        full = np.stack(np.unravel_index(np.arange(T.size), dims), axis=1)
        keep = np.sort(rng.choice(T.size, T.size // 2, replace=False))
        problem = tensor_completion(dims, full[keep], T.reshape(-1)[keep], reduction=reduction)
        cap = float(curvature_cap([torch.tensor(f[None]) for f in fs], problem.grad_scale)[0])
        assert cap * _loss_hessian_top(problem, fs) <= 1.0 + 1e-9
    # attained: a fully observed rank-1 tensor at a balanced factorization
    u = [v / np.linalg.norm(v) for v in (rng.standard_normal(d) for d in (3, 4, 2))]
    c = 1.3
    fs = [c * v[:, None] for v in u]
    T = np.einsum("a,b,c->abc", *u) * c ** 3
    full = np.stack(np.unravel_index(np.arange(T.size), T.shape), axis=1)
    problem = tensor_completion(T.shape, full, T.reshape(-1), reduction=reduction)
    cap = float(curvature_cap([torch.tensor(f[None]) for f in fs], problem.grad_scale)[0])
    assert cap * _loss_hessian_top(problem, fs) == pytest.approx(1.0, rel=1e-9)


def test_float32_f64_error_estimate_covers_its_distance_to_the_float64_run():
    """gd-cp's rounding model with dtype "float32-f64" (float32 products, float64 factors): the final point's
    product_err must cover the distance to the same run in float64, which is set by the float32 products (measured
    4.4e-9 after 200 steps, estimate 2.7e-4); float64's eps in the model (the factors' arithmetic instead of the
    products') gives an estimate 5e8 times smaller (5.1e-13) that does not."""
    from models import inits
    from models.engines import get_engine
    from models.factorizations import CP

    problem, target = random_tensor_completion((4, 3, 3), 20, rank=1, seed=2, reduction="mean")
    model = CP((4, 3, 3), 2)
    rng = np.random.default_rng(5)
    init = inits.explicit(model, [0.5 * rng.standard_normal((d, 2)) for d in (4, 3, 3)], "review")
    runs = {dt: get_engine("gd-cp", lr=0.1, dtype=dt).run(problem, model, init, steps=200) for dt in
            ("float32-f64", "float64")}
    end, ref = runs["float32-f64"].points[-1], runs["float64"].points[-1]
    dist = float(np.max(np.abs(np.asarray(end.product) - np.asarray(ref.product))))
    assert end.step == ref.step == 200 and dist > 1e-10                 # the float32 products do move it
    assert dist + ref.product_err <= end.product_err
    assert dist > end.product_err * float(np.finfo(np.float64).eps / np.finfo(np.float32).eps)
