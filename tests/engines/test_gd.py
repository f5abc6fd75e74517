"""The ``gd`` engine: exact agreement with torch.optim.SGD, analytic gradients, batching, divergence, options."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from models import CP, DeepMatrix, InvalidInput, Status, completion, inits, random_tensor_completion, rc20, sensing
from models.engines import get_engine
from models.engines.base import Batch
from models.engines.gd import GradientDescent
from verify.bench.gd import autograd_gd_reference
from models.factorizations import cp_factor_grads, cp_tensor, factor_grads, product
from sgd_reference import sgd_reference

REL = 1e-12  # float64 rounding after ~100 steps (observed: ~1e-15)


def _rel(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def _stack(list_of_factor_lists):
    return [np.stack([fs[j] for fs in list_of_factor_lists]) for j in range(len(list_of_factor_lists[0]))]


def _assert_matches_sgd(res, problem, model, members, lr, steps):
    """Every recorded product and the final factors of each batch member equal torch.optim.SGD's, to REL."""
    for b, fs in enumerate(members):
        ref, ref_factors = sgd_reference(problem, model, fs, lr, steps)
        for k, s in enumerate(res.steps):
            assert _rel(res.product[k, b], ref[s]) <= REL
        for W, R in zip(res.final_factors, ref_factors):
            assert _rel(W[b], R) <= REL


def _problem_3x4():
    obs = [(0, 0), (0, 3), (1, 1), (1, 2), (2, 0), (2, 2), (2, 3)]
    return completion((3, 4), obs, [1.0, -0.5, 2.0, 0.3, 0.7, -1.0, 0.2], reduction="mean")


# ---------------------------------------------------------------------------------------------------------------
# step-for-step agreement with torch.optim.SGD
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_single_run_matches_sgd_step_for_step_rc20(depth):
    problem, model = rc20(), DeepMatrix(depth, (2, 2))
    init = inits.gaussian(model, 0.6, seed=depth)
    steps, lr = 100, 0.05
    traj = GradientDescent(lr=lr, record_every=1).run(problem, model, init, steps=steps)
    ref, ref_factors = sgd_reference(problem, model, init.factors, lr, steps)
    assert traj.status is Status.COMPLETED
    assert [p.step for p in traj.points] == list(range(steps + 1))
    for p, P in zip(traj.points, ref):
        assert _rel(p.product, P) <= REL
        assert p.loss == pytest.approx(problem.loss(P), rel=1e-12, abs=1e-15)
    for W, R in zip(traj.final.factors, ref_factors):
        assert _rel(W, R) <= REL


@pytest.mark.parametrize("kernel", ["elementwise", "matmul"])
@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_batch_matches_sgd_step_for_step_rc20(depth, kernel):
    problem, model = rc20(), DeepMatrix(depth, (2, 2))
    members = [inits.gaussian(model, 0.6, seed=s).factors for s in range(3)]
    members.append(inits.balanced(model, 0.3, seed=7, det="negative").factors)
    steps, lr = 100, 0.05
    res = GradientDescent(lr=lr, record_every=1, kernel=kernel).run(problem, model, _stack(members), steps=steps)
    assert list(res.steps) == list(range(steps + 1))
    _assert_matches_sgd(res, problem, model, members, lr, steps)


@pytest.mark.parametrize("kernel", ["elementwise", "matmul"])
def test_matches_sgd_on_3x4_completion_with_hidden_widths(kernel):
    problem, model = _problem_3x4(), DeepMatrix(3, (3, 4), (5, 2))
    members = [inits.gaussian(model, 0.7, seed=s).factors for s in range(2)]
    steps, lr = 100, 0.1
    res = GradientDescent(lr=lr, record_every=10, kernel=kernel).run(problem, model, _stack(members), steps=steps)
    _assert_matches_sgd(res, problem, model, members, lr, steps)
    assert np.all(res.det_sign == 0)  # not square: undefined


@pytest.mark.parametrize("kernel", ["elementwise", "matmul"])
def test_matches_sgd_on_sensing(kernel):
    rng = np.random.default_rng(3)
    problem = sensing(rng.standard_normal((5, 3, 3)), rng.standard_normal(5), reduction="mean")
    model = DeepMatrix(2, (3, 3))
    init = inits.gaussian(model, 0.5, seed=1)
    res = GradientDescent(lr=0.05, kernel=kernel).run(problem, model, _stack([init.factors]), steps=100)
    _, ref_factors = sgd_reference(problem, model, init.factors, 0.05, 100)
    for W, R in zip(res.final_factors, ref_factors):
        assert _rel(W[0], R) <= REL


