"""Newton on the Radau stage equations of gf-mp's raw path late in a stiff flow (issue 11: depths 6 and 7 ended
``solver_failed``), and the cause: the stage Jacobians' residual term formed with the loss gradient at an iterate
off the slow manifold.

Late in RC20's flow the observed entries ``w12, w21`` of ``W = W_L .. W_1`` are stiff directions of the factor
flow (``h lambda ~ 1e29`` at depth 6, t ~ 1e16), so their residuals are ~1e-15 on the slow manifold while a Newton
iterate a relative 1e-10 off it has them wrong by far more than their size; the Hessian's residual term ``r d^2
W``, formed with those residuals, then misleads Newton in the non-stiff directions (``RawSystem.zjac``,
``slope``). The fixture ``data/raw_newton_depth6.json`` is a step the solver failed on (depth 6, 50 digits, tol
1e-18; captured from the run): with the slope-implied gradient its stage equations are solved, with the state's
gradient (``slope_jac=False``, the former code) the solver gives up. ``data/raw_newton_depth6_late.json`` (t ~
1.5e24, ``h max|J|`` beyond 1e40) also needs fresh Jacobians after each large correction (``Radau.FULL_NEWTON``).
Cheap checks of the ingredient on a depth-3
state: the implied gradient is the state's own where the slope is the state's field (so at the solution the
Jacobian is the true one; the fixed point itself never depends on it, the stage residual being formed from the
field), and it stays the on-manifold one at a perturbed iterate, where the state's gradient does not.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from models.engines.gf_mp.arith import arb_prec, from_arb, make_context, to_arb, to_arb_mat
from models.engines.gf_mp.radau import Radau, StageMatrix, StepFailure, stage_residual
from models.engines.gf_mp.systems import RawSystem
from properties.rc20_det_raw import exact_setting

DATA = Path(__file__).parent / "data" / "raw_newton_depth6.json"
#: a later step of the same run (t ~ 1.5e24, h max|J| beyond 1e40) that needs full Newton (Radau.FULL_NEWTON)
LATE = Path(__file__).parent / "data" / "raw_newton_depth6_late.json"


def _setting(depth):
    return exact_setting(dict(depth=depth, init="balanced_exact", scale=1e-2, seed=0, det="positive"))


def _late_state(ctx, depth):
    """Balanced factors of ``W = [[a, 1 + e], [1 + e, c]]`` (``a = 1e8``, ``e = 1e-14``, ``det W > 0``): the shape
    of RC20's flow late (``w11`` large, the observed residuals tiny), each factor ``W^(1/L)`` of the symmetric
    positive definite ``W`` (its eigen-decomposition at the working precision)."""
    a, e = ctx.mpf("1e8"), ctx.mpf("1e-14")
    c = (1 + e) ** 2 / a + ctx.mpf("1e-6")
    W = ctx.matrix([[a, 1 + e], [1 + e, c]])
    E, Q = ctx.eigsy(W)
    R = Q * ctx.diag([E[0] ** (ctx.one / depth), E[1] ** (ctx.one / depth)]) * Q.T
    return [R[i, j] for _ in range(depth) for i in range(2) for j in range(2)] + [ctx.mpf(30)]


def _grad(rs, z, slope=None):
    """The ``G`` that :meth:`RawSystem.jacobian` uses at ``z`` (``slope``: implied by that ``dz/dt``)."""
    out = {}
    orig = RawSystem.implied_gradient

    def spy(Bm, sl, d, dp):
        out["G"] = orig(Bm, sl, d, dp)
        return out["G"]

    if slope is None:
        return rs.res.grad(rs.entries(z))[0]
    with arb_prec(rs.ctx.prec):
        RawSystem.implied_gradient = staticmethod(spy)
        try:
            rs.jacobian(z, slope=[to_arb(v) for v in slope])
        finally:
            RawSystem.implied_gradient = staticmethod(orig)
        return [from_arb(v, rs.ctx) for v in out["G"].entries()]


def test_the_slope_implied_gradient_is_the_states_own_on_its_field_and_stays_on_the_manifold_off_it():
    ctx = make_context(60)
    problem, model, _ = _setting(3)
    rs = RawSystem(problem, model, ctx, 50)
    z = _late_state(ctx, 3)
    f = rs.terms(z)[0]
    G = _grad(rs, z)
    assert abs(G[1]) < 1e-12 and abs(G[3]) > 1e-7          # r12 tiny, r22 ~ c: the late-flow shape
    # at the state, with its own field: the same G to the working precision (Newton's fixed point unchanged)
    Gi = _grad(rs, z, f)
    assert max(abs(a - b) for a, b in zip(Gi, G)) <= 1e-40 * max(abs(v) for v in G)
    # an iterate a relative 1e-10 off along a fixed non-symmetric direction: its own r12 is off by orders of
    # magnitude more than r12 itself; the G implied by the on-manifold slope stays within 1e-6 of the true one
    zp = [v * (1 + ctx.mpf("1e-10") * ((k % 5) - 2)) for k, v in enumerate(z[:-1])] + [z[-1]]
    Gp = _grad(rs, zp)
    assert abs(Gp[1] - G[1]) > 1e3 * abs(G[1])
    Gs = _grad(rs, zp, f)
    assert max(abs(a - b) for a, b in zip(Gs, G)) <= 1e-6 * max(abs(v) for v in G)


def _stage_solve(slope_jac, data=DATA):
    cap = json.loads(data.read_text())
    ctx = make_context(cap["dps"])
    problem, model, _ = _setting(6)
    rs = RawSystem(problem, model, ctx, 50, per_factor_tol=1e-18)
    mp = lambda v: [ctx.mpf(x) for x in v]  # noqa: E731
    x0, z0, h, sc = ctx.mpf(cap["x0"]), mp(cap["z0"]), ctx.mpf(cap["h"]), mp(cap["sc"])
    rad = Radau(rs.zfun, rs.zjac, z0 + [x0], x0, ctx=ctx, rtol=ctx.mpf(cap["rtol"]), atol=mp(cap["atol"]),
                stages=cap["s"], slope_jac=slope_jac)
    return ctx, rs, rad, (x0, z0, h, [mp(v) for v in cap["Zpred"]], None, sc)


@pytest.mark.parametrize("data", [DATA, LATE], ids=["depth6", "depth6_late"])
def test_the_failing_depth6_step_is_solved_with_the_slope_implied_jacobian(data):
    ctx, rs, rad, args = _stage_solve(True, data)
    x0, z0, h, _, _, sc = args
    r = rad.solve_stages(*args)
    assert r is not None
    Z = r[0]
    # the stage equations hold: the Newton correction at Z with the exact stage Jacobians (the gradient at the
    # stages, no slope) is within the Newton tolerance (kappa tolerance units in the solver's scales); the
    # residual itself is ~1e20 tolerance units in the stiff directions (h lambda ~ 1e29 times a tiny offset)
    ys = [[a + b for a, b in zip(z0, Zj)] for Zj in Z]
    xs = [x0 + c * h for c in rad.c]
    F = [rs.zfun(x, y) for x, y in zip(xs, ys)]
    Js = [to_arb_mat(rs.zjac(x, y, f), ctx.prec) for x, y, f in zip(xs, ys, F)]
    d = StageMatrix(h, rad.A, Js, ctx, arb_prec, scale=sc).solve(stage_residual(h, rad.A, F, Z, ctx, arb_prec))
    n = len(z0)
    assert max(abs(v) / sc[i % n] for i, v in enumerate(d)) <= rad.KAPPA


@pytest.mark.parametrize("slope_jac", [False])
def test_the_same_step_fails_with_the_gradient_at_the_iterate(slope_jac):
    _, _, rad, args = _stage_solve(slope_jac)
    assert rad.solve_stages(*args) is None


def test_the_late_step_needs_fresh_jacobians_after_a_large_correction(monkeypatch):
    """Late in the flow the stiff directions turn by ~ the relative correction between iterates, and a simplified
    step multiplies that by ``h lambda_max`` (~1e40 here): the solver refreshes the stage Jacobians after every
    correction with ``h max|J| nd rtol`` above ``FULL_NEWTON`` (3 corrections here: 3e5, 8, 5e-17 tolerance
    units); keeping them (``FULL_NEWTON`` infinite, the first fix alone) the second correction diverges."""
    _, _, rad, args = _stage_solve(True, LATE)
    assert rad.solve_stages(*args) is not None
    monkeypatch.setattr(Radau, "FULL_NEWTON", float("inf"))
    _, _, rad, args = _stage_solve(True, LATE)
    assert rad.solve_stages(*args) is None


def _toy_radau(lam, jac_calls, stages=3, z0=(1, 2)):
    """A Radau solver with ``slope_jac`` on the linear flow ``dz/dx = lam z`` whose Jacobian records the point ``z``
    and the ``slope`` it is given (None when none)."""
    ctx = make_context(30)

    def fun(x, z):
        return [lam * v for v in z]

    def jac(x, z, f0, slope=None):
        jac_calls.append((list(z), slope))
        return [[ctx.mpf(lam) if i == j else ctx.mpf(0) for j in range(len(z))] for i in range(len(z))]

    z = [ctx.mpf(v) for v in z0]
    return ctx, Radau(fun, jac, z + [ctx.mpf(0)], ctx.mpf(0), ctx=ctx, rtol=ctx.mpf("1e-12"),
                      atol=[ctx.mpf("1e-20")] * len(z), stages=stages, slope_jac=True)


def test_stage_slopes_are_the_collocation_polynomials_derivative_at_each_stage():
    """``Radau.stage_slopes``: for increments ``Z_i = u(c_i h)`` of a polynomial ``u`` of degree <= s with ``u(0) = 0``
    (which the collocation polynomial reproduces exactly), the slope of stage ``i`` is ``u'(c_i h)`` -- divided by
    ``h`` (h = 0.3 here, so a slope without ``1/h`` is off by 3.3x), and each stage's own (a slope taken from a
    neighbouring stage is off by O(1) here); the constant predictor (``Z = 0``) has none."""
    ctx, rad = _toy_radau(-1, [])
    h = ctx.mpf("0.3")
    coef = [(ctx.mpf(3), ctx.mpf(-5), ctx.mpf(7)), (ctx.mpf(-2), ctx.mpf(11), ctx.mpf(1))]   # u_k = a x + b x^2 + c x^3
    u = lambda k, x: coef[k][0] * x + coef[k][1] * x ** 2 + coef[k][2] * x ** 3         # noqa: E731
    du = lambda k, x: coef[k][0] + 2 * coef[k][1] * x + 3 * coef[k][2] * x ** 2        # noqa: E731
    Z = [[u(k, ci * h) for k in range(2)] for ci in rad.c]
    slopes = rad.stage_slopes(Z, h)
    for ci, sl in zip(rad.c, slopes):
        for k in range(2):
            assert abs(sl[k] - du(k, ci * h)) <= 1e-25 * abs(du(k, ci * h))
    assert rad.stage_slopes([[0 * v for v in Zi] for Zi in Z], h) is None


def test_the_jacobian_at_an_accepted_point_is_formed_from_the_steps_slope_there():
    """After an accepted step the next step's start Jacobian gets the slope of the step's last collocation
    polynomial at its end (``dz/dx`` at ``z1``: ``lam z1`` to the Newton tolerance), not None (the slope unused)
    nor the slope at the step's middle (the first half step's polynomial: ``lam z`` there, ``e^(lam h/2)`` off);
    and every stage Jacobian gets its own stage's slope (``lam Y_i`` to the predictor's error: at most 5.1e-5
    relative here, measured; a neighbouring stage's is off by ``lam`` times the stage spacing: up to 3.0e-2)."""
    calls = []
    ctx, rad = _toy_radau(-1, calls)
    rad.step()
    assert calls[0][1] is None              # the start point of the run has no step behind it
    z1 = rad.z
    del calls[:]
    for _ in range(3):
        rad.step()
    z, slope = calls[0]
    assert z == z1 and slope is not None
    assert max(abs(a + b) for a, b in zip(slope, z1)) <= 1e-9 * max(abs(v) for v in z1)
    staged = [(z, sl) for z, sl in calls[1:] if sl is not None]
    assert len(staged) >= 3 * rad.s         # stage Jacobians of the later steps' predicted stages
    for z, sl in staged:
        assert max(abs(a + b) for a, b in zip(sl, z)) <= 3e-4 * max(abs(v) for v in z)


