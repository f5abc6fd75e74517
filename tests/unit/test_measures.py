"""Measures against closed forms: Schatten / entrywise / induced / linear-map norms and their duals and constants,
effective rank, distance to rank 1, rank-suboptimality, tensor rank-1 fits and CP-rank estimates.

Tolerances are explicit: ``EXACT`` for quantities computed by a closed form or one SVD of a small matrix (a few
ulps, with room), ``SEARCH`` for the induced norms found by a bounded scalar search (xatol 1e-12 on the angle,
so the value is exact to second order), ``ALS`` for the iterative tensor fits (converged to 1e-13 relative).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from properties import measures as M
from properties.measures import INF

EXACT = 1e-12
SEARCH = 1e-9
ALS = 1e-10

P_VALUES = [0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 7.0, INF]
RNG_SEEDS = [0, 1, 2]


def _rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-300)


def _lp(v, p: float) -> float:
    v = np.abs(np.asarray(v, dtype=float)).ravel()
    return float(np.max(v)) if p == INF else float(np.sum(v ** p) ** (1.0 / p))


def _dual(p: float) -> float:
    return INF if p == 1 else (1.0 if p == INF else p / (p - 1.0))


def _rotation(theta: float) -> np.ndarray:
    return np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])


def _wx(x: float) -> np.ndarray:
    return np.array([[x, 1.0], [1.0, 0.0]])


# ----------------------------------------------------------------------------------------------------------------
# Schatten-p
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("p", P_VALUES)
@pytest.mark.parametrize("diag", [(3.0, 4.0), (-2.0, 0.5), (1e-8, 1e6), (5.0, 0.0)])
def test_schatten_of_diagonal_and_rotated(p, diag):
    """S_p(U diag(a, b) V^T) = (|a|^p + |b|^p)^(1/p) (max for p = inf) for rotations U, V.

    The rotated matrix's small singular value carries an SVD error ~ eps * sigma_1 (that is what the measure's
    own ``error`` bound covers, and quasi-norms amplify it), so it is compared within that bound."""
    f = M.Schatten(p)
    want = _lp(diag, p)
    D = np.diag(diag)
    assert _rel(f(D), want) < EXACT
    R = _rotation(0.3) @ D @ _rotation(-1.1).T
    assert abs(f(R) - want) <= f.error(R, 4 * np.finfo(float).eps * float(np.max(np.abs(R))))
    if min(abs(d) for d in diag) * 1e3 >= max(abs(d) for d in diag):  # well conditioned: to a few ulps
        assert _rel(f(R), want) < EXACT


def test_schatten_named_cases_agree_with_numpy():
    rng = np.random.default_rng(0)
    for _ in range(5):
        W = rng.standard_normal((3, 4))
        assert _rel(M.Schatten(1.0)(W), np.linalg.norm(W, "nuc")) < EXACT
        assert _rel(M.Schatten(2.0)(W), np.linalg.norm(W, "fro")) < EXACT
        assert _rel(M.Schatten(INF)(W), np.linalg.norm(W, 2)) < EXACT


@pytest.mark.parametrize("p", P_VALUES)
@pytest.mark.parametrize("x", [0.0, 0.1, -1.0, 3.0, -250.0])
def test_schatten_on_the_completions(p, x):
    """On W_x = [[x, 1], [1, 0]]: singular values e^{+-a}, a = asinh(|x|/2), so sum sigma^p = 2 cosh(p a)."""
    a = math.asinh(abs(x) / 2.0)
    want = math.exp(a) if p == INF else (2.0 * math.cosh(p * a)) ** (1.0 / p)
    assert _rel(M.Schatten(p).at_x(x), want) < EXACT


@pytest.mark.parametrize("p", P_VALUES)
def test_schatten_constants(p):
    f = M.Schatten(p)
    K = 1.0 if p >= 1 else 2.0 ** (1.0 / p - 1.0)
    assert f.quasi_constant == K
    assert f.c == 1.0 and f.e11 == 1.0
    assert _rel(f.j_value, 1.0 if p == INF else 2.0 ** (1.0 / p)) < EXACT
    assert _rel(f.minimizer_bound(), 2.0 * K * f.j_value) < EXACT


@pytest.mark.parametrize("p", [0.25, 0.5, 0.8])
def test_schatten_quasi_triangle_inequality(p):
    """||A + B|| <= K (||A|| + ||B||), with equality approached at A = E_11, B = E_22 (K = 2^(1/p - 1))."""
    f = M.Schatten(p)
    A, B = np.diag([1.0, 0.0]), np.diag([0.0, 1.0])
    assert _rel(f(A + B), f.quasi_constant * (f(A) + f(B))) < EXACT
    rng = np.random.default_rng(1)
    for _ in range(50):
        A, B = rng.standard_normal((2, 2)), rng.standard_normal((2, 2))
        assert f(A + B) <= f.quasi_constant * (f(A) + f(B)) * (1 + EXACT)


@pytest.mark.parametrize("p", [1.0, 1.5, 2.0, 3.0, INF])
def test_schatten_dual(p):
    """dual of S_p is S_q (1/p + 1/q = 1); Hoelder <X, Y> <= ||X||_p ||Y||_q is attained at a closed-form X."""
    f = M.Schatten(p)
    q = _dual(p)
    Y = np.diag([3.0, -1.0])
    assert _rel(f.dual_value(Y), _lp([3.0, 1.0], q)) < EXACT
    # attaining X: same singular vectors, singular values s_i^(q-1) (q finite), or the top one (q = inf)
    s = np.array([3.0, 1.0])
    xs = np.array([1.0, 0.0]) if q == INF else s ** (q - 1.0)
    X = np.diag(xs * np.array([1.0, -1.0]))
    assert _rel(float(np.sum(X * Y)), f(X) * f.dual_value(Y)) < EXACT


def test_quasi_norm_has_no_dual():
    with pytest.raises(ValueError):
        M.Schatten(0.5).dual_value(np.eye(2))
    with pytest.raises(ValueError):
        M.Entrywise(0.5).dual_value(np.eye(2))


# ----------------------------------------------------------------------------------------------------------------
# Entrywise l_p, induced p -> q, linear map then l_2, weighted sums
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("p", P_VALUES)
def test_entrywise(p):
    W = np.array([[1.0, -2.0], [0.5, 0.0]])
    assert _rel(M.Entrywise(p)(W), _lp([1.0, 2.0, 0.5, 0.0], p)) < EXACT
    assert _rel(M.Entrywise(p).at_x(-4.0), _lp([4.0, 1.0, 1.0], p)) < EXACT
    if p >= 1:
        assert _rel(M.Entrywise(p).dual_value(W), _lp([1.0, 2.0, 0.5, 0.0], _dual(p))) < EXACT


def test_max_norm_minimizers_are_an_interval():
    """The catalog's example: for the entrywise max-norm every |x| <= 1 is a minimizer, with value 1."""
    f = M.Entrywise(INF)
    assert all(f.at_x(x) == 1.0 for x in (-1.0, -0.3, 0.0, 0.7, 1.0))
    assert f.at_x(1.5) == 1.5
    assert f.minimizer_bound() == 2.0


