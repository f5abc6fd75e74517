"""The block-SVD chart of the balanced end-to-end flow (``gf`` path ``svd``, and the ``auto`` path's hand-over
from the stored-W flow): against the end-to-end velocity, against the raw-factor flow, and past the point where
the stored-W flow loses the det sign."""

from __future__ import annotations

import numpy as np
import pytest

from models import generators as G
from models import inits
from models.engines import e2e_flow, get_engine, svd_flow
from models.factorizations import DeepMatrix, product


@pytest.mark.parametrize("shape", [(4, 4), (3, 5), (5, 2)])
@pytest.mark.parametrize("depth", [2, 3, 4])
def test_chart_moves_w_by_the_end_to_end_velocity(shape, depth):
    # a W with singular values spread over three blocks (1, 1e-4, 1e-9 relative) and a non-anchored state
    rng = np.random.default_rng(depth)
    problem, _ = G.random_completion(shape, 1, seed=depth)
    r = min(shape)
    s = np.array([1.0, 0.5, 1e-4, 1e-9][:r])
    Q1, _ = np.linalg.qr(rng.standard_normal((shape[0], shape[0])))
    Q2, _ = np.linalg.qr(rng.standard_normal((shape[1], shape[1])))
    W0 = (Q1[:, :r] * s) @ Q2[:, :r].T
    chart = svd_flow.SVDChart(problem, depth, W0)
    assert len(chart.starts) - 1 == {2: 1, 3: 2, 4: 3}[r]  # a new block at each gap of more than 1/SMALL
    np.testing.assert_allclose(chart.matrix(chart.y0), W0, rtol=0, atol=1e-14)  # W0 entries below 1
    y = chart.y0 + 1e-2 * rng.standard_normal(chart.n)
    W = chart.matrix(y)
    v = chart.rhs(y)
    h = 1e-6  # central difference of W along the chart's velocity: error O(h^2) ~ 1e-12 relative, plus rounding
    dW = (chart.matrix(y + h * v) - chart.matrix(y - h * v)) / (2 * h)
    ref = e2e_flow.EndToEnd(problem, depth).velocity(W)
    np.testing.assert_allclose(dW, ref, rtol=0, atol=1e-7 * np.max(np.abs(ref)))
    np.testing.assert_allclose(chart.velocity(y), ref, rtol=0, atol=1e-12 * np.max(np.abs(ref)))
    sign = chart.det_sign(y) if shape[0] == shape[1] else None
    y2 = chart.recentre(y)  # same W, same det sign, frames at the current point
    np.testing.assert_allclose(chart.matrix(y2), W, rtol=0, atol=1e-14 * np.max(np.abs(W)))
    assert np.all(y2[: chart.na + chart.nb] == 0)
    if sign is not None:
        assert chart.det_sign(y2) == sign == int(np.sign(np.linalg.det(W)))


@pytest.mark.parametrize("shape, depth", [((3, 4), 2), ((4, 2), 3), ((3, 3), 4), ((2, 3), 3)])
def test_svd_path_trajectory_matches_the_raw_factor_flow(shape, depth):
    problem, _ = G.random_completion(shape, 1, shape[0] * shape[1] - 2, seed=3)
    model = DeepMatrix(depth, shape)
    init = inits.balanced(model, 0.3, seed=2)
    times = (0.5, 3.0, 20.0)
    runs = {}
    for path in ("svd", "raw"):
        traj = get_engine("gf", path=path, loose=0).run(problem, model, init, record_at=times, until_loss=1e-8)
        assert traj.stats["path"] == path
        runs[path] = {round(p.t, 9): p.product for p in traj.points if any(abs(p.t - t) < 1e-9 for t in times)}
    assert runs["svd"].keys() == runs["raw"].keys() and len(runs["svd"]) >= 2
    for t, W in runs["svd"].items():  # both at rtol 1e-10: the paths agree to ~1e-9 of the entries
        np.testing.assert_allclose(W, runs["raw"][t], rtol=0, atol=1e-7 * max(1.0, np.max(np.abs(W))))


def test_auto_path_goes_past_the_stored_w_precision_stop():
    # rc20_larger 3x3, depth 2, det > 0: solutions have det -1, so s_min -> 0 exponentially; the stored-W path
    # ("e2e") stops with precision_lost, "auto" hands over to the chart and keeps the det sign through it
    problem = G.rc20_larger((3, 3))
    model = DeepMatrix(2, (3, 3))
    init = inits.balanced(model, 0.1, seed=0, det="positive")
    e2e = get_engine("gf", path="e2e").run(problem, model, init, until_loss=1e-4, wall_budget=30)
    auto = get_engine("gf").run(problem, model, init, until_loss=1e-4, wall_budget=30)
    assert e2e.status.value == "precision_lost" and e2e.final.loss > 1e-2
    assert auto.stats["path"] == "e2e-then-svd" and auto.status.value == "completed"
    assert auto.final.loss == pytest.approx(1e-4, rel=1e-6) and auto.error_estimate < 1e-5
    assert all(p.det_sign == 1 for p in auto.points)
    # the two runs are the same computation until the hand-over (s_min / s_max = 1e-6): equal points
    for a, b in zip(e2e.points[:3], auto.points[:3]):
        assert a.t == b.t and np.array_equal(a.product, b.product)
    # along the flow the loss never increases (gradient flow), to the estimated error
    losses = [p.loss for p in auto.points]
    assert all(l2 <= l1 * (1 + 1e-6) for l1, l2 in zip(losses, losses[1:]))


def test_depth2_rc20_larger_passes_the_old_solver_failure():
    # at depth 2 the rhs does not depend on a block's log scale mu (K is homogeneous of degree 1): scipy's
    # adaptive num_jac saw a zero column, grew its step 10x per call, stepped mu ~ -6e4 to -inf and the run ended
    # 'solver_failed' at loss ~5e-6. The chart's own forward differences keep bounded steps.
    problem = G.rc20_larger((3, 3))
    model = DeepMatrix(2, (3, 3))
    init = inits.balanced(model, 1e-2, seed=0, det="positive")
    chart = svd_flow.SVDChart(problem, 2, product(init.factors))
    y = chart.y0 + 1e-3 * np.random.default_rng(0).standard_normal(chart.n)
    y[chart.na + chart.nb + 5] = -6e4  # the small block's mu, as in the failing run
    J = chart.jacobian(y)
    assert np.all(np.isfinite(J))
    h = 1e-6  # central differences along a random direction: O(h^2) + rounding / h ~ 1e-10 of the scale
    v = np.random.default_rng(1).standard_normal(chart.n)
    ref = (chart.rhs(y + h * v) - chart.rhs(y - h * v)) / (2 * h)
    np.testing.assert_allclose(J @ v, ref, rtol=0, atol=1e-6 * np.max(np.abs(ref)))
    traj = get_engine("gf", path="svd", loose=0, max_steps=4_000).run(problem, model, init, until_loss=1e-7)
    assert traj.stats["path"] == "svd" and traj.status.value == "inaccurate"  # loose=0: the error is unknown
    assert traj.final.loss <= 1e-7 * (1 + 1e-9) and all(p.det_sign == 1 for p in traj.points)
    s = np.linalg.svd(traj.final.product, compute_uv=False)
    assert s[-1] / s[0] < 1e3 * np.finfo(float).eps  # past where the stored-W path stops (precision_lost)
