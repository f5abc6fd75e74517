"""gf-mp's raw path projects Newton's stage iterates onto the slow manifold where the flow is stiff beyond
``h lambda ~ 1e20`` (``Radau.project``, :meth:`RawSystem.slow_projection`; issue 11, depth 8 past loss 1e-29).

Late in RC20's flow at depth 8 (loss 5.8e-29, ``h max|J| ~ 1e57``) the stiff directions of the factor flow turn
with the state, so a Newton iterate whose error has a stiff component ``e_s`` is corrected in the other
directions with an error ~``h lambda |e_s|`` times its distance to the solution: Newton failed on most tries, and
the run spent 225 s CPU creeping from loss 1e-29 towards 1e-30 in steps of 0.02. ``data/raw_newton_depth8.json``
is the solver's state there (captured from the run) with its planned step of 2.77: with the projection the step
is accepted, without it its half steps' stage equations are not solved (the full step's are, with the plain
Jacobians only). Stepping on from that state (loaded 2-core machine, CPU time): without the projection 5 steps of
0.06 .. 1.4 took 16 tries (11 failed) and 132 s to advance log-time by 2.9; with it 2 steps took 3 tries and 8 s
to advance 8.3 (loss 3.7e-32).
The geometry of the move is checked on the same state: the flow's own field is a fixed point of it, a stiff
offset is undone to the offset's square, and an offset in the directions ``B^T`` does not reach is left alone;
and off RC20 (a weighted, non-square problem whose ``H`` is neither diagonal nor of full rank), where two wrong
roots of ``H`` that RC20's 0/1 diagonal ``H`` cannot tell apart are refuted.
"""

from __future__ import annotations

import json
from pathlib import Path

from models.engines.gf_mp.arith import arb_prec, from_arb, make_context, to_arb_mat
from models.engines.gf_mp.radau import Radau, StageMatrix, stage_residual
from models.engines.gf_mp.systems import RawSystem
from properties.rc20_det_raw import exact_setting

DATA = Path(__file__).parent / "data" / "raw_newton_depth8.json"


def _load():
    cap = json.loads(DATA.read_text())
    ctx = make_context(cap["dps"])
    problem, model, _ = exact_setting(dict(depth=8, init="balanced_exact", scale=1e-2, seed=0, det="positive"))
    rs = RawSystem(problem, model, ctx, 50, per_factor_tol=1e-12)
    mp = lambda v: [ctx.mpf(x) for x in v]  # noqa: E731
    return ctx, rs, cap, mp


def _solver(project: bool):
    """The run's solver at the captured state: its planned step, predictor polynomial and end slope."""
    ctx, rs, cap, mp = _load()
    x0, z0 = ctx.mpf(cap["x0"]), mp(cap["z0"])
    rad = Radau(rs.zfun, rs.zjac, z0 + [x0], x0, ctx=ctx, rtol=ctx.mpf(cap["rtol"]), atol=mp(cap["atol"]),
                stages=cap["s"], slope_jac=True, h0=ctx.mpf(cap["h"]),
                project=rs.slow_projection if project else None)
    P = cap["poly"]
    rad.resume((ctx.mpf(P["x"]), ctx.mpf(P["h"]), mp(P["base"]), [mp(v) for v in P["Z"]]), mp(cap["end_slope"]))
    return ctx, rs, rad


def test_the_stiff_depth8_step_is_solved_with_the_projection():
    ctx, rs, rad = _solver(True)
    h = rad.h
    # the stiffness the step meets: h max|J| 7.5e54 at its start (J formed on the slow manifold), ~1e57 at its stages
    J = rs.zjac(rad.x, rad.z, None, slope=[ctx.mpf(v) for v in json.loads(DATA.read_text())["end_slope"]])
    assert float(h) * max(abs(float(e.mid())) for e in J.entries()) >= 1e54
    r = rad.try_step(h)
    assert r is not None
    err, z1, _, polys, _ = r
    assert err <= 1                                 # accepted: full step and half steps agree within tol
    assert rad.stats["projections"] > 0
    # each half step solves its stage equations: the Newton correction at its stages with the exact stage
    # Jacobians (the gradient at the stages, no slope, no projection) is within the Newton tolerance, in the
    # solver's scales -- the move only steered the iteration
    for xa, h2, za, Z in polys:
        sc = [a + rad.rtol * abs(v) for a, v in zip(rad.atol, za)]       # the solver's scales at za
        ys = [[a + b for a, b in zip(za, Zj)] for Zj in Z]
        xs = [xa + c * h2 for c in rad.c]
        F = [rs.zfun(x, y) for x, y in zip(xs, ys)]
        Js = [to_arb_mat(rs.zjac(x, y, f), ctx.prec) for x, y, f in zip(xs, ys, F)]
        d = StageMatrix(h2, rad.A, Js, ctx, arb_prec, scale=sc).solve(stage_residual(h2, rad.A, F, Z, ctx,
                                                                                      arb_prec))
        n = len(za)
        assert max(abs(v) / sc[i % n] for i, v in enumerate(d)) <= rad.KAPPA
    assert rs.loss(z1 + [rad.x + h]) < rs.loss(rad.y)