def test_induced_closed_forms():
    W = np.array([[1.0, -3.0], [2.0, 0.5]])
    assert _rel(M.Induced(1, 1)(W), 3.5) < EXACT                     # max column l_1
    assert _rel(M.Induced(INF, INF)(W), 4.0) < EXACT                 # max row l_1
    assert _rel(M.Induced(2, 2)(W), np.linalg.norm(W, 2)) < EXACT    # spectral
    assert _rel(M.Induced(1, 2)(W), math.hypot(3.0, 0.5)) < EXACT    # max column l_2
    assert _rel(M.Induced(1, INF)(W), 3.0) < EXACT                   # max column l_inf (max |entry|)


@pytest.mark.parametrize("p,q", [(2.0, 1.0), (3.0, 1.5), (INF, 2.0), (1.5, 4.0), (INF, 1.0), (2.0, INF)])
def test_induced_by_search_on_rank_one(p, q):
    """For W = u v^T: ||W||_{p->q} = ||u||_q ||v||_{p*} (p* the dual exponent of p)."""
    u, v = np.array([0.7, -1.3]), np.array([2.0, 0.6])
    W = np.outer(u, v)
    want = _lp(u, q) * _lp(v, _dual(p))
    assert _rel(M.Induced(p, q)(W), want) < SEARCH


def test_induced_inf_to_one_is_a_max_over_sign_vectors():
    """||W||_{inf->1} is the max of the convex map v -> ||W v||_1 over the cube: attained at a sign vector."""
    rng = np.random.default_rng(3)
    for _ in range(5):
        W = rng.standard_normal((2, 2))
        want = max(_lp(W @ np.array([a, b]), 1.0) for a in (1.0, -1.0) for b in (1.0, -1.0))
        assert _rel(M.Induced(INF, 1.0)(W), want) < SEARCH


def test_induced_rejects_p_below_one():
    with pytest.raises(ValueError):
        M.Induced(0.5, 2.0)


