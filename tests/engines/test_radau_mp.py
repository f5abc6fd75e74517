"""Kernels of gf-mp's Radau solver that set how its cost grows with the digits (models.engines.gf_mp.radau), and
a 60-digit run against a 40-digit run (issue 12).

Tolerances: the kernels are checked against their definitions at the working precision (relative 1e-60 at 80
digits); the 60-digit run must agree with the 40-digit run to within the 40-digit run's own error estimate
(``product_err``), which must itself be small (< 1e-20 relative) so that the comparison means something.
"""

from __future__ import annotations

import flint
import mpmath
import pytest

from models import inits
from models.engines import get_engine
from models.engines.gf_mp.arith import arb_prec, lu_factor, make_context, to_arb_mat
from models.engines.gf_mp.radau import StageMatrix, auto_stages, interp_many, lagrange_weights, radau_tableau, \
    stage_residual
from models.factorizations import DeepMatrix
from models.problems import rc20
from models.trajectory import Status


def test_auto_stages_grow_with_the_decades():
    assert auto_stages(1e-20) == 10 and auto_stages(1e-50) == 19 and auto_stages(1e-90) == 34
    assert auto_stages(1e-300) == 40
    got = [auto_stages(10.0 ** -d) for d in range(10, 120)]
    assert got == sorted(got)


def test_lagrange_weights_reproduce_polynomials():
    ctx = make_context(80)
    c, _ = radau_tableau(7, ctx)
    nodes = [ctx.zero] + c
    x = ctx.mpf("1.37")
    w = lagrange_weights(nodes, x)
    # exact for every polynomial of degree <= 7 (here x^k, k = 0..7)
    for k in range(8):
        assert abs(ctx.fsum(wj * xj ** k for wj, xj in zip(w, nodes)) - x ** k) <= ctx.mpf(10) ** -70 * 2 ** k
    assert lagrange_weights(nodes, nodes[3]) == [0, 0, 0, 1, 0, 0, 0, 0]
    # interp_many is the same sum (the value at node 0 being 0)
    Z = [[ctx.mpf(j + 1) ** 2, ctx.mpf(-j)] for j in range(7)]
    got = interp_many(nodes, [x, ctx.mpf("0.25")], Z, ctx, arb_prec)
    for xx, row in zip([x, ctx.mpf("0.25")], got):
        ww = lagrange_weights(nodes, xx)
        for k in range(2):
            want = ctx.fsum(ww[j + 1] * Z[j][k] for j in range(7))
            assert abs(row[k] - want) <= ctx.mpf(10) ** -70 * (1 + abs(want))