@pytest.mark.parametrize("reduction", ["half_sum", "mean"])
@pytest.mark.parametrize("kernel", ["elementwise", "matmul"])  # CP: the sparse kernel, the dense-product kernel
def test_cp_order3_matches_sgd(reduction, kernel):
    problem, _ = random_tensor_completion((4, 3, 5), 30, rank=2, norm=2.0, seed=1, reduction=reduction)
    model = CP((4, 3, 5), 3)
    members = [inits.cp_gaussian(model, 0.5, seed=s).factors for s in range(3)]
    steps, lr = 100, 0.05
    res = GradientDescent(lr=lr, record_every=25, kernel=kernel).run(problem, model, _stack(members), steps=steps)
    assert res.stats["kernel"] == ("cp-dense" if kernel == "matmul" else "cp")
    _assert_matches_sgd(res, problem, model, members, lr, steps)
    traj = GradientDescent(lr=lr).run(problem, model, inits.explicit(model, members[0]), steps=steps)
    assert _rel(traj.final.product, sgd_reference(problem, model, members[0], lr, steps)[0][-1]) <= REL


@pytest.mark.parametrize("dims", [(3, 2, 4, 2), (2, 3, 2, 2, 2)])
def test_cp_dense_kernel_matches_sgd_at_orders_4_and_5_and_is_chosen_for_large_batches(dims):
    """The dense-product CP kernel (groups of two and three modes) step for step against SGD on the autograd
    loss; ``auto`` picks it on a CPU from CP_DENSE_BATCH members, where its members equal those run alone."""
    from models.engines.gd.kernels import CP_DENSE_BATCH

    problem, _ = random_tensor_completion(dims, int(np.prod(dims)) // 2, rank=2, norm=2.0, seed=2, reduction="mean")
    model = CP(dims, 3)
    members = [inits.cp_gaussian(model, 0.5, seed=s).factors for s in range(2)]
    steps, lr = 20, 0.05
    res = GradientDescent(lr=lr, record_every=10, kernel="matmul").run(problem, model, _stack(members), steps=steps)
    _assert_matches_sgd(res, problem, model, members, lr, steps)
    B = CP_DENSE_BATCH
    big = GradientDescent(lr=lr).run(problem, model, _stack([members[i % 2] for i in range(B)]), steps=steps)
    assert big.stats["kernel"] == "cp-dense"
    for i in (0, 1, B - 1):
        assert _rel(big.final_product[i], res.final_product[i % 2]) <= 1e-14


def test_autograd_reference_is_the_engine_map():
    problem, model = rc20(), DeepMatrix(3, (2, 2))
    fb = _stack([inits.gaussian(model, 0.5, seed=s).factors for s in range(4)])
    ours = GradientDescent(lr=0.05).run(problem, model, fb, steps=50).final_factors
    ref = autograd_gd_reference(problem, model, fb, 0.05, 50)
    for a, b in zip(ours, ref):
        assert _rel(a, b) <= REL


# ---------------------------------------------------------------------------------------------------------------
# analytic gradients: one step with lr = 1 gives W - W' = grad (exact up to rounding of |W|)
# ---------------------------------------------------------------------------------------------------------------
def _autograd_grads(problem, model, factors):
    params = [torch.tensor(F, dtype=torch.float64, requires_grad=True) for F in factors]
    if isinstance(model, DeepMatrix):
        P = params[0]
        for W in params[1:]:
            P = W @ P
        r = torch.tensor(problem.operator) @ P.reshape(-1) - torch.tensor(problem.targets)
    else:
        letters = "abcd"[: model.order]
        P = torch.einsum(",".join(c + "z" for c in letters) + "->" + letters, *params)
        r = P.reshape(-1)[torch.tensor(problem.obs_flat)] - torch.tensor(problem.targets)
    (problem.loss_scale * (r * r).sum()).backward()
    return [p.grad.numpy() for p in params]


@pytest.mark.parametrize("case", ["rc20-4", "3x4-3", "cp-3"])
@pytest.mark.parametrize("kernel", ["elementwise", "matmul"])
def test_analytic_gradients_match_autograd(case, kernel):
    if case == "rc20-4":
        problem, model = rc20(eps=0.3), DeepMatrix(4, (2, 2))
        fs = inits.gaussian(model, 0.9, seed=5).factors
        numpy_grads = factor_grads(list(fs), problem.grad(product(list(fs))))
    elif case == "3x4-3":
        problem, model = _problem_3x4(), DeepMatrix(3, (3, 4), (5, 2))
        fs = inits.gaussian(model, 0.9, seed=5).factors
        numpy_grads = factor_grads(list(fs), problem.grad(product(list(fs))))
    else:
        problem, _ = random_tensor_completion((4, 3, 5), 30, rank=2, norm=2.0, seed=1)
        model = CP((4, 3, 5), 3)
        fs = inits.cp_gaussian(model, 0.9, seed=5).factors
        numpy_grads = cp_factor_grads(list(fs), problem.grad(cp_tensor(list(fs))))
    res = GradientDescent(lr=1.0, kernel=kernel).run(problem, model, _stack([fs]), steps=1)
    auto = _autograd_grads(problem, model, fs)
    for F, F1, g, gn in zip(fs, res.final_factors, auto, numpy_grads):
        ours = F - F1[0]
        assert np.max(np.abs(g)) > 1e-3
        # |W - W'| carries the rounding of |W| (~1e-16 |W|); relative to |grad| that stays below 1e-12 here
        assert _rel(ours, g) <= 1e-12
        assert _rel(gn, g) <= 1e-12


# ---------------------------------------------------------------------------------------------------------------
# batching, recording, stopping
# ---------------------------------------------------------------------------------------------------------------
def test_batch_equals_members_run_alone():
    problem, model = rc20(eps=0.1), DeepMatrix(3, (2, 2))
    members = [inits.gaussian(model, 0.5, seed=s).factors for s in range(6)]
    eng = GradientDescent(lr=0.05, record_every=20, kernel="elementwise")
    res = eng.run(problem, model, _stack(members), steps=120)
    assert isinstance(res, Batch) and res.B == 6
    assert res.loss.shape == (7, 6) and res.product.shape == (7, 6, 2, 2) and res.det_sign.dtype == np.int8
    for b, fs in enumerate(members):
        alone = eng.run(problem, model, _stack([fs]), steps=120)
        assert np.array_equal(alone.steps, res.steps)
        assert _rel(res.product[:, b], alone.product[:, 0]) <= 1e-14
        assert _rel(res.loss[:, b], alone.loss[:, 0]) <= 1e-14
        assert np.array_equal(res.det_sign[:, b], alone.det_sign[:, 0])
        single = GradientDescent(lr=0.05).run(problem, model, inits.explicit(model, fs), steps=120)  # matmul kernel
        assert _rel(single.final.product, res.final_product[b]) <= REL
        t = res.trajectory(b)
        assert [p.step for p in t.points] == list(range(0, 121, 20))
        assert t.final.factors is not None and _rel(t.final.factors[0], res.final_factors[0][b]) == 0


def test_large_batch_is_chunked_and_consistent():
    problem, model = rc20(), DeepMatrix(4, (2, 2))
    base = [inits.balanced(model, 0.2, seed=s).factors for s in range(16)]
    B = 9000  # more than one chunk of the "full" elementwise layout
    fb = [np.stack([base[i % 16][j] for i in range(B)]) for j in range(4)]
    res = GradientDescent(lr=0.05).run(problem, model, fb, steps=30)
    assert res.stats["chunks"] >= 2 and res.stats["kernel"] == "elementwise"
    ref = GradientDescent(lr=0.05, kernel="elementwise").run(problem, model, _stack(base), steps=30)
    for i in (0, 5, 4500, B - 1):
        assert _rel(res.final_product[i], ref.final_product[i % 16]) <= 1e-14


def test_det_sign_is_product_of_factor_dets():
    problem, model = rc20(), DeepMatrix(2, (2, 2))
    pos = inits.balanced(model, 0.3, seed=1, det="positive").factors
    neg = inits.balanced(model, 0.3, seed=1, det="negative").factors
    res = GradientDescent(lr=0.05).run(problem, model, _stack([pos, neg]), steps=10)
    assert list(res.det_sign[0]) == [1, -1] and list(res.final_det_sign) == [1, -1]
    zero = [np.zeros((2, 2)), pos[1]]
    res = GradientDescent(lr=0.05).run(problem, model, _stack([zero]), steps=0)
    assert res.det_sign[0, 0] == 0 and res.trajectory(0).points[0].det_sign is None


def test_record_every_and_error_estimates():
    problem, model = rc20(), DeepMatrix(3, (2, 2))
    res = GradientDescent(lr=0.05).run(problem, model, _stack([inits.gaussian(model, 0.5).factors]),
                                             steps=105, record_every=25)
    assert list(res.steps) == [0, 25, 50, 75, 100, 105]
    perr = res.product_err[:, 0]
    assert np.all(perr > 0) and np.all(np.diff(perr / (res.steps + 1)) != np.inf)
    scale = np.prod([np.linalg.norm(W[0]) for W in res.final_factors])
    assert res.final_product_err[0] == pytest.approx(8 * np.finfo(float).eps * 3 * 106 * scale, rel=1e-12)
    assert np.all(res.loss_err[:, 0] > 0)
    default = GradientDescent(lr=0.05).run(problem, model, _stack([inits.gaussian(model, 0.5).factors]),
                                                 steps=105)
    assert list(default.steps) == [0, 105]


@pytest.mark.parametrize("kernel", ["elementwise", "matmul"])  # the mask along either layout's member axis
def test_until_loss_stops_members_separately(kernel):
    problem, model = rc20(), DeepMatrix(2, (2, 2))
    members = [inits.balanced(model, s, seed=2).factors for s in (0.05, 0.5, 1.0)]
    eng = GradientDescent(lr=0.05, check_every=10, kernel=kernel)
    res = eng.run(problem, model, _stack(members), steps=3000, until_loss=0.3)
    assert res.stats["kernel"] == kernel
    assert list(res.status) == ["completed"] * 3
    assert np.all(res.final_loss <= 0.3)
    assert np.all(res.final_step % 10 == 0) and np.all(res.final_step < 3000)
    assert len(set(res.final_step.tolist())) > 1  # different members stop at different steps
    for b in range(3):  # a frozen member stayed exactly where it stopped
        alone = eng.run(problem, model, _stack([members[b]]), steps=int(res.final_step[b]))
        assert _rel(alone.final_product[0], res.final_product[b]) <= 1e-14
    traj = GradientDescent(lr=0.05).run(problem, model, inits.explicit(model, members[1]), until_loss=1e-4,
                                        per_decade=2, options={"check_every": 8})
    assert traj.status is Status.COMPLETED and traj.final.loss <= 1e-4
    losses = traj.losses
    assert np.all(np.diff(losses) < 0) and len(losses) >= 5  # per-decade points, decreasing
    assert np.all(losses[1:-1] <= losses[:-2] * 10 ** -0.5)


def test_run_returns_a_trajectory_with_errors_and_stats():
    problem, model = rc20(), DeepMatrix(4, (2, 2))
    traj = get_engine("gd", lr=0.02).run(problem, model, inits.balanced(model, 0.2, seed=3), steps=500)
    assert traj.engine == "gd" and traj.status is Status.COMPLETED and traj.precision == "float64"
    assert traj.final.step == 500 and traj.points[0].step == 0
    assert all(p.product_err > 0 and p.loss_err > 0 for p in traj.points)
    assert 0 < traj.error_estimate < 1e-10
    for key in ("steps", "steps_per_s", "device", "B"):
        assert key in traj.stats
    assert traj.stats["steps"] == 500 and traj.stats["B"] == 1
    assert traj.settings["lr"] == 0.02 and traj.settings["engine"] == "gd"
    rec = GradientDescent(lr=0.02).run(problem, model, inits.balanced(model, 0.2, seed=3), steps=100,
                                       record_at=(10, 30, 30, 99))
    assert [p.step for p in rec.points] == [0, 10, 30, 99, 100]


# ---------------------------------------------------------------------------------------------------------------
# divergence
# ---------------------------------------------------------------------------------------------------------------
def test_divergence_marks_members_and_keeps_finite_points():
    problem, model = rc20(), DeepMatrix(3, (2, 2))
    members = [inits.balanced(model, s, seed=1).factors for s in (0.1, 0.5, 3.0, 10.0)]
    res = GradientDescent(lr=0.2, record_every=10, check_every=5).run(problem, model, _stack(members),
                                                                           steps=200)
    assert list(res.status) == ["completed", "completed", "completed", "diverged"]
    assert list(res.final_step[:3]) == [200, 200, 200]
    assert np.all(np.isfinite(res.final_loss)) and np.all(np.isfinite(res.final_product))
    for b in range(4):
        t = res.trajectory(b)
        assert all(np.all(np.isfinite(p.product)) and math.isfinite(p.loss) for p in t.points)
    assert res.trajectory(3).status is Status.DIVERGED
    assert np.isnan(res.loss[1:, 3]).all() and not res.recorded[1:, 3].any()


def test_huge_lr_diverges_without_nonfinite_points():
    problem, model = rc20(), DeepMatrix(4, (2, 2))
    init = inits.gaussian(model, 1.0, seed=0)
    traj = GradientDescent(lr=1e3).run(problem, model, init, steps=1000)
    assert traj.status is Status.DIVERGED and not traj.status.trustworthy
    assert len(traj.points) >= 1
    assert all(np.all(np.isfinite(p.product)) and math.isfinite(p.loss) for p in traj.points)
    res = GradientDescent(lr=1e3).run(problem, model, _stack([init.factors] * 3), steps=1000)
    assert set(res.status) == {"diverged"}
    assert np.all(np.isfinite(res.loss[res.recorded])) and np.all(np.isfinite(res.final_factors[0]))


# ---------------------------------------------------------------------------------------------------------------
# option validation
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, needle", [
    ({"lr": 0}, "lr"), ({"lr": -1e-3}, "lr"), ({"lr": float("nan")}, "lr"), ({"lr": float("inf")}, "lr"),
    ({"lr": "0.1"}, "lr"), ({"lr": True}, "lr"),
    ({"device": "tpu"}, "device"), ({"record_every": 0}, "record_every"), ({"record_every": 2.5}, "record_every"),
    ({"check_every": 0}, "check_every"), ({"check_every": None}, "check_every"), ({"kernel": "fast"}, "kernel"),
])
def test_bad_options_raise(kwargs, needle):
    with pytest.raises(InvalidInput) as err:
        GradientDescent(**kwargs)
    msg = str(err.value)
    assert needle in msg and "\n" not in msg and repr(next(iter(kwargs.values()))) in msg


