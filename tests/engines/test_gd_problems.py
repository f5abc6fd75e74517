"""``gd`` on every kind of problem the generators and problem files make, batched, against torch.optim.SGD."""

from __future__ import annotations

import numpy as np
import pytest

from models import CP, DeepMatrix, inits
from models import generators as G
from models.engines.gd import GradientDescent
from models.problem_files import load_problem, save_problem
from sgd_reference import sgd_reference

REL = 1e-12  # float64 rounding after a few dozen steps (observed ~1e-15)


CASES = [
    ("rc20:unobserved=1x1,z=2,eps=0.1", 1), ("rc20_larger:shape=3x5", 2), ("rc20_larger:shape=4x4", 3),
    ("random_completion:shape=6x5,rank=2,m=14,reduction=mean", 1), ("random_completion:shape=6x5,rank=2,m=14", 3),
    ("random_sensing:shape=4x3,rank=1,m=7", 1), ("random_sensing:shape=3x4,rank=2,m=9,reduction=mean", 3),
    ("random_tensor:dims=3x4x2,rank=2,m=12", 3), ("random_tensor:dims=3x3x3x3,rank=2,m=30,reduction=mean", 4),
]


@pytest.mark.parametrize("spec, size", CASES)
def test_gd_batch_matches_sgd_on_every_problem_kind(tmp_path, spec, size):
    name, params = G.parse_problem_spec(spec)
    problem = G.generate(name, **params)
    problem = load_problem(save_problem(problem, tmp_path / "p.npz"))  # and through a problem file
    if hasattr(problem, "dims"):
        model = CP(problem.dims, size)
        members = [inits.cp_gaussian(model, 0.5, seed=s).factors for s in range(3)]
    else:
        model = DeepMatrix(size, problem.shape)
        members = [inits.gaussian(model, 0.5, seed=s).factors for s in range(3)]
    batch = [np.stack([fs[j] for fs in members]) for j in range(len(members[0]))]
    steps, lr = 30, 0.05
    res = GradientDescent(lr=lr, record_every=10).run(problem, model, batch, steps=steps)
    assert list(res.steps) == [0, 10, 20, 30]
    for b, fs in enumerate(members):
        ref = sgd_reference(problem, model, fs, lr, steps)[0]
        for k, s in enumerate(res.steps):
            scale = max(float(np.max(np.abs(ref[s]))), 1e-300)
            assert float(np.max(np.abs(res.product[k, b] - ref[s]))) <= REL * scale



@pytest.mark.parametrize("reduction, depth", [("mean", 3), ("half_sum", 2)])
def test_gd_scattered_completion_gathers_and_matches_sgd(reduction, depth):
    # random observations form many runs of consecutive entries: the matmul kernel gathers and scatters them
    # (models.engines.gd.kernels.MAX_RUNS); no dense m x d d' operator is built by the problem or the engine
    from models.engines.gd.kernels import MAX_RUNS, observed_runs

    problem, _ = G.random_completion((12, 10), rank=2, m=60, seed=3, reduction=reduction)
    assert len(observed_runs(np.sort(problem.obs_flat), 120)) > MAX_RUNS
    model = DeepMatrix(depth, problem.shape)
    members = [inits.gaussian(model, 0.3, seed=s).factors for s in range(2)]
    batch = [np.stack([fs[j] for fs in members]) for j in range(depth)]
    steps, lr = 20, 0.05
    res = GradientDescent(lr=lr, record_every=10, kernel="matmul").run(problem, model, batch, steps=steps)
    assert "operator" not in problem.__dict__          # the engine never asked for the dense operator
    for b, fs in enumerate(members):
        ref = sgd_reference(problem, model, fs, lr, steps)[0]
        for k, s in enumerate(res.steps):
            scale = max(float(np.max(np.abs(ref[s]))), 1e-300)
            assert float(np.max(np.abs(res.product[k, b] - ref[s]))) <= REL * scale
        W = res.product[-1, b]
        assert res.loss[-1, b] == pytest.approx(problem.loss(W), rel=1e-12)


def test_gd_keeps_what_it_records_not_the_history():
    # the bytes per recorded point stated in models.trajectory.Trajectory's docstring (8 d d' + 26 per member and
    # point, 8 per recorded step), and the final factors once; a 30x30 depth-3 stand-in for the 100x100 case
    problem, _ = G.random_completion((30, 30), rank=2, m=400, seed=0, reduction="mean")
    model = DeepMatrix(3, (30, 30))
    fs = inits.balanced(model, 0.5, seed=0).factors
    B, steps, every = 2, 60, 20
    res = GradientDescent(lr=0.1).run(problem, model, [np.stack([F] * B) for F in fs], steps=steps,
                                            record_every=every)
    rows = steps // every + 1
    assert list(res.steps) == [0, 20, 40, 60]
    held = sum(getattr(res, k).nbytes for k in ("steps", "loss", "product", "det_sign", "recorded", "loss_err",
                                                 "product_err"))
    assert held == rows * B * (8 * 30 * 30 + 26) + 8 * rows
    assert sum(F.nbytes for F in res.final_factors) == B * 8 * 3 * 30 * 30
    tr = res.trajectory(0)
    assert len(tr.points) == rows and all(p.factors is None for p in tr.points[:-1])
    assert all(p.product.nbytes == 8 * 30 * 30 for p in tr.points)