def test_stage_matrix_and_residual_against_their_definitions():
    ctx = make_context(80)
    s, n = 5, 3
    c, A = radau_tableau(s, ctx)
    vals = iter([ctx.mpf(k % 7 - 3) / (k % 5 + 1) + ctx.mpf(k) / 1000 for k in range(1, 1000)])
    Js = [[[next(vals) for _ in range(n)] for _ in range(n)] for _ in range(s)]
    h = ctx.mpf("0.3")

    class ArbOnly(StageMatrix):
        FLOAT_RATE = 0.0        # never float64: the working-precision elimination
        LOW_PREC = 0            # nor the mixed-precision one (tests/engines/test_stage_solve.py)

    arb_js = [to_arb_mat(J, ctx.prec) for J in Js]
    M = ArbOnly(h, A, arb_js, ctx, arb_prec)
    # N = I - h (A kron I) diag(J_1..J_s), built entry by entry
    N = [[(1 if r == q else 0) - h * A[r // n][q // n] * Js[q // n][r % n][q % n] for q in range(s * n)]
         for r in range(s * n)]
    b = [next(vals) for _ in range(s * n)]
    x = M.solve(b)
    res = max(abs(ctx.fsum(N[r][q] * x[q] for q in range(s * n)) - b[r]) for r in range(s * n))
    assert M.kind == "arb" and res <= ctx.mpf(10) ** -70
    # well conditioned, the same matrix is factorized in float64 (a Newton matrix needs no more): the solve's
    # residual is float64's, relative to b (the condition number here is ~10)
    M64 = StageMatrix(h, A, arb_js, ctx, arb_prec)
    x64 = M64.solve(b)
    res64 = max(abs(ctx.fsum(N[r][q] * x64[q] for q in range(s * n)) - b[r]) for r in range(s * n))
    assert M64.kind == "float64" and res64 <= 1e-13 * max(abs(v) for v in b)
    # and far below float64's range (a late Newton correction), scaled exactly by a power of two
    tiny = [v * ctx.mpf(10) ** -400 for v in b]
    xt = M64.solve(tiny)
    assert max(abs(a * ctx.mpf(10) ** -400 - t) for a, t in zip(x64, xt)) <= ctx.mpf(10) ** -414
    lu_factor(N)            # N is regular (lu_factor raises ZeroDivisionError otherwise)
    Fs = [[next(vals) for _ in range(n)] for _ in range(s)]
    Z = [[next(vals) for _ in range(n)] for _ in range(s)]
    R = stage_residual(h, A, Fs, Z, ctx, arb_prec)
    for i in range(s):
        for k in range(n):
            want = h * ctx.fsum(A[i][j] * Fs[j][k] for j in range(s)) - Z[i][k]
            assert abs(R[i * n + k] - want) <= ctx.mpf(10) ** -70 * (1 + abs(want))
    with arb_prec(ctx.prec):
        assert isinstance(M.N, flint.arb_mat)


@pytest.mark.parametrize("depth", [2])
def test_60_digits_agree_with_40_digits_within_its_estimate(depth):
    # at an explicit time (a step end in both runs); default tolerances (1e-30 and 1e-50) and the stage counts
    # chosen from them (11 and 19; the reference run of the 40-digit estimate: 12)
    model = DeepMatrix(depth, (2, 2))
    init = inits.balanced(model, 0.5, seed=0, det="positive")
    a = get_engine("gf-mp", digits=40).run(rc20(), model, init, t_max=3.0)
    b = get_engine("gf-mp", digits=60, estimate=False).run(rc20(), model, init, t_max=3.0)
    # b has no reference run (estimate=False): its error is unknown, so it is 'inaccurate', not 'completed'; it is
    # compared with a's estimate below
    assert a.status is Status.COMPLETED and b.status is Status.INACCURATE
    assert a.stats["stages"] == auto_stages(1e-30) and b.stats["stages"] == auto_stages(1e-50)
    fa, fb = a.final, b.final
    assert fa.t == fb.t == 3.0 and fb.loss < b.points[0].loss / 2
    with mpmath.workdps(70):
        for i in range(2):
            for j in range(2):
                wa, wb = mpmath.mpf(fa.hp["product"][i][j]), mpmath.mpf(fb.hp["product"][i][j])
                assert abs(wa - wb) <= fa.product_err
        assert abs(mpmath.mpf(fa.hp["loss"]) - mpmath.mpf(fb.hp["loss"])) <= fa.loss_err
    assert fa.product_err / abs(fa.product[0, 0]) < 1e-20


def test_raw_terms_in_flint_agree_with_the_mpmath_lists():
    # the raw path's right-hand side is evaluated with FLINT arb_mat products; the mpmath-list version is its
    # reference: same velocity, loss and dissipation to the working precision (50 digits), depths 2 and 5
    from models import inits
    from models.engines.gf_mp.systems import RawSystem
    from models.factorizations import DeepMatrix
    from models.problems import rc20

    ctx = make_context(50)
    for L in (2, 5):
        model = DeepMatrix(L, (2, 2))
        rs = RawSystem(rc20(), model, ctx, 40)
        z = rs.state(inits.balanced(model, 0.3, seed=1, det="positive").factors)
        (f, loss, diss), (f_mp, loss_mp, diss_mp) = rs.terms(z), rs.terms_mp(z)
        assert max(abs(a - b) for a, b in zip(f, f_mp)) <= ctx.mpf(10) ** -47
        assert abs(loss - loss_mp) <= ctx.mpf(10) ** -47 * loss and abs(diss - diss_mp) <= ctx.mpf(10) ** -47 * diss
