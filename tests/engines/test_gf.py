"""The float64 gradient-flow engine ``gf``: closed forms, reduced ODEs, the raw flow, invariants, bad input.

Tolerances: where a reference is exact (closed form, or an independent integration at a much tighter tolerance),
the engine's difference from it must lie within the engine's own error estimate (``product_err``) plus a
rounding allowance; a too-small estimate fails these tests just as a wrong trajectory does.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from models import inits
from models.engines import get_engine
from models.errors import InvalidInput
from models.factorizations import DeepMatrix, balancedness
from models.problems import MatrixProblem, completion, rc20
from models.trajectory import Status

EPS = np.finfo(float).eps


def gf(**options):
    return get_engine("gf", **options)


# ---------------------------------------------------------------------------------------------------------------
# Closed form under a constant gradient projection (catalog ACHL19-Cor-Sharpness)
# ---------------------------------------------------------------------------------------------------------------
class ConstantPull(MatrixProblem):
    """``l(W) = -c W11``: the gradient ``-c e1 e1^T`` has the constant projection ``<grad l, u1 v1^T> = -c`` while
    ``W`` stays diagonal with ``W11`` its top singular value (a test double: not a least-squares problem)."""

    c = 0.5

    def loss(self, W):
        return -self.c * float(np.asarray(W)[0, 0])

    def grad(self, W):
        G = np.zeros_like(np.asarray(W, dtype=float))
        G[0, 0] = -self.c
        return G

    def loss_flat(self, w):
        return -self.c * w[0]

    def grad_flat(self, w):
        return [-self.c + 0 * w[0], 0 * w[0], 0 * w[0], 0 * w[0]], [w[0]]


def sigma_closed_form(sigma0: float, c: float, N: int, t: np.ndarray) -> np.ndarray:
    if N == 2:
        return sigma0 * np.exp(2 * c * t)
    return (sigma0 ** -(1 - 2 / N) - (N - 2) * c * t) ** (-N / (N - 2))


@pytest.mark.parametrize("N", [2, 3, 4, 6])
def test_sigma_follows_the_closed_form_under_a_constant_gradient_projection(N):
    problem = ConstantPull((2, 2), np.array([[1.0, 0, 0, 0]]), np.array([0.0]))
    model = DeepMatrix(N, (2, 2))
    sigma0, c = 0.3, ConstantPull.c
    init = inits.explicit(model, inits.balanced_from_product(model, np.diag([sigma0, 0.1])))
    if N == 2:
        times = [0.5, 1.0, 2.0, 4.0]
    else:  # up to 99% of the blow-up time t*
        t_star = sigma0 ** -(1 - 2 / N) / ((N - 2) * c)
        times = [f * t_star for f in (0.25, 0.5, 0.9, 0.99)]
    traj = gf().run(problem, model, init, record_at=times)
    assert traj.status is Status.COMPLETED, traj.message
    assert traj.stats["path"] == "chart"
    by_t = {round(p.t, 12): p for p in traj.points}
    for t in times:
        p = by_t[round(t, 12)]
        exact = sigma_closed_form(sigma0, c, N, np.array(t))
        assert abs(p.product[0, 0] - exact) <= p.product_err + 1e-12 * exact, (t, p.product[0, 0], exact)
        assert abs(p.product[0, 1]) + abs(p.product[1, 0]) <= 1e-12 * exact
        # sigma_2 does not move: its projection is 0
        assert p.product[1, 1] == pytest.approx(0.1, rel=1e-12)
    # sharpness: the last quarter of the way to t* multiplies sigma by far more for deeper N
    assert traj.points[-1].product[0, 0] > 10 * sigma0 if N >= 3 else True


# ---------------------------------------------------------------------------------------------------------------
# Depth 2, W(0) = alpha I: the reduced symmetric ODE (catalog RC20-Prop-Conv)
# ---------------------------------------------------------------------------------------------------------------
def reduced_ode(alpha: float, times):
    def f(t, y):
        a, b, c = y
        return [2 * b * (1 - b), (1 - b) * (a + c) - b * c, 2 * b * (1 - b) - 2 * c * c]

    sol = solve_ivp(f, (0.0, max(times)), [alpha, 0.0, alpha], method="Radau", t_eval=sorted(times), rtol=1e-13,
                    atol=1e-15)
    assert sol.success
    return {round(t, 9): sol.y[:, k] for k, t in enumerate(sol.t)}


@pytest.mark.parametrize("alpha", [0.1, 1.0])
def test_depth2_identity_init_follows_the_reduced_ode(alpha):
    model = DeepMatrix(2, (2, 2))
    times = [0.5, 2.0, 10.0, 100.0, 1000.0]
    traj = gf(rtol=1e-11).run(rc20(), model, inits.identity(model, alpha), record_at=times)
    assert traj.status is Status.COMPLETED, traj.message
    assert traj.stats["path"] == "raw-then-chart"  # alpha I is a singular point of the chart
    ref = reduced_ode(alpha, times)
    for p in traj.points:
        key = round(p.t, 9)
        if key not in ref:
            continue
        a, b, c = ref[key]
        W_ref = np.array([[a, b], [b, c]])
        diff = np.max(np.abs(p.product - W_ref))
        # the reduced ODE's own error at rtol 1e-13 is ~1e-12 relative
        assert diff <= p.product_err + 1e-10 * max(1.0, abs(a)), (p.t, diff, p.product_err)
        loss_ref = (b - 1) ** 2 + c * c / 2
        assert p.loss == pytest.approx(loss_ref, rel=1e-6, abs=1e-14)


def test_depth2_identity_init_converges_with_w11_times_s_near_one():
    model = DeepMatrix(2, (2, 2))
    traj = gf().run(rc20(), model, inits.identity(model, 0.5), until_loss=1e-10)
    assert traj.status is Status.COMPLETED, traj.message
    losses = traj.losses
    assert np.all(np.diff(losses) <= 0)
    f = traj.final
    assert f.loss == pytest.approx(1e-10, rel=1e-9)
    s = math.sqrt(2 * f.loss)
    assert abs(f.product[0, 0]) >= (1 - s) ** 2 / s
    assert abs(f.product[0, 0]) * s == pytest.approx(1.0, abs=1e-3)


# ---------------------------------------------------------------------------------------------------------------
# The chart against the raw-factor flow, where the raw flow is reliable
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("depth", [3, 4])
def test_chart_agrees_with_the_raw_flow_at_moderate_loss(depth):
    model = DeepMatrix(depth, (2, 2))
    init = inits.balanced(model, 0.5, seed=3, det="positive")
    problem = rc20(1.0, 0.8, 0.0)
    chart_run = gf(path="chart").run(problem, model, init, until_loss=1e-5)
    assert chart_run.status is Status.COMPLETED and chart_run.stats["path"] == "chart"
    raw_run = gf(path="raw", rtol=1e-12).run(problem, model, init, until_loss=1e-5)
    assert raw_run.status is Status.COMPLETED, raw_run.message
    # both record the same loss levels; errors at a level are errors of the path through that loss
    assert len(raw_run.points) == len(chart_run.points)
    compared = 0
    for p, q in zip(chart_run.points[1:], raw_run.points[1:]):
        assert p.loss == pytest.approx(q.loss, rel=1e-12)
        tol = p.product_err + q.product_err + 1e-9 * np.max(np.abs(p.product))
        assert np.max(np.abs(p.product - q.product)) <= tol, (p.loss, p.product, q.product)
        assert p.det_sign == q.det_sign == 1
        compared += 1
    assert compared >= 8


def test_balancedness_is_conserved_along_the_raw_flow():
    model = DeepMatrix(3, (2, 2))
    init = inits.balanced(model, 0.3, seed=1)
    traj = gf(path="raw").run(rc20(), model, init, until_loss=1e-6)
    # raw float64 may stop early (sigma_2 collapses); the points it kept are valid and must be balanced
    assert traj.status in (Status.COMPLETED, Status.PRECISION_LOST), traj.message
    assert len(traj.points) >= 10
    for p in traj.points:
        scale = max(float(np.max(np.abs(W))) for W in p.factors) ** 2
        assert balancedness(p.factors) <= 1e-7 * scale, (p.t, balancedness(p.factors))


def test_unbalanced_conservation_law_holds_too():
    """``W_{j+1}^T W_{j+1} - W_j W_j^T`` is constant for any init (ACH18), not only zero for balanced ones."""
    model = DeepMatrix(3, (2, 2))
    init = inits.gaussian(model, 0.5, seed=2)
    traj = gf(path="raw").run(rc20(), model, init, until_loss=1e-4)
    assert traj.status in (Status.COMPLETED, Status.PRECISION_LOST)
    def gaps(fs):
        return [fs[j + 1].T @ fs[j + 1] - fs[j] @ fs[j].T for j in range(len(fs) - 1)]
    g0 = gaps(traj.points[0].factors)
    for p in traj.points[1:]:
        for a, b in zip(gaps(p.factors), g0):
            assert np.max(np.abs(a - b)) <= 1e-7


# ---------------------------------------------------------------------------------------------------------------
# The headline target: loss 1e-12 at every depth 2..8 with the det sign kept
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("depth", [2, 3, 4, 5, 6, 7, 8])
def test_reaches_1e_12_with_det_kept_and_w11_bound(depth):
    model = DeepMatrix(depth, (2, 2))
    traj = gf().run(rc20(), model, inits.balanced(model, 0.1, seed=depth, det="positive"), until_loss=1e-12)
    assert traj.status is Status.COMPLETED, traj.message
    f = traj.final
    assert f.loss == pytest.approx(1e-12, rel=1e-8)
    assert all(p.det_sign == 1 for p in traj.points)
    s = math.sqrt(2 * f.loss)
    w11 = abs(f.product[0, 0])
    assert w11 - f.product_err >= (1 - s) ** 2 / s  # RC20 Theorem 1, beyond the error estimate
    assert f.product_err <= 1e-6 * w11
    # the loss levels were recorded in order
    assert np.all(np.diff(traj.losses) < 0)


def test_negative_det_start_keeps_its_sign_and_converges():
    model = DeepMatrix(3, (2, 2))
    traj = gf().run(rc20(), model, inits.balanced(model, 0.1, seed=0, det="negative"), until_loss=1e-12)
    assert traj.status is Status.COMPLETED
    assert all(p.det_sign == -1 for p in traj.points)
    # det < 0 admits zero-loss completions with bounded w11 (catalog RC20-Thm1: the hypothesis matters)
    assert abs(traj.final.product[0, 0]) < 1e3


def test_raw_path_reports_precision_loss_instead_of_a_flipped_det():
    """Depth 2 in raw float64 coordinates: sigma_2 collapses and rounding would flip det near loss 2e-2
    (catalog RC20-Pitfall-Depth2). The engine must stop with PRECISION_LOST and keep only valid points."""
    model = DeepMatrix(2, (2, 2))
    traj = gf(path="raw").run(rc20(), model, inits.balanced(model, 0.1, seed=0), until_loss=1e-8)
    assert traj.status is Status.PRECISION_LOST
    assert all(p.det_sign == 1 for p in traj.points)
    assert traj.final.loss > 1e-8


def test_time_horizon_reports_a_stalled_loss():
    """RC20 with eps > 0 and w11 heading to the wrong side: the loss converges to eps^2/2 > until_loss."""
    model = DeepMatrix(2, (2, 2))
    traj = gf().run(rc20(1.0, 1.0, 0.1), model, inits.balanced(model, 0.1, seed=1), until_loss=1e-12,
                    wall_budget=60)
    assert traj.status in (Status.BUDGET, Status.SOLVER_FAILED)
    assert traj.final.loss == pytest.approx(0.1 ** 2 / 2, rel=0.2)
    assert all(p.det_sign == 1 for p in traj.points)


def test_general_completion_problem_on_the_raw_path():
    problem = completion((3, 3), [(0, 0), (0, 1), (1, 1), (2, 2), (1, 2)], [1.0, 0.5, -0.3, 0.8, 0.2])
    model = DeepMatrix(3, (3, 3))
    traj = gf(path="raw").run(problem, model, inits.balanced(model, 0.1, seed=0), until_loss=1e-8)
    assert traj.status in (Status.COMPLETED, Status.PRECISION_LOST)
    assert traj.stats["path"] == "raw"
    if traj.status is Status.COMPLETED:
        assert traj.final.loss == pytest.approx(1e-8, rel=1e-6)


def test_error_estimate_bounds_the_error_against_a_much_tighter_run():
    model = DeepMatrix(4, (2, 2))
    init = inits.balanced(model, 0.2, seed=5)
    # points at loss levels: the error is that of the path through the level (compare at the same loss)
    loose = gf(rtol=1e-8).run(rc20(), model, init, until_loss=1e-10)
    tight = gf(rtol=1e-12).run(rc20(), model, init, until_loss=1e-10)
    assert len(loose.points) == len(tight.points) > 10
    for p, q in zip(loose.points[1:], tight.points[1:]):
        assert p.loss == pytest.approx(q.loss, rel=1e-12)
        assert np.max(np.abs(p.product - q.product)) <= p.product_err + q.product_err + 4 * EPS * np.max(np.abs(p.product))
        assert abs(p.loss - q.loss) <= p.loss_err + q.loss_err
    # points at times: the error is that of the state at that time
    times = [p.t for p in loose.points[1:]]
    loose_t = gf(rtol=1e-8).run(rc20(), model, init, record_at=times)
    tight_t = gf(rtol=1e-12).run(rc20(), model, init, record_at=times)
    def at(traj, t):  # the point recorded at time t (loss levels are recorded too; t goes through log1p/expm1)
        (p,) = [p for p in traj.points if abs(p.t - t) <= 1e-13 * t][-1:]
        return p

    for t in times:
        p, q = at(loose_t, t), at(tight_t, t)
        assert np.max(np.abs(p.product - q.product)) <= p.product_err + q.product_err + 4 * EPS * np.max(np.abs(p.product))


def test_json_record_is_strict_and_complete():
    import json

    model = DeepMatrix(3, (2, 2))
    traj = gf().run(rc20(), model, inits.balanced(model, 0.1, seed=0), until_loss=1e-8)
    d = json.loads(json.dumps(traj.to_json(), allow_nan=False))
    assert d["engine"] == "gf" and d["status"] == "completed"
    assert {"t", "loss", "product", "det_sign", "loss_err", "product_err"} <= set(d["final"])
    assert d["settings"]["init"]["params"]["seed"] == 0 if "params" in d["settings"]["init"] else True
    assert d["tolerances"]["rtol"] == 1e-10
    assert d["stats"]["steps"] > 0 and d["seconds"] > 0


# ---------------------------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("make, needle", [
    (lambda: DeepMatrix(0, (2, 2)), "depth"),
    (lambda: inits.balanced(DeepMatrix(2, (2, 2)), -1.0), "scale"),
    (lambda: inits.balanced(DeepMatrix(2, (2, 2)), float("nan")), "scale"),
    (lambda: rc20(float("nan")), "z"),
    (lambda: get_engine("no-such-engine"), "engine"),
    (lambda: gf(rtol=-1), "rtol"),
    (lambda: gf(path="sideways"), "path"),
    (lambda: gf(path="chart").run(rc20(), DeepMatrix(2, (2, 2)), inits.gaussian(DeepMatrix(2, (2, 2)), 0.1),
                                  until_loss=1e-3), "chart"),
    (lambda: gf().run(rc20(), DeepMatrix(2, (2, 2)), inits.balanced(DeepMatrix(2, (2, 2)), 0.1)), "until_loss"),
    (lambda: gf().run(rc20(), DeepMatrix(2, (2, 2)), inits.balanced(DeepMatrix(2, (2, 2)), 0.1),
                      until_loss=float("nan")), "until_loss"),
    (lambda: gf().run(rc20(), DeepMatrix(2, (3, 3)), inits.balanced(DeepMatrix(2, (3, 3)), 0.1), until_loss=1e-3),
     "shape"),
])
def test_bad_input_raises_a_clear_error(make, needle):
    with pytest.raises(InvalidInput) as exc:
        make()
    assert needle in str(exc.value)
    assert "\n" not in str(exc.value)


def test_a_loose_main_run_gets_a_tighter_companion_not_a_zero_estimate():
    # rtol 1e-3: a companion 10x looser would pass COMPANION_RTOL_MAX; it used to be capped at the main run's own
    # tolerance, the two runs were identical and every error estimate was exactly 0 (read as exact)
    from models.engines.gf import COMPANION_RTOL_MAX
    model = DeepMatrix(4, (2, 2))
    tr = get_engine("gf", rtol=1e-3).run(rc20(), model, inits.gaussian(model, 5.0, seed=0), until_loss=1e-12)
    assert tr.stats["error_run"]["rtol"] == pytest.approx(1e-4) and 1e-4 < COMPANION_RTOL_MAX
    assert all(p.product_err > 0 and p.loss_err > 0 for p in tr.points[1:])
    assert tr.error_estimate > 0