def test_an_exactly_stationary_step_is_accepted_with_slope_jacobians():
    """A flow at rest (``dz/dx = 0``): Newton's increments stay exactly 0, the step is accepted, and the accepted
    point has no collocation slope (the constant polynomial's) -- the start Jacobian is then the state's own,
    not a crash on the missing slope."""
    calls = []
    ctx, rad = _toy_radau(0, calls)
    for _ in range(3):
        rad.step()
    assert rad.z == [ctx.mpf(1), ctx.mpf(2)] and rad.x > 0
    assert all(sl is None for _, sl in calls)


@pytest.mark.parametrize("ratio", ["1e-6", "1e-15", "1e-18"])
def test_the_implied_gradient_falls_back_where_the_slope_does_not_determine_it(ratio):
    """Depth 2 with both factors ``Q diag(100, 100 ratio) Q^T`` (a balanced start's det decaying; the raw path
    runs on until ``|det W_j| / ||W_j||^2`` reaches ``10^(10 - digits)`` = 1e-20 at 30 digits): ``B B^T`` has
    singular values ``~sigma_i(W_1)^2 + sigma_j(W_2)^2``, so ``B^T`` nearly annihilates one direction of ``G`` and
    the slope (rounded at the working precision) says nothing about ``G`` there. Fitted anyway at ratio 1e-18 (30
    digits, ``cond(B B^T)`` ~1e36) the "implied" ``G`` was O(1) wrong with the state's own field as the slope
    (measured at ratio 1e-20: 7e3 where ``G`` is 0, -2.1e4 for 2.8e3), and so was the Jacobian; unresolved fits
    now fall back to ``G`` at the state (ball arithmetic: singular at 1e-18; at 1e-15 it bounds ``g`` to 0.39 of
    ``max|g|``, above ``RawSystem.FIT_RESOLVE``, and the unchecked Jacobian is 1.7e-2 off). At ratio 1e-6 the fit
    is resolved (and used): the same Jacobian as with ``G`` at the state to 1e-15 of its largest entry."""
    ctx = make_context(30)
    problem, model, _ = _setting(2)
    rs = RawSystem(problem, model, ctx, 20)
    th = ctx.mpf("0.3")
    Q = ctx.matrix([[ctx.cos(th), -ctx.sin(th)], [ctx.sin(th), ctx.cos(th)]])
    R = Q * ctx.diag([ctx.mpf(100), 100 * ctx.mpf(ratio)]) * Q.T
    z = [R[i, j] for _ in range(2) for i in range(2) for j in range(2)] + [ctx.mpf(5)]
    f = rs.terms(z)[0]
    with arb_prec(ctx.prec):
        J = [from_arb(v, ctx) for v in rs.jacobian(z).entries()]
        Ji = [from_arb(v, ctx) for v in rs.jacobian(z, slope=[to_arb(v) for v in f]).entries()]
    assert max(abs(a - b) for a, b in zip(Ji, J)) <= 1e-15 * max(abs(v) for v in J)


