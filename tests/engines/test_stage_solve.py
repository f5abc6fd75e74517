"""The mixed-precision solve of gf-mp's Newton matrix (models.engines.gf_mp.radau.StageMatrix, kind "low"): a
128-bit elimination refined once at the working precision, checked against FLINT's elimination at the working
precision (``arb_mat.solve``), and its fallback when 128 bits cannot resolve the matrix.

Systems: ``N = I - h (A kron I) diag(J_1..J_s)`` of a 5-stage Radau tableau with 3 x 3 stage Jacobians at 80
digits (266 bits, ``15 x 15``), the Jacobians ``P diag(lam) P^-1`` with a fixed non-orthogonal ``P`` so that no
diagonal scaling removes the spread of ``lam``. Tolerances: relative max-norm errors against the working-
precision solve. One 128-bit solve of a system with condition number ``kappa`` is good to ~``kappa 2^-128``
(3e-39 for kappa ~ 1); refined once, to ~its square, capped by the working precision (1e-80): a well-conditioned
system must come out within 1e-70 (an unrefined solve misses that by 30 decades); one with ``kappa`` ~ 1e20
within 1e-30 (unrefined: ~1e-19). At ``kappa`` ~ 1e60 the refinement's estimate is O(1) and the matrix must fall
back to the working-precision elimination (else its solve is off by O(1): the 128-bit one has no correct digit).
"""

from __future__ import annotations

import flint
import pytest

from models.engines.gf_mp.arith import arb_prec, make_context, to_arb_mat
from models.engines.gf_mp.radau import StageMatrix, radau_tableau


class NoFloat(StageMatrix):
    FLOAT_RATE = 0.0        # skip the float64 tier: these tests are about the two FLINT ones


def _system(ctx, stiff):
    """``(h, A, Js, b)``: 5 stages, n = 3; the stage Jacobians have eigenvalues ``-stiff, -1, -2`` (times a
    per-stage factor) in a fixed skew basis."""
    s, n = 5, 3
    _, A = radau_tableau(s, ctx)
    P = ctx.matrix([[1, 1, 0], [0, 1, 1], [1, 0, 2]])
    Pi = P ** -1
    Js = []
    for j in range(s):
        D = ctx.diag([-ctx.mpf(stiff) * (1 + ctx.mpf(j) / 7), -1 - ctx.mpf(j) / 5, ctx.mpf(-2)])
        J = P * D * Pi
        Js.append(to_arb_mat([[J[a, c] for c in range(n)] for a in range(n)], ctx.prec))
    b = [ctx.mpf(k % 4 - 1.5) / (k + 1) for k in range(s * n)]
    return ctx.mpf("0.3"), A, Js, b


def _reference(M, b):
    with arb_prec(M.prec):
        x = M.N.solve(flint.arb_mat(M.size, 1, [flint.arb(v) for v in b]), algorithm="approx")
        return [x[i, 0].mid() for i in range(M.size)]


def _rel_err(ctx, got, want):
    with arb_prec(ctx.prec):
        big = max(abs(w) for w in want)
        return max(abs(flint.arb(g) - w) for g, w in zip(got, want)) / big


@pytest.mark.parametrize("stiff, bound", [(1, 1e-70), ("1e20", 1e-30)])
def test_low_tier_refined_against_the_working_precision_solve(stiff, bound):
    ctx = make_context(80)
    h, A, Js, b = _system(ctx, stiff)
    hint = {}
    M = NoFloat(h, A, Js, ctx, arb_prec, hint=hint)
    assert M.kind == "low"
    x = M.solve(b)
    assert M.kind == "low" and M.rate is not None and M.rate <= M.LOW_RATE
    assert _rel_err(ctx, x, _reference(M, b)) <= bound
    # a trusted matrix answers later right-hand sides with one 128-bit solve: good to ~kappa 2^-128
    assert M.trusted
    b2 = [v * (k + 2) for k, v in enumerate(b)]
    assert _rel_err(ctx, M.solve(b2), _reference(M, b2)) <= 1e-15
    assert hint == {}


def test_low_tier_falls_back_on_an_ill_conditioned_matrix():
    ctx = make_context(80)
    h, A, Js, b = _system(ctx, "1e60")
    hint = {}
    M = NoFloat(h, A, Js, ctx, arb_prec, hint=hint)
    assert M.kind == "low"
    x = M.solve(b)
    # the refinement's estimate said 128 bits do not resolve it: the working-precision elimination answered
    assert M.kind == "arb" and M.rate > M.LOW_RATE
    assert x == [ctx.mpf(v) for v in _reference(M, b)]
    # 128 bits alone are far off here (what accepting it would have returned)
    with arb_prec(M.LOW_PREC):
        d1 = (+M.N).solve(flint.arb_mat(M.size, 1, [flint.arb(v) for v in b]), algorithm="approx")
    assert _rel_err(ctx, [d1[i, 0].mid() for i in range(M.size)], _reference(M, b)) > 1e-6
    # the solver's hint sends the next SKIP_LOW matrices straight to the working precision
    assert hint["skip_low"] == M.SKIP_LOW
    M2 = NoFloat(h, A, Js, ctx, arb_prec, hint=hint)
    assert M2.kind == "arb" and hint["skip_low"] == M.SKIP_LOW - 1


def test_low_tier_only_well_above_128_bits():
    # at 40 digits (133 bits) the 128-bit elimination would save little: straight to the working precision
    ctx = make_context(40)
    h, A, Js, b = _system(ctx, 1)
    assert NoFloat(h, A, Js, ctx, arb_prec).kind == "arb"
