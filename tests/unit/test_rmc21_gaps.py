"""The escape-gap part of rmc21.incremental_learning (properties/rmc21_gaps.py, catalog RMC21-Thm1 "Escape gap"):
the compiled batched descent is the suite's gradient descent (orders 3 and 4), its escapes are the first steps at
which the predicates hold, the unfolding distance bounds the distance to rank one, the test keeps every profile
green by chance below its level, and the wrong dynamics (rate exponent 1 instead of 2 - 2/N) is refuted at both
orders. Fixed seeds, a few seconds in all."""

from __future__ import annotations

import numpy as np
import pytest

import properties  # noqa: F401  -- registers the built-in claims
from models.factorizations import cp_tensor
from properties import measures as M
from properties import rmc21 as R
from properties import rmc21_gaps as G
from properties.api import CLAIMS

INPUTS = {"dims": [3, 4, 3], "alpha": 10 ** -2.3, "frac": 0.95, "seed": 3, "lam": 1.0}
#: an order-4 setting of the claim's range (its ladders run to ~19,000 steps)
INPUTS4 = {"dims": [3, 3, 3, 3], "alpha": 10 ** -2.3, "frac": 0.95, "seed": 5, "lam": 1.0}


@pytest.mark.parametrize("inputs", [INPUTS, INPUTS4], ids=["order3", "order4"])
def test_batched_descent_is_the_suite_gradient_descent(inputs):
    problem, model, dirs, c, _ = R.inc_setting(inputs)
    N = model.order
    batch = [np.stack([U * (a * c) ** (1 / N) for a in (0.3, 0.05)]) for U in dirs]
    ref, _ = R.gd_run(problem, model, batch, 0.1, 40)
    fs, obs, tg, gs, _ = G.ladder_members([(problem, model, dirs, c, _)], 1.0, ladder=(0.3, 0.05))
    mine = G.cp_gd_batch(fs, obs, tg, gs, 0.1, 40)
    for a, b in zip(mine, ref):
        assert np.max(np.abs(a - np.asarray(b))) <= 1e-12 * max(1.0, np.max(np.abs(a)))
    # exponent p = 2 - 2/N is plain descent; any other p changes the step
    same = G.cp_gd_batch(fs, obs, tg, gs, 0.1, 5, exponent=2.0 - 2.0 / N)
    plain = G.cp_gd_batch(fs, obs, tg, gs, 0.1, 5)
    assert all(np.allclose(a, b, rtol=1e-13, atol=0) for a, b in zip(same, plain))
    assert not np.allclose(G.cp_gd_batch(fs, obs, tg, gs, 0.1, 5, exponent=1.0)[0], plain[0], rtol=1e-6, atol=0)


def test_escapes_are_the_first_steps_at_which_the_predicates_hold():
    # the compiled loop's e1, e2 against a step-by-step replay of cp_gd_batch with the numpy predicates
    problem, model, dirs, c, T = R.inc_setting(INPUTS)
    fs, obs, tg, gs, th = G.ladder_members([(problem, model, dirs, c, T)], 0.05, ladder=(1.0,))
    e1, e2 = G.ladder_escapes(fs, obs, tg, gs, th)
    cur, k, seen1, seen2 = fs, 0, None, None
    while seen2 is None:
        cur, k = G.cp_gd_batch(cur, obs, tg, gs, G.GAP_LR, 1), k + 1
        W = G.batch_tensor(cur)
        if seen1 is None and np.linalg.norm(W) >= G.GAP_THETA1:
            seen1 = k
        if seen1 is not None and G.batch_unfolding_distance(W)[0] >= th[0]:
            seen2 = k
    assert (int(e1[0]), int(e2[0])) == (seen1, seen2)


def test_exponent_one_control_changes_the_norm_growth_exponent():
    # near 0 (gradient ~ frozen) d/dt log ||W_r|| = N ||W_r||^(p - 1) g_r: two members with the same directions at
    # norms 1e-6 and 1e-8 grow in log-norm in the ratio 100^(p - 1): 100^(1/3) under the theorem (p = 2 - 2/N,
    # N = 3), 1 under the control (p = 1)
    problem, model, dirs, c, _ = R.inc_setting(INPUTS)
    fs, obs, tg, gs, _ = G.ladder_members([(problem, model, dirs, c, _)], 1e-6, ladder=(1.0, 0.01))

    def log_growth(F):
        n0 = np.prod([np.linalg.norm(U, axis=1) for U in fs], axis=0)
        return np.log(np.prod([np.linalg.norm(U, axis=1) for U in F], axis=0) / n0)

    true = log_growth(G.cp_gd_batch(fs, obs, tg, gs, 0.1, 20))
    ctrl = log_growth(G.cp_gd_batch(fs, obs, tg, gs, 0.1, 20, exponent=1.0))
    assert np.allclose(true[0] / true[1], 100 ** (1 / 3), rtol=0.05)
    assert np.allclose(ctrl[0] / ctrl[1], 1.0, rtol=0.01)


