"""The raw path's analytic Jacobian (gf-mp, :meth:`RawSystem.jacobian`) against forward differences of the field."""

import numpy as np
import pytest

from models.engines.gf_mp.arith import arb_prec, fd_jacobian, make_context
from models.engines.gf_mp.systems import RawSystem
from models.factorizations import DeepMatrix
from models.problems import rc20, sensing

DPS = 60
# forward differences at 60 digits (203 bits, step 2^-135 max(|z|, 1)) are accurate to ~2^-68 ~ 3e-21 of the
# field's scale; 1e-17 of the largest entry leaves 3 decades of room and is 1e-15 of what a wrong term costs
TOL = 1e-17


def _case(L, shape, widths, sense, seed):
    rng = np.random.default_rng(seed)
    model = DeepMatrix(L, shape, widths)
    problem = (sensing(rng.normal(size=(5,) + shape), rng.normal(size=5), reduction="mean") if sense else rc20())
    ctx = make_context(DPS)
    rs = RawSystem(problem, model, ctx, DPS - 10)
    z = rs.state([rng.normal(size=s) for s in model.layer_shapes])
    return rs, ctx, model, problem, z[:-1], ctx.mpf("0.7")


def _analytic(rs, ctx, tau, z):
    J = rs.zjac(tau, z, None)
    with arb_prec(ctx.prec):
        return [[ctx.mpf(J[i, j].mid().str(DPS + 10, radius=False)) for j in range(J.ncols())]
                for i in range(J.nrows())]


CASES = [(L, (2, 2), None, False) for L in range(1, 9)] + [
    (3, (2, 3), (4, 1), True),        # rectangular factors, a rank-1 bottleneck, a dense (sensing) operator
    (4, (3, 2), (3, 2, 5), True),
    (2, (1, 3), None, True)]


@pytest.mark.parametrize("L,shape,widths,sense", CASES)
def test_the_analytic_jacobian_is_the_fields_derivative(L, shape, widths, sense):
    rs, ctx, model, problem, z, tau = _case(L, shape, widths, sense, seed=L)
    fd = fd_jacobian(lambda y: rs.zfun(tau, y), z, rs.zfun(tau, z), ctx)
    J = _analytic(rs, ctx, tau, z)
    n = rs.nvar
    assert len(J) == n and len(J[0]) == n
    scale = max(abs(v) for row in fd for v in row)
    err = max(abs(J[i][j] - fd[i][j]) for i in range(n) for j in range(n))
    assert err <= TOL * scale, (float(err), float(scale))

    # wrong versions the comparison refutes. (1) Gauss-Newton: only the part through the loss's curvature, B^T H B
    # (B_k = P_k kron Q_k^T), without the cross-factor term from G (it vanishes only where the residual does)
    fs = [np.array([[float(v) for v in row] for row in F]) for F in rs.unflatten(list(z) + [tau])]
    d, dp = model.shape
    Bs = []
    for k in range(L):
        P = np.eye(d)
        for F in fs[k + 1:][::-1]:
            P = P @ F
        Q = np.eye(dp)
        for F in fs[:k]:
            Q = F @ Q
        Bs.append(np.kron(P, Q.T))
    B = np.hstack(Bs)
    if problem.observed is not None:
        H = np.zeros((d * dp, d * dp))
        for i, j in problem.observed:
            H[i * dp + j, i * dp + j] = problem.grad_scale
    else:
        A = problem.operator
        H = problem.grad_scale * A.T @ A
    gn = -float(ctx.exp(tau)) * (B.T @ H @ B)
    J64 = np.array([[float(v) for v in row] for row in J])
    fd64 = np.array([[float(v) for v in row] for row in fd])
    if L == 1:      # a linear field: its Jacobian is that part alone, and constant
        assert np.max(np.abs(J64 - gn)) <= 1e-14 * float(scale)
        return
    assert np.max(np.abs(gn - fd64)) > 1e6 * TOL * float(scale)
    # (2) the derivative taken at a slightly moved state (1e-12 relative)
    moved = [v * (1 + ctx.mpf(10) ** -12) for v in z]
    Jm = _analytic(rs, ctx, tau, moved)
    assert max(abs(Jm[i][j] - fd[i][j]) for i in range(n) for j in range(n)) > 100 * TOL * scale
