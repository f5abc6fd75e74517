"""gf's matrix-free raw path (issue 12): complex-step Hessian-vector products, MINRES inside BDF
(:mod:`models.engines.krylov`), forced on small problems through the engine option ``raw_solver="krylov"``
and compared with the dense complex-step Jacobian and LU. About 5 s in all (loaded 2-core machine)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models import inits
from models.engines import get_engine, gf, krylov
from models.factorizations import CP, DeepMatrix
from models.generators import random_completion, random_sensing, random_tensor
from models.trajectory import Status


def _setting(kind):
    if kind == "square":
        problem, _ = random_completion((4, 4), 2, seed=1)
        model = DeepMatrix(3, (4, 4))
        return problem, model, inits.gaussian(model, 0.5, seed=1)
    if kind == "rectangular":     # rectangular factors with a width-2 bottleneck
        problem, _ = random_completion((4, 3), 1, seed=2)
        model = DeepMatrix(3, (4, 3), (5, 2))
        return problem, model, inits.gaussian(model, 0.5, seed=2)
    if kind == "sensing":         # a dense measurement operator
        problem, _ = random_sensing((3, 4), 2, seed=3)
        model = DeepMatrix(2, (3, 4))
        return problem, model, inits.gaussian(model, 0.5, seed=3)
    problem, _ = random_tensor((3, 4, 3), 1, seed=4)
    model = CP((3, 4, 3), 3)
    return problem, model, inits.cp_gaussian(model, 0.4, seed=4)


def _field(problem, model, init):
    raw = gf.RawField(problem, model, init.factors)
    return raw, raw.flatten(init.factors)


@pytest.mark.parametrize("kind", ["square", "rectangular", "sensing", "cp"])
def test_the_hessian_vector_product_is_the_dense_jacobian_times_v(kind):
    """``RawField.hvp(y, v)`` (the Krylov path's product) against ``H v`` with ``H`` the dense complex-step
    Hessian (``RawField.hessian``, the dense path's Jacobian is ``-e^tau H``), at a random state and directions:
    both exact to rounding, so they agree to 1e-12 of ``max |H| |v|``. A product scaled by
    ``1 + 1e-6`` or one that leaves out one factor's part of ``v`` (the directional derivative through the other
    factors only) misses by at least 1e3 times that.

    Both products are complex steps through the same gradient, so a gradient that broke the complex step (a
    ``conj``, ``abs``, ``np.real`` or a float buffer on the way) would make them agree on a wrong Hessian. So
    ``H v`` and the product are also checked against central differences of the real gradient (step 1e-5 on an
    O(1) state: measured 4e-12 to 1e-10 of ``max |H| |v| sqrt(n)``, checked to 1e-8); residuals conjugated inside
    the problems' gradients (the Hessian's Gauss-Newton part changes sign) miss by 0.23 to 0.43 of it and pass
    the complex-step comparison."""
    problem, model, init = _setting(kind)
    raw, y = _field(problem, model, init)
    rng = np.random.default_rng(0)
    y = y + 0.3 * rng.normal(size=y.shape)       # away from the init (any state will do)
    H = raw.hessian(y)
    assert np.allclose(H, H.T, rtol=0, atol=1e-12 * np.max(np.abs(H)))    # a Hessian: symmetric
    u = np.random.default_rng(1).normal(size=y.shape)
    fd = (raw.grad(y + 1e-5 * u) - raw.grad(y - 1e-5 * u)) / 2e-5           # no complex arithmetic
    fd_tol = 1e-8 * np.max(np.abs(H)) * np.max(np.abs(u)) * math.sqrt(y.size)
    assert np.max(np.abs(H @ u - fd)) <= fd_tol and np.max(np.abs(raw.hvp(y, u) - fd)) <= fd_tol
    for v in (rng.normal(size=y.shape), 1e-7 * rng.normal(size=y.shape)):
        ref = H @ v
        tol = 1e-12 * np.max(np.abs(H)) * np.max(np.abs(v)) * math.sqrt(y.size)
        hv = raw.hvp(y, v)
        assert np.max(np.abs(hv - ref)) <= tol
        assert np.max(np.abs((1 + 1e-6) * hv - ref)) > 1e3 * tol
        for k, (start, size) in enumerate(zip(np.cumsum([0] + raw.sizes[:-1]), raw.sizes)):
            w = v.copy()
            w[start:start + size] = 0.0
            assert np.max(np.abs(raw.hvp(y, w) - ref)) > 1e3 * tol, k


def test_minres_solves_a_symmetric_indefinite_system_and_reports_failure(monkeypatch):
    """:func:`krylov.minres` on ``I + a H`` with ``H`` symmetric, 10 negative and 30 positive eigenvalues up to
    1e4 (the shape of BDF's systems at a saddle; ``I + 0.5 H`` itself is positive definite, its eigenvalues
    are >= 0.5: the indefinite case is the least-residual test below): the solution to 1e-8 relative residual;
    capped at 3 iterations
    it reports non-convergence, and :class:`krylov.HessianJacobian` then returns NaNs (a failed Newton step)."""
    rng = np.random.default_rng(5)
    Q, _ = np.linalg.qr(rng.normal(size=(40, 40)))
    H = (Q * np.concatenate([rng.uniform(-1.0, -0.1, 10), rng.uniform(0.1, 1e4, 30)])) @ Q.T
    b = rng.normal(size=40)
    A = np.eye(40) + 0.5 * H
    x, its, ok = krylov.minres(lambda v: A @ v, b, 1e-8, 500)
    assert ok and its <= 200
    assert np.linalg.norm(A @ x - b) <= 1e-7 * np.linalg.norm(b)
    assert np.linalg.norm(x - np.linalg.solve(A, b)) <= 1e-6 * np.linalg.norm(x)
    _, _, ok3 = krylov.minres(lambda v: A @ v, b, 1e-8, 3)
    assert not ok3
    stats = {}
    system = (0.5 * krylov.HessianJacobian(lambda v: H @ v, 1.0, stats)).system()   # J = -0.5 H: I - J = A
    xs = system.solve(b)
    assert np.linalg.norm(A @ xs - b) <= 10 * krylov.MINRES_RTOL * np.linalg.norm(b)
    assert stats["krylov_solves"] == 1 and stats["jvps"] == stats["krylov_iters"] + 1 and "krylov_failures" not in stats
    monkeypatch.setattr(krylov, "MINRES_MAXITER", 3)
    assert np.all(np.isnan(system.solve(b))) and stats["krylov_failures"] == 1


def _runs(kind, until_loss):
    problem, model, init = _setting(kind)
    dense = get_engine("gf", path="raw").run(problem, model, init, until_loss=until_loss, per_decade=1)
    kry = get_engine("gf", path="raw", raw_solver="krylov").run(problem, model, init, until_loss=until_loss,
                                                                per_decade=1)
    return dense, kry


@pytest.mark.parametrize("kind,until_loss", [("rectangular", 1e-8), ("cp", 1e-3)])
def test_the_krylov_run_is_the_dense_run_to_its_error_estimate(kind, until_loss):
    """The same raw run with BDF's Newton systems solved by dense LU and by MINRES: both complete, record the same
    loss levels, and every pair of points agrees to the error estimate of either run (the estimate is what the
    engine claims of each point). A different trajectory, or a point missed by the Krylov run, fails here. A wrong
    Hessian-vector product does not: BDF's simplified Newton iteration converges to the same step with any
    Jacobian that lets it converge (measured on the rectangular case: the product scaled by 2 or 10, or without
    the first factor's part of ``v``, stayed within 0.85, 0.33, 0.59 of the error estimate, at 641, 2061, 708
    steps against 622); the product is checked against the dense Hessian above."""
    dense, kry = _runs(kind, until_loss)
    assert dense.status is Status.COMPLETED and kry.status is Status.COMPLETED, (dense.message, kry.message)
    assert "raw_solver" not in dense.stats and kry.stats["raw_solver"] == "krylov"
    assert kry.stats["jvps"] > 0 and kry.stats["krylov_solves"] > 0 and not kry.stats.get("krylov_failures")
    assert kry.stats["error_run"]["raw_solver"] == "krylov"
    assert len(dense.points) == len(kry.points) >= 4
    for p, q in zip(dense.points, kry.points):
        assert abs(p.loss - q.loss) <= min(p.loss_err, q.loss_err)
        assert np.max(np.abs(p.product - q.product)) <= min(p.product_err, q.product_err)
        assert math.isfinite(p.product_err) and p.product_err < 1e-6


def test_failed_krylov_solves_shrink_the_step_instead_of_giving_a_wrong_one(monkeypatch):
    """With MINRES capped at 5 iterations the stiffer solves fail (58 of 1,844 in the main run, 73 of 1,445 in the
    error-estimate run; uncapped, the run needs up to 7): each returns NaNs, a failed Newton iteration for BDF (fresh
    operator, then a halved step), so the run takes more, smaller steps (667 against 592) and still follows the dense
    run to its error estimate. The wrong version, a failed solve returning zeros (BDF's Newton iteration then
    "converges" at once on its predictor and the error estimate of the step is zero), leaves the trajectory: measured
    1.8e3 times the error estimate off (5e74 at MINRES_RTOL 1e-8). Returning the unconverged MINRES iterate instead
    is harmless (BDF's Newton rate test rejects it; measured within 0.14 of the estimate at 1e-8)."""
    monkeypatch.setattr(krylov, "MINRES_MAXITER", 5)      # the uncapped run needs up to 7
    dense, kry = _runs("rectangular", 1e-6)
    assert kry.stats["krylov_failures"] > 0
    assert kry.status is Status.COMPLETED, kry.message
    assert kry.stats["steps"] > dense.stats["steps"]
    assert len(kry.points) == len(dense.points)
    for p, q in zip(dense.points, kry.points):
        assert np.max(np.abs(p.product - q.product)) <= p.product_err

    solve = krylov.HessianJacobian.solve
    monkeypatch.setattr(krylov.HessianJacobian, "solve",
                        lambda self, b: np.nan_to_num(solve(self, b), nan=0.0))    # the wrong version
    problem, model, init = _setting("rectangular")
    wrong = get_engine("gf", path="raw", raw_solver="krylov").run(problem, model, init, until_loss=1e-6,
                                                                  per_decade=1)
    assert any(np.max(np.abs(p.product - q.product)) > p.product_err for p, q in zip(dense.points, wrong.points))


def _minimal_residual_gap(solver, A, b, kmax):
    """The largest ``(||b - A x_k|| - r_k) / r_k`` over ``k = 1..kmax``: ``x_k`` the solver's iterate after ``k``
    products (tolerance 0, so it runs all ``k``), ``r_k`` the least residual over the Krylov space ``K_k(A, b)``
    (an orthonormal basis by twice-orthogonalized Lanczos, then a dense least-squares solve)."""
    n = b.shape[0]
    V, q, worst = np.zeros((n, 0)), b / np.linalg.norm(b), 0.0
    for k in range(1, kmax + 1):
        V = np.column_stack([V, q])
        w = A @ q
        for _ in range(2):
            w = w - V @ (V.T @ w)
        q = w / np.linalg.norm(w)
        coef = np.linalg.lstsq(A @ V, b, rcond=None)[0]
        r_min = np.linalg.norm(b - A @ (V @ coef))
        x, its, _ = solver(lambda v: A @ v, b, 0.0, k)
        assert its == k
        worst = max(worst, (np.linalg.norm(b - A @ x) - r_min) / r_min)
    return worst


def _cg(matvec, b, rtol, maxiter):
    """Conjugate gradients (Lanczos-Galerkin), the solver MINRES must not be: on an indefinite system its
    iterate is not the least-residual one."""
    x, r = np.zeros_like(b), b.copy()
    p, rr = r.copy(), float(r @ r)
    for it in range(1, maxiter + 1):
        Ap = matvec(p)
        alpha = rr / float(p @ Ap)
        x, r = x + alpha * p, r - alpha * Ap
        rr_new = float(r @ r)
        if math.sqrt(rr_new) <= rtol * np.linalg.norm(b):
            return x, it, True
        p, rr = r + (rr_new / rr) * p, rr_new
    return x, maxiter, False


def test_minres_iterates_are_the_least_residual_ones_on_an_indefinite_system():
    """MINRES's defining property: its ``k``-th iterate minimizes ``||b - A x||`` over ``K_k(A, b)``. Checked on an
    indefinite ``A`` (8 eigenvalues in [-20, -0.5], 22 in [0.5, 20]; the earlier test's ``I + 0.5 H`` has all
    eigenvalues >= 0.5, so it never left the positive definite case), for ``k = 1..15``, to 1e-12 relative
    (measured 2e-16). Conjugate gradients, which also "solve" that system, misses by 43x, so a MINRES that
    degenerated into a Galerkin method would fail here."""
    rng = np.random.default_rng(7)
    Q, _ = np.linalg.qr(rng.normal(size=(30, 30)))
    A = (Q * np.concatenate([-rng.uniform(0.5, 20, 8), rng.uniform(0.5, 20, 22)])) @ Q.T
    A = (A + A.T) / 2
    b = rng.normal(size=30)
    assert _minimal_residual_gap(krylov.minres, A, b, 15) <= 1e-12
    assert _minimal_residual_gap(_cg, A, b, 15) > 1.0                      # the wrong version


def test_a_converged_recurrence_with_a_wrong_true_residual_is_a_failed_solve():
    """Near-singular ``I + a H`` (one eigenvalue 1e-10, the rest in +-[0.5, 1e3]: BDF's system where ``1 + a
    lambda`` nearly vanishes at a saddle). In float64 MINRES's recurrence residual drifts from the true one:
    measured, the recurrence reports convergence to ``MINRES_RTOL`` after 244 products while ``||b - A x||`` is
    11 ``||b||`` (404 products and 1e4 with the classical Lanczos order, before Paige's).
    :class:`krylov.HessianJacobian` checks the true residual and returns NaNs (a failed Newton iteration) with
    the failure counted; a solve that trusted the recurrence would hand BDF that ``x``."""
    rng = np.random.default_rng(5)
    Q, _ = np.linalg.qr(rng.normal(size=(40, 40)))
    ev = np.concatenate([-np.logspace(-0.3, 3, 10), [1e-10], np.logspace(-0.3, 3, 29)])
    A = (Q * ev) @ Q.T
    A = (A + A.T) / 2
    b = rng.normal(size=40)
    x, its, ok = krylov.minres(lambda v: A @ v, b, krylov.MINRES_RTOL, krylov.MINRES_MAXITER)
    assert ok and np.linalg.norm(b - A @ x) > 1e3 * krylov.MINRES_RTOL * np.linalg.norm(b)   # the trap
    stats = {}
    H = A - np.eye(40)
    system = (1.0 * krylov.HessianJacobian(lambda v: H @ v, 1.0, stats)).system()          # I - J = I + H = A
    assert np.all(np.isnan(system.solve(b))) and stats["krylov_failures"] == 1


def test_raw_solver_dense_keeps_lu_above_the_size_threshold_and_bad_values_are_refused(monkeypatch):
    # with the size threshold at 0, "auto" picks MINRES on every raw problem; "dense" still runs the complex-step
    # Jacobian and LU (the option overrides the size rule both ways; "krylov" is exercised above)
    from models.errors import InvalidInput

    monkeypatch.setattr(gf, "RAW_KRYLOV_MIN", 0)
    monkeypatch.setattr(gf, "RAW_KRYLOV_MIN_CP", 0)
    problem, model, init = _setting("cp")
    for solver, want in (("dense", None), ("auto", "krylov")):
        traj = get_engine("gf", path="raw", raw_solver=solver).run(problem, model, init, until_loss=1e-2,
                                                                    per_decade=1)
        assert traj.status is Status.COMPLETED
        assert traj.stats.get("raw_solver") == want and traj.stats["error_run"].get("raw_solver") == want
    assert get_engine("gf", raw_solver="dense").describe_options()["raw_solver"] == "dense"
    assert "raw_solver" not in get_engine("gf").describe_options()      # the default engine's records unchanged
    with pytest.raises(InvalidInput):
        get_engine("gf", raw_solver="lu")