def test_linear_l2_diagonal_map():
    d = np.array([2.0, 0.5, 3.0, 1.0])
    f = M.LinearL2(np.diag(d))
    W = np.array([[1.0, -1.0], [2.0, 0.5]])
    assert _rel(f(W), float(np.linalg.norm(d * W.ravel()))) < EXACT
    assert _rel(f.dual_value(W), float(np.linalg.norm(W.ravel() / d))) < EXACT
    assert _rel(f.c, 2.0) < EXACT            # min ||M x|| over x_1 = 1 is d_1 (at x = e_1)


@pytest.mark.parametrize("seed", RNG_SEEDS)
def test_linear_l2_constant_and_hoelder(seed):
    """c = min{||M vec X|| : X_11 = 1} (least squares over the free entries), and Hoelder is attained."""
    f = M.random_linear_l2(seed)
    Mx = f.matrix
    assert np.linalg.cond(Mx) <= 20.0 * (1 + 1e-9)
    rest, *_ = np.linalg.lstsq(Mx[:, 1:], -Mx[:, 0], rcond=None)
    c_ls = float(np.linalg.norm(Mx[:, 0] + Mx[:, 1:] @ rest))
    assert _rel(f.c, c_ls) < 1e-10
    Y = np.array([[0.3, -1.0], [2.0, 0.1]])
    X = np.linalg.solve(Mx, np.linalg.solve(Mx.T, Y.ravel())).reshape(2, 2)
    assert _rel(float(np.sum(X * Y)), f(X) * f.dual_value(Y)) < 1e-10


def test_weighted_sum():
    f = M.Weighted((M.Schatten(1.0), M.Entrywise(0.5)), (0.5, 2.0))
    W = np.diag([3.0, 1.0])
    assert _rel(f(W), 0.5 * 4.0 + 2.0 * (math.sqrt(3.0) + 1.0) ** 2) < EXACT
    assert f.quasi_constant == 2.0          # max(1, 2^(1/0.5 - 1))
    assert f.c == 2.5 and f.c_kind == "lower bound"
    assert repr(f) == "0.5*S_1 + 2*l_0.5"


def test_non_norm_surrogates():
    assert M.ERank().is_norm is False and M.SmoothRank().is_norm is False
    assert _rel(M.SmoothRank(0.1)(np.diag([1.0, 0.0])), 1.0 / 1.1) < EXACT
    assert _rel(M.ERank()(np.eye(2)), 2.0) < EXACT


# ----------------------------------------------------------------------------------------------------------------
# Perturbation bounds and specs
# ----------------------------------------------------------------------------------------------------------------
ALL_MEASURES = [M.Schatten(0.5), M.Schatten(1.0), M.Schatten(INF), M.Entrywise(0.3), M.Entrywise(2.0),
                M.Entrywise(INF), M.Induced(1, 1), M.Induced(3.0, 1.5), M.random_linear_l2(7),
                M.Weighted((M.Schatten(2.0), M.Induced(INF, INF)), (0.1, 10.0)), M.ERank(), M.SmoothRank(0.2)]


@pytest.mark.parametrize("measure", ALL_MEASURES, ids=repr)
def test_error_bounds_actual_perturbations(measure):
    """|f(W + D) - f(W)| <= f.error(W, delta) for every D with max |D_ij| <= delta (random and corner D)."""
    rng = np.random.default_rng(11)
    for W in (_wx(3.0), _wx(-40.0), np.diag([2.0, 1e-3]), rng.standard_normal((2, 2))):
        for delta in (1e-10, 1e-6, 1e-3):
            bound = measure.error(W, delta)
            Ds = [delta * rng.uniform(-1, 1, (2, 2)) for _ in range(20)]
            Ds += [delta * np.array([[a, b], [c, d]]) for a in (1, -1) for b in (1, -1) for c in (1, -1)
                   for d in (1, -1)]
            worst = max(abs(measure(W + D) - measure(W)) for D in Ds)
            assert worst <= bound, (repr(measure), W.tolist(), delta, worst, bound)


@pytest.mark.parametrize("measure", ALL_MEASURES, ids=repr)
def test_spec_round_trip(measure):
    again = M.from_spec(measure.spec())
    W = np.array([[0.3, -2.0], [1.5, 0.7]])
    assert again(W) == measure(W)
    assert repr(again) == repr(measure)


@pytest.mark.parametrize("spec", [{"kind": "nope"}, {"kind": "schatten"}, {"kind": "schatten", "p": -1.0},
                                  {"kind": "linear_l2", "M": [[1.0, 2.0], [2.0, 4.0]]}])
