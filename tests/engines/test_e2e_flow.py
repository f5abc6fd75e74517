"""The end-to-end flow path of ``gf`` (balanced deep matrix factorization of any shape) against its definition
and against the raw-factor flow."""

from __future__ import annotations

import numpy as np
import pytest

from models import generators as G
from models import inits
from models.engines import e2e_flow, get_engine
from models.factorizations import DeepMatrix, factor_grads, product
from models.problems import completion


def _psd_power(M, p):
    lam, Q = np.linalg.eigh(M)
    lam = np.where(lam > 1e-12 * lam.max(), lam, 0.0)  # the kernel of a rank-deficient W W^T or W^T W
    powered = np.where(lam > 0, lam, 1.0) ** p if p > 0 else np.ones_like(lam)
    powered = np.where(lam > 0, powered, 1.0 if p == 0 else 0.0)
    return (Q * powered) @ Q.T


@pytest.mark.parametrize("shape", [(3, 3), (3, 5), (5, 2)])
@pytest.mark.parametrize("depth", [2, 3, 5])
def test_velocity_is_the_ach18_formula_and_the_factor_flow(shape, depth):
    problem, _ = G.random_completion(shape, 1, shape[0] * shape[1] // 2 + 1, seed=depth)
    model = DeepMatrix(depth, shape)
    init = inits.balanced(model, 0.7, seed=1)
    W = product(init.factors)
    G_ = problem.grad(W)
    v = e2e_flow.EndToEnd(problem, depth).velocity(W)
    # ACH18 Theorem 1: -sum_j (W W^T)^{(j-1)/N} grad (W^T W)^{(N-j)/N}
    N = depth
    ref = -sum(_psd_power(W @ W.T, (j - 1) / N) @ G_ @ _psd_power(W.T @ W, (N - j) / N) for j in range(1, N + 1))
    np.testing.assert_allclose(v, ref, rtol=0, atol=1e-12 * np.max(np.abs(ref)))
    # chain rule through balanced factors: dW/dt = sum_j W_{L:j+1} (-dphi/dW_j) W_{j-1:1}
    fs = list(init.factors)
    gs = factor_grads(fs, G_)
    chain = 0
    for j in range(N):
        left = product(fs[j + 1:]) if j + 1 < N else np.eye(shape[0])
        right = product(fs[:j]) if j > 0 else np.eye(shape[1])
        chain = chain - left @ gs[j] @ right
    np.testing.assert_allclose(v, chain, rtol=0, atol=1e-12 * np.max(np.abs(chain)))


def test_kernel_closed_forms():
    s = np.array([2.0, 0.5, 1e-3])
    for N in (2, 3, 4, 8):
        K = e2e_flow.kernel(s, s, N)
        np.testing.assert_allclose(np.diag(K), N * s ** (2 - 2 / N), rtol=1e-14)
        for k in range(3):
            for l in range(3):
                if k != l:
                    geo = (s[k] ** 2 - s[l] ** 2) / (s[k] ** (2 / N) - s[l] ** (2 / N))
                    assert K[k, l] == pytest.approx(geo, rel=1e-10) and K[k, l] == pytest.approx(K[l, k], rel=1e-14)


@pytest.mark.parametrize("shape, depth, kind", [((3, 4), 2, "completion"), ((4, 2), 3, "completion"),
                                                ((3, 3), 4, "completion"), ((2, 5), 6, "completion"),
                                                ((3, 2), 3, "sensing"), ((3, 4), 3, "wide")])
def test_e2e_trajectory_matches_the_raw_factor_flow(shape, depth, kind):
    if kind == "sensing":
        problem, _ = G.random_sensing(shape, 1, 4, seed=3)
    else:
        problem, _ = G.random_completion(shape, 1, shape[0] * shape[1] - 2, seed=3)
    # "wide": hidden widths above min(d, d'); the balanced init is zero-padded and the end-to-end flow still holds
    model = DeepMatrix(depth, shape, (5,) * (depth - 1) if kind == "wide" else None)
    init = inits.balanced(model, 0.3, seed=2)
    times = (0.5, 3.0, 20.0)
    runs = {}
    for path in ("e2e", "raw"):
        traj = get_engine("gf", path=path, loose=0).run(problem, model, init, record_at=times, until_loss=1e-8)
        # loose=0 (no companion run, for speed): the error is unknown, so the run that reached its end is
        # 'inaccurate', never 'completed'; the comparison of the two paths is the evidence here
        assert traj.stats["path"] == path and traj.status.value == "inaccurate"
        assert traj.final.loss <= 1e-8 * (1 + 1e-9) or traj.final.t == pytest.approx(max(times))
        runs[path] = {round(p.t, 9): p.product for p in traj.points if any(abs(p.t - t) < 1e-9 for t in times)}
    assert runs["e2e"].keys() == runs["raw"].keys() and len(runs["e2e"]) >= 2
    for t, W in runs["e2e"].items():  # both at rtol 1e-10: the paths agree to ~1e-9 of the entries
        np.testing.assert_allclose(W, runs["raw"][t], rtol=0, atol=1e-7 * max(1.0, np.max(np.abs(W))))


@pytest.mark.parametrize("kind", ["completion", "sensing"])
def test_matrix_free_solve_and_path_match_the_dense_ones(monkeypatch, kind):
    if kind == "completion":
        problem, _ = G.random_completion((6, 5), 2, 18, seed=4)
    else:
        problem, _ = G.random_sensing((6, 5), 2, 20, seed=4)
    model = DeepMatrix(3, (6, 5))
    init = inits.balanced(model, 0.2, seed=5)
    flow = e2e_flow.EndToEnd(problem, 3)
    W = product(init.factors) + 0.3 * np.random.default_rng(0).standard_normal((6, 5))
    U, V, K = flow.svd(W)
    b = np.random.default_rng(1).standard_normal(30)
    for a in (1e-3, 1.0, 1e4):
        x = flow.solve(U, V, K, a, b)
        M = np.eye(30) - a * flow.dense_jacobian(W)  # I + a P_W H
        assert np.linalg.norm(M @ x - b) <= 1e-8 * np.linalg.norm(b) * np.linalg.cond(M) ** 0.5
    dense = get_engine("gf", path="e2e", loose=0).run(problem, model, init, until_loss=1e-9)
    monkeypatch.setattr(e2e_flow, "DENSE_MAX", 0)
    krylov = get_engine("gf", path="e2e", loose=0).run(problem, model, init, until_loss=1e-9)
    assert krylov.stats["cg_solves"] > 0 and dense.stats["cg_solves"] == 0
    assert krylov.final.loss == pytest.approx(1e-9, rel=1e-6)
    np.testing.assert_allclose(krylov.final.product, dense.final.product, rtol=0, atol=1e-7)


def test_square_e2e_stops_before_the_det_could_flip():
    # [[*, 1], [1, 0]] padded to 3x3 with a third diagonal 1 (rc20_larger): solutions have det -1, so a
    # det > 0 start drives s_min -> 0; the path stops with precision_lost instead of reporting a flipped det
    problem = G.rc20_larger((3, 3))
    model = DeepMatrix(2, (3, 3))
    init = inits.balanced(model, 0.1, seed=0, det="positive")
    traj = get_engine("gf", path="e2e").run(problem, model, init, until_loss=1e-30, wall_budget=20)
    assert all(p.det_sign == 1 for p in traj.points) and len(traj.points) > 3
    # at depth 2 s_min collapses long before the loss does (as on the 2x2 problem): W coordinates give up early
    assert traj.status.value == "precision_lost" and "det" in traj.message
    s = np.linalg.svd(traj.final.product, compute_uv=False)
    assert s[-1] / s[0] > 1e3 * np.finfo(float).eps


def test_e2e_is_the_default_for_balanced_non_2x2():
    problem = completion((2, 3), [(0, 1), (1, 2)], [1.0, -1.0])
    model = DeepMatrix(3, (2, 3))
    traj = get_engine("gf").run(problem, model, inits.balanced(model, 0.1, seed=0), until_loss=1e-10)
    assert traj.stats["path"] == "e2e" and traj.status.value == "completed"
    assert traj.final.loss == pytest.approx(1e-10, rel=1e-8) and traj.error_estimate < 1e-6


def test_depth3_rc20_larger_does_not_crawl_as_w_grows():
    # the start's entries are ~1e-2 and the limit's ~10: an atol fixed at 1e-14 x the start's largest entry sat
    # below the rounding floor of W's entries (~eps x the largest) and BDF took 200k steps to reach t ~ 130
    # (loss 3e-3); with the atol following the largest entry the path reaches loss 1e-4 in ~2k steps. The step
    # cap (8,000) is a count, not a time: the old code stops there with status 'budget' at loss > 1e-3.
    problem = G.rc20_larger((5, 5))
    model = DeepMatrix(3, (5, 5))
    init = inits.balanced(model, 1e-2, seed=0, det="positive")
    traj = get_engine("gf", path="e2e", loose=0, max_steps=8_000).run(problem, model, init, until_loss=1e-4)
    assert traj.status.value == "inaccurate" and traj.final.loss <= 1e-4 * (1 + 1e-9)  # loose=0: error unknown
    assert traj.stats["atol_resets"] >= 2 and all(p.det_sign == 1 for p in traj.points)
    # against plain scipy BDF on W (its own finite-difference Jacobian, atol at the limit's scale) at t = 100
    from scipy.integrate import solve_ivp
    flow = e2e_flow.EndToEnd(problem, 3)
    t_ref = 100.0
    ref = get_engine("gf", path="e2e", loose=0).run(problem, model, init, record_at=(t_ref,))
    W_ref = solve_ivp(lambda t, y: flow.velocity(y.reshape(5, 5)).reshape(-1), (0, t_ref),
                      product(init.factors).reshape(-1), method="BDF", rtol=1e-11, atol=1e-13).y[:, -1]
    W_gf = [p.product for p in ref.points if abs(p.t - t_ref) < 1e-9][0]
    np.testing.assert_allclose(W_gf, W_ref.reshape(5, 5), rtol=0, atol=1e-6 * np.max(np.abs(W_gf)))
