"""Wrong versions of the strengthened RMC21 claims and of gunasekar17.conj.nuclear_norm are refuted (issue 11's
acceptance: constant halved, exponent changed, hypothesis dropped, the ruled-out alternative), and every declared
hypothesis changes what is drawn when dropped. Fixed inputs, a few seconds in all."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import find, settings
from hypothesis.errors import NoSuchExample

import properties  # noqa: F401  -- registers the built-in claims
from models.factorizations import component_norms
from properties import rmc21 as R
from properties.api import CLAIMS

TIGHT = {"dims": [3, 3, 3], "R": 3, "x0": 1e-3, "others": 1e-3, "sign": "grow", "noise": 0.0, "frac": 0.95,
         "tau": 0.9, "seed": 1, "lam": 1.0}


def test_zero_component_bounds_hold_nearly_attained_and_their_wrong_versions_fail():
    out = CLAIMS["rmc21.zero_component"].run_check(TIGHT)
    assert out.status == "holds" and out.margin < 1e-2          # the bound is nearly attained (within 1%)
    problem, model, init, x0, K, times = R.zero_setting(TIGHT)
    main, comp = R.gf_pair(problem, model, init, times, 1e-10)
    x = np.array([component_norms(p.factors)[0] for p in main])
    err = R.running_error(x, [component_norms(p.factors)[0] for p in comp]) + 64 * R.EPS * x
    N = model.order
    half = np.array([R.norm_upper_bound(x0[0], K / 2, N, p.t) for p in main])          # K halved
    assert np.any(x - half > err)
    sq = np.array([1.0 / (1.0 / x0[0] - N * K * p.t) for p in main])                  # exponent 2 - 2/N -> 2
    assert np.any(x - sq > err)


def test_zero_component_without_balance_is_violated():
    out = CLAIMS["rmc21.zero_component"].run_check({**TIGHT, "lam": 10.0})
    assert out.status == "violated" and out.detail["part"] == "upper bound"


def test_low_tensor_rank_from_large_init_is_refuted_and_from_small_init_holds():
    inputs = {"dims": [4, 4, 4], "count": 350, "alpha": 1.0, "seed": 1}     # 350/512 of 64 entries
    out = CLAIMS["rmc21.low_tensor_rank"].run_check(inputs)
    assert out.status == "violated" and out.detail["successes"] <= 1
    out = CLAIMS["rmc21.low_tensor_rank"].run_check({**inputs, "alpha": 1e-4})
    assert out.status == "holds"


def test_conservation_fails_for_gradient_descent():
    base = {"dims": [3, 3, 3], "R": 2, "scale": 0.5, "frac": 0.7, "reduction": "half_sum", "t_max": 3.0, "seed": 1}
    assert CLAIMS["rmc21.conservation"].run_check({**base, "dynamics": "gd", "lr": 10 ** -1.5}).status == "violated"


def test_incremental_learning_escape_exponent_is_the_theorems_not_exponential_growth():
    """Order 4: 1 - 2/N = 1/2. Were the rate exponent 2 - 2/N replaced by 1 (exponential escape), the escape times
    would grow like log(1/alpha) and the estimate would be near 0."""
    out = CLAIMS["rmc21.incremental_learning"].run_check({"dims": [3, 2, 3, 2], "alpha": 0.01, "frac": 1.0,
                                                          "seed": 2, "lam": 1.0})
    assert out.status == "holds"
    d1, d2 = np.diff(np.array(out.detail["e1"], dtype=float))
    est = math.log10(d2 / d1)
    assert abs(est - 0.5) <= R.INC_EXP_TOL and abs(est - 0.0) > 4 * R.INC_EXP_TOL


HYPS = [("rmc21.zero_component", "balanced", lambda d: d["lam"] != 1.0),
        ("rmc21.incremental_learning", "balanced", lambda d: d["lam"] != 1.0),
        ("rmc21.low_tensor_rank", "small_init", lambda d: d["alpha"] > 1e-3),
        ("rmc21.conservation", "gradient_flow", lambda d: d["dynamics"] != "gf"),
        ("gunasekar17.conj.nuclear_norm", "small_init", lambda d: d["scale"] > 0.1),
        ("gunasekar17.conj.nuclear_norm", "depth_two", lambda d: d["depth"] != 2)]


@pytest.mark.parametrize("cid,hyp,breaks", HYPS, ids=[f"{c}-{h}" for c, h, _ in HYPS])
def test_every_declared_hypothesis_changes_what_is_drawn(cid, hyp, breaks):
    c = CLAIMS[cid]
    assert hyp in {h.name for h in c.hypotheses}
    quick = settings(max_examples=300, database=None, derandomize=True)
    with pytest.raises(NoSuchExample):
        find(c.strategy(frozenset()), breaks, settings=quick)
    find(c.strategy(frozenset({hyp})), breaks, settings=quick)



def test_incremental_learning_has_no_head_start():
    """The unused unique_leader (a head start in alignment and norm) is gone: equal norms, R = target rank + 2."""
    assert {h.name for h in CLAIMS["rmc21.incremental_learning"].hypotheses} == {"balanced"}
    problem, model, dirs, c, _ = R.inc_setting({"dims": [3, 3, 3], "alpha": 0.01, "frac": 0.95, "seed": 4,
                                                 "lam": 1.0})
    assert np.all(c == 1.0) and model.rank == 4
    assert np.allclose([np.linalg.norm(U, axis=0) for U in dirs], 1.0, rtol=0, atol=1e-12)


@pytest.mark.parametrize("N", [3, 4, 5])
def test_norm_upper_bound_solves_the_comparison_ode(N):
    """hi(t) solves d/dt x = N x^(2-2/N) K from x0, blows up at blowup_time, and is 0 for x0 = 0."""
    x0, K, h = 1e-3, 0.7, 1e-6
    tb = R.blowup_time(x0, K, N)
    for t in (0.1 * tb, 0.5 * tb, 0.9 * tb):
        x = R.norm_upper_bound(x0, K, N, t)
        d = (R.norm_upper_bound(x0, K, N, t + h) - R.norm_upper_bound(x0, K, N, t - h)) / (2 * h)
        assert d == pytest.approx(N * x ** (2 - 2 / N) * K, rel=1e-6)
    assert R.norm_upper_bound(x0, K, N, 0.0) == pytest.approx(x0, rel=1e-14)
    assert R.norm_upper_bound(x0, K, N, 1.01 * tb) == math.inf and R.norm_upper_bound(0.0, K, N, 1e6) == 0.0
