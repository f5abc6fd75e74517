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
state: the implied gradient is the state's own where the slope is the state's field (so Newton's fixed point is
unchanged), and it stays the on-manifold one at a perturbed iterate, where the state's gradient does not.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from models.engines.gf_mp.arith import arb_prec, from_arb, make_context, to_arb, to_arb_mat
from models.engines.gf_mp.radau import Radau, StageMatrix, stage_residual
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


def test_the_slopeimplied_gradientient_is_the_states_own_on_its_field_and_stays_on_the_manifold_off_it():
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


def test_the_failing_depth6_step_is_solved_with_the_slope_implied_jacobian():
    ctx, rs, rad, args = _stage_solve(True)
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
