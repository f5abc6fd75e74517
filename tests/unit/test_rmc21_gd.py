"""Unit tests of the helpers behind the rmc21.* and gd.tracks_gf claims (fast; explicit tolerances)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models import cp_tools as CT
from models import inits
from models.factorizations import CP, component_norms, cp_factor_grads, cp_tensor
from models.problems import tensor_completion
from properties import gd as G
from properties import rmc21 as R

EPS = float(np.finfo(float).eps)


def _factors(dims, rank, seed, scale=1.0):
    rng = np.random.default_rng(seed)
    return [scale * rng.standard_normal((d, rank)) for d in dims]


@pytest.mark.parametrize("dims,rank", [((2, 3, 4), 3), ((3, 2, 2, 3), 4), ((1, 4, 2, 2, 3), 2)])
def test_network_forward_equals_cp_tensor(dims, rank):
    fs = _factors(dims, rank, seed=len(dims))
    T = cp_tensor(fs)
    tuples = np.stack(np.unravel_index(np.arange(T.size), dims), axis=1)
    net = CT.network_forward(fs, CT.one_hot_inputs(dims, tuples))
    assert np.max(np.abs(net - T.reshape(-1))) <= 1e-12 * max(1.0, float(np.max(np.abs(T))))


def test_network_forward_is_multilinear_on_general_inputs():
    """On non-one-hot inputs the network computes sum_r prod_n <w_r^n, x_n> = <T, x_1 (x) ... (x) x_N>."""
    dims, rank = (2, 3, 2), 3
    fs = _factors(dims, rank, seed=7)
    rng = np.random.default_rng(8)
    xs = [rng.standard_normal((5, d)) for d in dims]
    net = CT.network_forward(fs, xs)
    want = np.einsum("abc,ia,ib,ic->i", cp_tensor(fs), *xs)
    assert np.allclose(net, want, rtol=1e-12, atol=1e-12)


def test_tensor_gradient_keeps_the_imaginary_part_of_a_complex_step():
    prob = tensor_completion((2, 2, 2), [[0, 0, 0], [1, 1, 0]], [1.0, -2.0])
    T = np.zeros((2, 2, 2), dtype=complex)
    T[0, 0, 0] = 0.5 + 1e-30j
    g = prob.grad(T)
    assert g.dtype == complex and g[0, 0, 0].imag == pytest.approx(1e-30, rel=1e-12)
    Tr = np.arange(8.0).reshape(2, 2, 2)
    assert prob.grad(Tr).dtype == np.float64


def test_thm1_formula_matches_autograd_at_a_balanced_point():
    inputs = {"dims": [3, 2, 3], "R": 3, "norm_exp": 0.0, "spread": 1.0, "balanced": True, "rel_eps": 1.0,
              "frac": 0.7, "reduction": "half_sum", "seed": 11}
    prob, fs = R.thm1_point(inputs)
    assert CT.unbalancedness(fs) <= 1e-12
    Gt = np.real(prob.grad(cp_tensor(fs)))
    rates = CT.norm_rates_autograd(prob, fs)
    cn = component_norms(fs)
    g = CT.alignments(fs, Gt)
    want = np.array([R.thm1_rhs(cn[r], g[r], 3) for r in range(3)])
    assert np.max(np.abs(rates - want)) <= 1e-12 * np.max(np.abs(want))


def test_thm1_rate_against_finite_differences_of_a_short_gradient_flow():
    """d/dt ||W_r|| from the formula against a central difference of an RK4 integration of the factor ODE
    (one step of 2e-4 each way: central-difference truncation ~1e-8 relative, RK4 error ~1e-18, far below the 1e-6
    tolerance)."""
    inputs = {"dims": [2, 3, 2, 2], "R": 2, "norm_exp": -0.3, "spread": 0.5, "balanced": True, "rel_eps": 1.0,
              "frac": 0.8, "reduction": "mean", "seed": 5}
    prob, fs = R.thm1_point(inputs)

    def vel(f):
        return [-g for g in cp_factor_grads(f, np.real(prob.grad(cp_tensor(f))))]

    def rk4(f, h, n):
        for _ in range(n):
            k1 = vel(f)
            k2 = vel([a + h / 2 * b for a, b in zip(f, k1)])
            k3 = vel([a + h / 2 * b for a, b in zip(f, k2)])
            k4 = vel([a + h * b for a, b in zip(f, k3)])
            f = [a + h / 6 * (b + 2 * c + 2 * d + e) for a, b, c, d, e in zip(f, k1, k2, k3, k4)]
        return f

    h, n = 2e-4, 1
    fd = (component_norms(rk4(fs, h, n)) - component_norms(rk4(fs, -h, n))) / (2 * h * n)
    cn = component_norms(fs)
    g = CT.alignments(fs, np.real(prob.grad(cp_tensor(fs))))
    want = np.array([R.thm1_rhs(cn[r], g[r], 4) for r in range(2)])
    assert np.max(np.abs(fd - want)) <= 1e-6 * np.max(np.abs(want))


def test_thm1_bounds_bracket_the_rate_when_unbalanced_and_collapse_when_balanced():
    inputs = {"dims": [2, 2, 3], "R": 2, "norm_exp": 0.2, "spread": 0.3, "balanced": False, "rel_eps": 2.0,
              "frac": 1.0, "reduction": "half_sum", "seed": 3}
    prob, fs = R.thm1_point(inputs)
    eps = CT.unbalancedness(fs)
    assert eps > 0.1
    rates = CT.norm_rates_autograd(prob, fs)
    cn = component_norms(fs)
    g = CT.alignments(fs, np.real(prob.grad(cp_tensor(fs))))
    for r in range(2):
        lo, hi = R.thm1_bounds(cn[r], g[r], 3, eps)
        assert lo < rates[r] < hi
        lo0, hi0 = R.thm1_bounds(cn[r], g[r], 3, 0.0)
        want = R.thm1_rhs(cn[r], g[r], 3)
        assert lo0 == pytest.approx(want, rel=1e-14) and hi0 == pytest.approx(want, rel=1e-14)


def test_sympy_conservation_holds_and_sees_an_unbalanced_law():
    assert R.sympy_conservation(3)
    assert R.sympy_conservation(4, 1)


def test_norm_lower_bound_solves_the_comparison_ode():
    """(x^-(1-2/N) + (N-2) K t)^(-N/(N-2)) solves dx/dt = -N x^(2-2/N) K (checked by central differences)."""
    for N in (3, 4, 5):
        x0, K, t, h = 0.3, 2.0, 0.7, 1e-6
        x = R.norm_lower_bound(x0, K, N, t)
        d = (R.norm_lower_bound(x0, K, N, t + h) - R.norm_lower_bound(x0, K, N, t - h)) / (2 * h)
        assert d == pytest.approx(-N * x ** (2 - 2 / N) * K, rel=1e-7)
        assert R.norm_lower_bound(x0, K, N, 0.0) == pytest.approx(x0, rel=1e-14)
    assert R.norm_lower_bound(0.5, 1.0, 2, 1.0) == pytest.approx(0.5 * math.exp(-2.0), rel=1e-15)


def test_norm_differences_and_unbalancedness():
    fs = [np.array([[3.0, 0.0], [4.0, 1.0]]), np.array([[1.0, 2.0], [0.0, 0.0]]), np.array([[2.0, 1.0], [0.0, 1.0]])]
    D = CT.norm_differences(fs)
    assert np.array_equal(D, np.array([[1 - 25.0, 4 - 1.0], [4 - 25.0, 2 - 1.0]]))
    assert CT.unbalancedness(fs) == 24.0


def test_running_error_is_ten_times_the_running_max():
    e = R.running_error([1.0, 1.0, 1.0, 1.0], [1.0, 1.5, 1.1, 0.0])
    assert np.allclose(e, [0.0, 5.0, 5.0, 10.0])


def test_first_step_finds_the_exact_step_of_an_event():
    prob = tensor_completion((2, 2, 2), np.stack(np.unravel_index(np.arange(8), (2, 2, 2)), 1), np.linspace(-1, 1, 8))
    model = CP((2, 2, 2), 2)
    init = inits.cp_balanced(model, 0.5, seed=1)
    L0 = prob.loss(cp_tensor(list(init.factors)))
    losses = []
    fs = [F[None] for F in init.factors]
    for _ in range(40):
        fs, loss = R.gd_run(prob, model, fs, 0.1, 1)
        losses.append(float(loss[0]))
    target = next(k + 1 for k, v in enumerate(losses) if v <= 0.9 * L0)
    k, _ = R.first_step(prob, model, 0.1, list(init.factors), 0, 40, lambda f: prob.loss(cp_tensor(f)) <= 0.9 * L0)
    assert k == target


def test_slope_and_error_of_an_exact_power_law():
    etas = [0.01, 0.005, 0.0025]
    s, e = G.slope_and_error(etas, [3.0 * h for h in etas], [0.0, 0.0, 0.0])
    assert s == pytest.approx(1.0, abs=1e-12) and e == 0.0
    s2, e2 = G.slope_and_error(etas, [3.0 * h ** 2 for h in etas], [1e-9] * 3)
    assert s2 == pytest.approx(2.0, abs=1e-12) and e2 > 0


def test_gd_error_halves_with_the_step_for_a_deep_matrix():
    inputs = {"model": "deep", "depth": 2, "shape": [2, 2], "dims": [2, 2, 2], "R": 1, "scale": 1.0,
              "eta": 10 ** -2.0, "T": 1.0, "seed": 0}
    etas, errs, deltas, T = G.tracks(inputs)
    assert T == pytest.approx(0.96, rel=1e-12)   # 8 * round(1 / (8 eta)) = 96 steps
    for a, b in zip(errs[:-1], errs[1:]):
        assert 1.9 < a / b < 2.1
    assert max(deltas) < 1e-4 * min(errs)   # the numerical error bound is far below what is measured