def test_the_same_step_fails_without_it():
    _, _, rad = _solver(False)
    assert rad.try_step(rad.h) is None      # neither the slope-implied nor the plain Jacobians solve it


def _stiff_and_null_directions(ctx, rs, z):
    """The unit direction ``B^T R u`` of the largest gain (``u`` the top eigenvector of ``K = R^T B B^T R``) and
    a unit direction orthogonal to the rows of ``B`` (which ``B^T`` does not reach), at ``z``."""
    Rm, _ = rs.hessian_root()
    Bm = rs.product_jacobian(z)
    B = [[from_arb(Bm[i, j], ctx) for j in range(rs.nvar)] for i in range(Bm.nrows())]
    m, k = len(Rm), len(Rm[0])
    K = ctx.matrix(k, k)
    for a in range(k):
        for b in range(k):
            K[a, b] = ctx.fsum(Rm[i][a] * ctx.fsum(B[i][c] * B[j][c] for c in range(rs.nvar)) * Rm[j][b]
                               for i in range(m) for j in range(m))
    kap, U = ctx.eigsy(K)
    top = max(range(k), key=lambda i: kap[i])
    v = [ctx.fsum(Rm[i][a] * U[a, top] for a in range(k)) for i in range(m)]
    stiff = [ctx.fsum(B[i][c] * v[i] for i in range(m)) for c in range(rs.nvar)]
    # a null direction: e_0 minus its projection on the rows of B (Gram-Schmidt at the working precision)
    null = [ctx.one] + [ctx.zero] * (rs.nvar - 1)
    basis = []
    for row in B:
        w = list(row)
        for q in basis:
            p = ctx.fsum(a * b for a, b in zip(w, q))
            w = [a - p * b for a, b in zip(w, q)]
        nw = ctx.sqrt(ctx.fsum(a * a for a in w))
        basis.append([a / nw for a in w])
    for q in basis:
        p = ctx.fsum(a * b for a, b in zip(null, q))
        null = [a - p * b for a, b in zip(null, q)]
    unit = lambda w: [a / ctx.sqrt(ctx.fsum(b * b for b in w)) for a in w]  # noqa: E731
    return unit(stiff), unit(null), kap[top]


def test_the_projection_fixes_the_flow_undoes_a_stiff_offset_and_leaves_the_rest():
    ctx, rs, cap, mp = _load()
    x, z, h = ctx.mpf(cap["x0"]), mp(cap["z0"]), ctx.mpf(cap["h"])
    slope = rs.zfun(x, z)                       # dz/dtau at z: the slope of a stage on the exact flow
    size = max(abs(v) for v in z)
    dist = lambda a, b: max(abs(u - w) for u, w in zip(a, b)) / size  # noqa: E731
    stiff, null, kap = _stiff_and_null_directions(ctx, rs, z)
    assert float(h * ctx.exp(x) * kap) > 1e55   # the gain of the stiff direction at this state
    # the flow's own point is a fixed point: moved by rounding only (60 digits)
    assert dist(rs.slow_projection(x, z, slope, h), z) < 1e-45
    # a stiff offset of 1e-20 (relative) is undone to its square (the move is Newton's on a multilinear map)
    eps = ctx.mpf("1e-20") * size
    y = [a + eps * b for a, b in zip(z, stiff)]
    assert dist(y, z) > 0.5e-20
    assert dist(rs.slow_projection(x, y, slope, h), z) < 1e-38
    # an offset B^T does not reach changes no observed entry to first order: it is left where it is
    y = [a + eps * b for a, b in zip(z, null)]
    back = rs.slow_projection(x, y, slope, h)
    assert dist(back, y) < 1e-6 * dist(y, z)
    # a slope that does not come from this state moves the stage to where the gradient it implies is the
    # state's in the stiff directions: the field of a state 1e-20 off along the stiff direction
    slope_off = rs.zfun(x, [a + eps * b for a, b in zip(z, stiff)])
    moved = rs.slow_projection(x, z, slope_off, h)
    assert abs(dist(moved, z) - 1e-20 * float(max(abs(b) for b in stiff))) < 1e-3 * 1e-20


def _weighted_non_square():
    """A 2x3 sensing problem with non-unit weights, ``reduction="mean"`` (``grad_scale`` 2/4) and 4 measurements of
    6 entries (``H`` of rank 4, not a projector), depth 3, at a state that fits the targets to float64 (loss 6e-30,
    slope ~1e-13: a late state, slow on its slow manifold); ``h`` such that every direction of ``K`` has gain
    ``h kappa`` beyond 1e15."""
    import numpy as np

    from models.engines.gf_mp.arith import make_context
    from models.factorizations import DeepMatrix
    from models.problems import sensing

    rng = np.random.default_rng(3)
    A = rng.normal(size=(4, 2, 3)) * [[[1.0]], [[3.0]], [[0.3]], [[1.0]]]
    model = DeepMatrix(3, (2, 3))
    factors = [rng.normal(size=s) for s in model.layer_shapes]
    problem = sensing(A, np.einsum("kij,ij->k", A, factors[2] @ factors[1] @ factors[0]), reduction="mean")
    ctx = make_context(60)
    rs = RawSystem(problem, model, ctx, 50)
    return ctx, rs, rs.state(factors)[:-1], ctx.zero, ctx.mpf(10) ** 20