def test_cuda_request_without_cuda_raises():
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(InvalidInput, match="cuda"):
        GradientDescent(device="cuda")


def test_bad_run_arguments_raise():
    problem, model = rc20(), DeepMatrix(2, (2, 2))
    eng = GradientDescent()
    good = _stack([inits.gaussian(model, 0.5).factors])
    with pytest.raises(InvalidInput, match="steps"):
        eng.run(problem, model, good, steps=-1)
    with pytest.raises(InvalidInput, match="shape"):
        eng.run(problem, model, [good[0], good[1][:, :1]], steps=1)
    with pytest.raises(InvalidInput, match="non-finite"):
        eng.run(problem, model, [good[0] * np.nan, good[1]], steps=1)
    with pytest.raises(InvalidInput, match="until_loss"):
        eng.run(problem, model, good, steps=None)
    with pytest.raises(InvalidInput, match="tensor problem"):
        eng.run(problem, CP((2, 2), 1), [np.ones((1, 2, 1))] * 2, steps=1)
    with pytest.raises(InvalidInput, match="steps"):
        eng.run(problem, model, inits.gaussian(model, 0.5))
    with pytest.raises(InvalidInput, match="options"):
        eng.run(problem, model, inits.gaussian(model, 0.5), steps=3, options={"bogus": 1})