def test_unfolding_distance_is_a_lower_bound_on_the_distance_to_rank_one():
    rng = np.random.default_rng(0)
    Ts = rng.standard_normal((6, 3, 4, 3))
    u = G.batch_unfolding_distance(Ts)
    for T, v in zip(Ts, u):
        assert v <= M.dist_rank1_tensor(T, relative=False) * (1 + 1e-9) + 1e-12
    rank1 = cp_tensor([rng.standard_normal((d, 1)) for d in (3, 4, 3)])
    # sqrt(||W||^2 - sigma_1^2) of a rank-1 tensor: the square root of a rounding error, ~sqrt(eps) ||W||
    assert G.batch_unfolding_distance(rank1[None])[0] <= 1e-7 * np.linalg.norm(rank1)


def test_gap_trial_needs_a_growing_gap_beyond_its_error():
    assert G.gap_trial([80, 230, 540], [180, 430, 930], 3)[0]            # gaps 100, 200, 390: estimate 0.29
    assert not G.gap_trial([20, 30, 40], [60, 75, 90], 3)[0]              # gaps 40, 45, 50: estimate 0
    assert not G.gap_trial([20, 30, 40], [60, 71, 84], 3)[0]             # differences within 2 steps: unresolved
    ok, d = G.gap_trial([20, 30, 40], [60, 71, 84], 3)
    assert d["error"] == float("inf")


def test_the_gap_test_keeps_every_profile_green_by_chance_below_its_level():
    assert G.GAP_TEST.red_by_chance() <= G.GAP_TEST.run_level
    assert G.GAP_TEST.operating(G.GAP_TEST.p0).holds <= G.GAP_TEST.alpha


@pytest.mark.parametrize("inputs", [INPUTS, INPUTS4], ids=["order3", "order4"])
def test_escape_gap_holds_for_gradient_descent_and_is_violated_for_exponent_one(inputs):
    # order 4: measured 7 of the first 8 ladders succeed (estimates ~0.5 = 1 - 2/4), the exponent-1 control 0 of 17
    good = G.escape_gap_outcome(inputs, inputs["alpha"])
    assert good.status == "holds" and good.detail["successes"] >= 5
    bad = G.escape_gap_outcome(inputs, inputs["alpha"], exponent=1.0)
    assert bad.status == "violated" and bad.detail["successes"] == 0


def test_incremental_learning_order_three_includes_the_escape_gap():
    out = CLAIMS["rmc21.incremental_learning"].run_check(INPUTS)
    assert out.status == "holds"
    assert out.detail["points_checked"] == 4          # two rho steps, the exponent, the escape gap


def test_the_compiled_loop_is_compiled_once_whatever_the_inputs_flags():
    # numba compiles one specialization per argument type, and an array's type includes its read-only flag: a
    # theta2 broadcast to (B,) (read-only) and one copied (writable) cost two compilations (~1.2 s CPU each on an
    # empty cache, in every process that runs both cp_gd_batch and ladder_escapes). Read-only inputs of every
    # array argument must reuse the one specialization.
    problem, model, dirs, c, T = R.inc_setting(INPUTS)
    fs, obs, tg, gs, th = G.ladder_members([(problem, model, dirs, c, T)], 0.05, ladder=(1.0, 0.1))
    frozen = []
    for a in (obs, tg, th):
        a = np.array(a)
        a.setflags(write=False)
        frozen.append(a)
    G.cp_gd_batch(fs, obs, tg, gs, G.GAP_LR, 2)
    G.cp_gd_batch(fs, *frozen[:2], gs, G.GAP_LR, 2)
    G.ladder_escapes(fs, frozen[0], frozen[1], gs, frozen[2], max_steps=G.GAP_MAX_STEPS[3])
    G.ladder_escapes(fs, obs, tg, gs, float(np.max(th)), max_steps=G.GAP_MAX_STEPS[3])
    assert len(G.kernel_signatures()) == 1