def _stiff_offset_left(ctx, rs, z, x, h, e):
    """What ``slow_projection`` leaves of a stiff offset of relative size ``e`` at ``z`` (relative, max norm)."""
    size = max(abs(v) for v in z)
    stiff = _stiff_and_null_directions(ctx, rs, z)[0]
    y = [a + ctx.mpf(e) * size * b for a, b in zip(z, stiff)]
    assert max(abs(u - w) for u, w in zip(y, z)) / size > 0.5 * float(e)
    return max(abs(u - w) for u, w in zip(rs.slow_projection(x, y, rs.zfun(x, z), h), z)) / size


def test_the_projection_on_a_weighted_non_square_problem_with_a_rank_deficient_hessian():
    ctx, rs, z, x, h = _weighted_non_square()
    assert len(rs.hessian_root()[1]) == 4
    slope = rs.zfun(x, z)
    size = max(abs(v) for v in z)
    dist = lambda a, b: max(abs(u - w) for u, w in zip(a, b)) / size  # noqa: E731
    stiff, null, kap = _stiff_and_null_directions(ctx, rs, z)
    assert float(h * kap) > 1e20
    assert dist(rs.slow_projection(x, z, slope, h), z) < 1e-45
    # a stiff offset is undone to its square (measured 6e-21 from 1e-10), plus a part linear in it with the
    # coefficient ~ h |slope| / (|z| h kappa) that the slope's own dependence on the move leaves (3e-34 from
    # 1e-20; ~1e-41 relative in the depth-8 flow above, where the gradient is 1e-14 and kappa 1e26)
    assert _stiff_offset_left(ctx, rs, z, x, h, "1e-10") < 1e-19
    assert _stiff_offset_left(ctx, rs, z, x, h, "1e-20") < 1e-32
    # B^T has a null space here (n = 14 > d d' = 6): an offset there is left where it is
    y = [a + ctx.mpf("1e-20") * size * b for a, b in zip(z, null)]
    assert dist(rs.slow_projection(x, y, slope, h), y) < 1e-6 * dist(y, z)
    # a step too short for any direction to be stiff: no move
    assert rs.slow_projection(x, y, slope, ctx.mpf(1) / kap * 1e-9) is None


def _root_transposed(rs):
    """A wrong ``hessian_root``: ``R^T`` where ``R^+`` belongs (they agree for RC20's 0/1 diagonal H)."""
    Rm, Rp = RawSystem.hessian_root(rs)
    return Rm, [[row[i] for row in Rm] for i in range(len(Rp))]


def _root_unscaled(rs):
    """A wrong ``hessian_root``: that of ``H / grad_scale`` (they agree for RC20's ``grad_scale`` 1)."""
    Rm, Rp = RawSystem.hessian_root(rs)
    sq = rs.ctx.sqrt(rs.res.gscale)
    return [[v / sq for v in row] for row in Rm], [[v * sq for v in row] for row in Rp]


def test_wrong_hessian_roots_that_rc20_cannot_tell_apart_are_refuted_here(monkeypatch):
    # both pass every RC20 test above; on the weighted problem each leaves most of a stiff offset of 1e-10
    for wrong in (_root_transposed, _root_unscaled):
        ctx, rs, z, x, h = _weighted_non_square()
        monkeypatch.setattr(rs, "hessian_root", lambda w=wrong, r=rs: w(r))
        assert _stiff_offset_left(ctx, rs, z, x, h, "1e-10") > 1e-12


def test_no_projection_where_the_slope_does_not_determine_the_gradient():
    # a width-1 bottleneck (3x3, depth 2): B B^T (9 x 9) has rank 5, so no slope determines the loss gradient
    # (RawSystem.implied_gradient) and the iterate is left to Newton
    import numpy as np

    from models.engines.gf_mp.arith import make_context
    from models.factorizations import DeepMatrix
    from models.problems import completion

    rng = np.random.default_rng(0)
    obs = [(i, j) for i in range(3) for j in range(3) if (i + j) % 2 == 0]
    problem = completion((3, 3), obs, rng.normal(size=len(obs)))
    model = DeepMatrix(2, (3, 3), (1,))
    ctx = make_context(60)
    rs = RawSystem(problem, model, ctx, 50)
    z = rs.state([rng.normal(size=s) for s in model.layer_shapes])[:-1]
    assert rs.slow_projection(ctx.zero, z, rs.zfun(ctx.zero, z), ctx.mpf(10) ** 40) is None