def test_bad_specs_are_invalid_input(spec):
    with pytest.raises(ValueError):
        M.from_spec(spec)


# ----------------------------------------------------------------------------------------------------------------
# Rank measures on matrices
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("spectrum,want", [
    ((1.0, 1.0), 2.0), ((5.0, 5.0, 5.0), 3.0), ((2.0, 0.0), 1.0), ((0.0, 0.0), 0.0),
    ((3.0, 1.0), math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))),
    ((1.0, 1.0, 1.0, 1.0, 0.0), 4.0),
])
def test_erank_of_known_spectra(spectrum, want):
    """erank = exp(-sum p_i ln p_i), p_i = sigma_i / sum sigma (natural log; zeros dropped; 0 for W = 0)."""
    assert abs(M.erank(np.diag(spectrum)) - want) < EXACT * max(want, 1.0)


@pytest.mark.parametrize("rho", [0.0, 1e-12, 1e-6, 0.01, 0.3, 0.9, 1.0])
def test_erank_from_ratio_matches_erank(rho):
    assert abs(M.erank_from_ratio(rho) - M.erank(np.diag([1.0, rho]))) < EXACT
    assert 1.0 <= M.erank_from_ratio(rho) <= 2.0


def test_erank_small_ratio_asymptotics():
    """erank - 1 = rho ln(e/rho) + O((rho ln rho)^2) (so erank - 1 <= 2 rho ln(e/rho), RC20's rank bound)."""
    for rho in (1e-3, 1e-6, 1e-9):
        gap = M.erank_from_ratio(rho) - 1.0
        first = rho * (1.0 - math.log(rho))
        assert abs(gap - first) <= first * first + 1e-15
        assert gap <= 2.0 * rho * (1.0 - math.log(rho))


def test_sigma2_and_dist_rank1():
    W = np.diag([3.0, 2.0, 1.0])
    assert _rel(M.sigma2(W), 2.0) < EXACT
    assert _rel(M.dist_rank1(W), math.sqrt(5.0)) < EXACT
    assert M.dist_rank1(np.outer([1.0, 2.0], [3.0, -1.0])) < 1e-15 * 10
    assert M.sigma2(np.array([[4.0]])) == 0.0


@pytest.mark.parametrize("x", [0.0, 0.5, -2.0, 10.0, -1e3, 1e6])
def test_rank_subopt_on_the_completions(x):
    """rs(W_x) = max{sigma_2, erank - 1} with sigma_2 = 2/(sqrt(x^2+4) + |x|), sigma_1 = 1/sigma_2."""
    s2 = 2.0 / (math.sqrt(x * x + 4.0) + abs(x))
    s1 = 1.0 / s2
    want = max(s2, M.erank_from_ratio(s2 / s1) - 1.0)
    assert _rel(M.sigma2(_wx(x)), s2) < 1e-9 if abs(x) > 1e4 else _rel(M.sigma2(_wx(x)), s2) < EXACT
    # sigma_2 from a float64 SVD has absolute error ~ eps * sigma_1: relative to s2 that is eps x^2
    assert abs(M.rank_subopt(_wx(x)) - want) <= 8 * np.finfo(float).eps * s1 * math.log(2.0 + s1) + 1e-15


def test_rank_subopt_values():
    assert _rel(M.rank_subopt(_wx(0.0)), 1.0) < EXACT          # erank 2, sigma_2 = 1
    assert M.rank_subopt(np.diag([1.0, 0.0])) == 0.0
    assert _rel(M.rank_subopt(np.diag([1.0, 1.0]), inf_erank=2.0), 1.0) < EXACT   # dist to rank 1 wins


# ----------------------------------------------------------------------------------------------------------------
# Tensors
# ----------------------------------------------------------------------------------------------------------------
def _outer(*vs) -> np.ndarray:
    out = np.asarray(vs[0], dtype=float)
    for v in vs[1:]:
        out = np.multiply.outer(out, v)
    return out


@pytest.mark.parametrize("dims", [(3, 3, 3), (2, 4, 3), (3, 2, 2, 3)])
def test_rank_one_tensor_is_fitted_exactly(dims):
    rng = np.random.default_rng(sum(dims))
    vs = [rng.standard_normal(d) for d in dims]
    T = _outer(*vs)
    lam, vecs = M.best_rank1(T)
    assert _rel(abs(lam), float(np.prod([np.linalg.norm(v) for v in vs]))) < ALS
    assert float(np.linalg.norm(M.rank1_tensor(lam, vecs) - T)) / float(np.linalg.norm(T)) < ALS
    assert M.dist_rank1_tensor(T) < ALS
    assert M.cp_rank_estimate(T, tol=1e-6) == 1