def test_a_stage_solve_the_slope_jacobians_cannot_do_is_retried_with_the_plain_ones(monkeypatch):
    """Every stage solve of a step (full step, half steps) that fails with the slope-implied Jacobians is retried
    with the Jacobians at the iterate (``Radau.solve_stages_any``) before the step is halved, and a point recorded
    inside a step that fails (in pieces too) is redone whole with them (``Radau.side``): depth 3 at 70 digits, tol 1e-60, ended ``solver_failed`` near loss 1e-27 with the slope
    Jacobians alone (all factors near-singular there), where the plain ones had reached 1e-30. Here every slope
    solve fails: the run must be the plain solver's exactly (on this linear flow the Jacobian does not depend on
    the slope), count its rescues, and keep ``slope_jac`` on; routing any solve past the retry halves the step
    until it collapses."""
    real = Radau.solve_stages

    def slope_solves_fail(self, *args):
        return None if self.slope_jac else real(self, *args)

    def run(slope_jac, retry=True):
        ctx, rad = _toy_radau(-1, [])
        rad.slope_jac = slope_jac
        if not retry:
            rad.solve_stages_any = rad.solve_stages
        for _ in range(4):
            rad.step()
        x0, _ = rad.last_start()
        return rad, rad.side((x0 + rad.x) / 2)

    monkeypatch.setattr(Radau, "solve_stages", slope_solves_fail)
    plain, side_plain = run(False)
    rad, side = run(True)
    assert (rad.x, rad.z, side) == (plain.x, plain.z, side_plain)
    assert rad.slope_jac and rad.stats["plain_newton"] >= 4 * 3
    assert plain.stats["plain_newton"] == 0
    with pytest.raises(StepFailure):
        run(True, retry=False)


def test_the_runs_stats_count_the_plain_jacobian_rescues(monkeypatch):
    # every slope-Jacobian stage solve fails, so every solve of a raw run is rescued by the plain Jacobians: the
    # trajectory's stats (the driver's sum over its solvers) must say how many, not only the solver's own dict
    from models.engines import get_engine

    real = Radau.solve_stages
    monkeypatch.setattr(Radau, "solve_stages", lambda self, *a: None if self.slope_jac else real(self, *a))
    problem, model, init = exact_setting(dict(depth=3, init="balanced_exact", scale=1.0, seed=0, det="positive"))
    tr = get_engine("gf-mp", digits=20, path="raw", estimate=False).run(problem, model, init, until_loss=1e-2,
                                                                         per_decade=1)
    assert tr.points[-1].loss <= 1e-2 * (1 + 1e-6)
    assert tr.stats["plain_newton"] >= 3 * tr.stats["steps"] > 0      # the full step and its two halves