def test_gd_stops_on_the_base_class_budget():
    # the loop asks the run's Budget (wall clock from the run's start, max_steps) at each check: a budget spent
    # before the first check stops every member at step 0 with status budget, a batch as well as a lone run
    model = DeepMatrix(2, (2, 2))
    init = inits.balanced(model, 0.1, seed=0)
    eng = GradientDescent(lr=1e-2, check_every=4)
    lone = eng.run(rc20(), model, init, steps=10 ** 7, wall_budget=1e-9)
    assert lone.status is Status.BUDGET and lone.final.step == 0 and len(lone.points) == 1
    eng.max_steps = 8  # a step budget is honoured at the first check at or past it
    capped = eng.run(rc20(), model, init, steps=100, wall_budget=60)
    assert capped.status is Status.BUDGET and capped.final.step == 8


@pytest.mark.parametrize("kernel", ["elementwise", "matmul"])  # CP: the sparse kernel, the dense-product kernel
def test_cp_members_stop_separately_and_stay_where_they_stopped(kernel):
    """until_loss on a CP batch: members stop at different checks and a stopped member is frozen by the kernel's
    mask (its residuals zeroed), so it equals the member run alone to its final step. The dense kernel's mask has
    its members along the residuals' first axis; without it (or along the wrong axis) a stopped member keeps
    moving."""
    dims = (3, 2, 4, 2)
    problem, _ = random_tensor_completion(dims, 24, rank=1, norm=1.0, seed=3, reduction="mean")
    model = CP(dims, 2)
    members = [inits.cp_gaussian(model, s, seed=s_i).factors for s_i, s in enumerate((0.3, 0.5, 0.7, 0.9))]
    eng = GradientDescent(lr=0.2, check_every=10, kernel=kernel)
    res = eng.run(problem, model, _stack(members), steps=4000, until_loss=1e-3)
    assert res.stats["kernel"] == ("cp-dense" if kernel == "matmul" else "cp")
    assert list(res.status) == ["completed"] * 4 and len(set(res.final_step.tolist())) > 1
    for b in range(4):
        alone = eng.run(problem, model, _stack([members[b]]), steps=int(res.final_step[b]))
        assert _rel(alone.final_product[0], res.final_product[b]) <= 1e-14