def test_orthogonal_rank_two_tensor_distance_is_closed_form():
    """T = e1 (x) e1 (x) e1 + 0.5 e2 (x) e2 (x) e2: the best rank-1 fit is the first term, distance 0.5."""
    e1, e2 = np.eye(3)[0], np.eye(3)[1]
    T = _outer(e1, e1, e1) + 0.5 * _outer(e2, e2, e2)
    lam, _ = M.best_rank1(T)
    assert _rel(abs(lam), 1.0) < ALS
    assert _rel(M.dist_rank1_tensor(T, relative=False), 0.5) < ALS
    assert _rel(M.dist_rank1_tensor(T), 0.5 / math.sqrt(1.25)) < ALS
    assert M.cp_rank_estimate(T, tol=1e-6) == 2


@pytest.mark.parametrize("dims", [(3, 3, 3), (4, 3, 2), (2, 2, 2, 2)])
def test_generic_rank_two_tensor(dims):
    rng = np.random.default_rng(7 + len(dims))
    T = _outer(*[rng.standard_normal(d) for d in dims]) + _outer(*[rng.standard_normal(d) for d in dims])
    assert M.dist_rank1_tensor(T) > 1e-2
    assert M.cp_rank_estimate(T, tol=1e-6) == 2
    _, err = M.cp_als(T, 2)
    assert err < 1e-6


def test_cp_rank_estimate_of_zero_and_cap():
    assert M.cp_rank_estimate(np.zeros((2, 3, 2))) == 0
    rng = np.random.default_rng(5)
    T = rng.standard_normal((2, 2, 2))
    assert 1 <= M.cp_rank_estimate(T, tol=1e-6) <= 4  # at most prod(dims) / max(dims)


def test_component_norms():
    """||W_r|| = prod_n ||w_r^n||, one value per CP component r."""
    A = np.array([[3.0, 0.0], [4.0, 1.0]])
    B = np.array([[1.0, 2.0], [0.0, 0.0], [0.0, 0.0]])
    C = np.array([[2.0, 0.5], [0.0, 0.0]])
    assert np.allclose(M.component_norms([A, B, C]), [5.0 * 1.0 * 2.0, 1.0 * 2.0 * 0.5], rtol=EXACT, atol=0)


@pytest.mark.parametrize("rho", [1e-300, 1e-40, 1e-17, 1e-9, 1e-3, 0.25, 1.0])
def test_erank_excess_from_ratio_has_full_relative_precision(rho):
    """erank - 1 against 50-digit mpmath, relative 1e-13 (a plain exp(h) - 1 returns 0 below rho ~ 1e-17)."""
    import mpmath

    with mpmath.workdps(50):
        r = mpmath.mpf(rho)
        q = r / (1 + r)
        want = mpmath.expm1(-(q * mpmath.log(q) + (1 - q) * mpmath.log1p(-q)))
        assert abs(M.erank_excess_from_ratio(rho) - want) <= 1e-13 * want


def test_rc20_erank_bound_ratio_is_unimodal_below_one():
    """r(rho) = (erank - 1)/(2 rho ln(e/rho)): 1/2 at rho -> 0 and at rho = 1, rising up to the peak and falling
    after it (what the interval evaluation of rc20.thm1.rank relies on), maximum < 0.55."""
    from properties.rc20 import erank_bound_ratio, erank_bound_ratio_range, erank_ratio_peak

    ERANK_RATIO_PEAK = erank_ratio_peak()

    assert erank_bound_ratio(1.0) == pytest.approx(0.5, abs=1e-15)
    assert erank_bound_ratio(1e-300) == pytest.approx(0.5, abs=1e-3)
    left = np.logspace(-300, math.log10(ERANK_RATIO_PEAK), 4000)
    right = np.linspace(ERANK_RATIO_PEAK, 1.0, 4000)
    rl = np.array([erank_bound_ratio(x) for x in left])
    rr = np.array([erank_bound_ratio(x) for x in right])
    assert np.all(np.diff(rl) >= -1e-15) and np.all(np.diff(rr) <= 1e-15)
    peak = erank_bound_ratio(ERANK_RATIO_PEAK)
    assert 0.5 < peak < 0.55 and peak >= max(rl.max(), rr.max()) - 1e-15
    lo, hi = erank_bound_ratio_range(0.0, 1.0)
    assert lo == 0.5 and hi == peak
