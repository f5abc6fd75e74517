"""gf-mp's raw-path precision stop (:meth:`RawSystem.precision_problem`, the driver's ``_check_precision``): every
factor det against ``max(10^(10 - digits), sqrt(tol))`` on ``path="raw"``, the loss against its rounding bound,
and a factor det's sign change from inside the band. About 3 s (one depth-3 run to loss 1e-8)."""

from __future__ import annotations

import mpmath
import numpy as np

from models.engines import get_engine
from models.engines.gf_mp.arith import make_context
from models.engines.gf_mp.systems import RawSystem
from models.factorizations import DeepMatrix
from models.problems import rc20
from models.trajectory import Status
from properties.rc20_det_raw import exact_setting


def test_the_factor_stop_goes_past_the_end_to_end_band_with_every_factor_det_resolved():
    """Depth 3, exact balanced init (scale 0.1), 30 digits, default tol 1e-20: ``det W / ||W||^2`` falls like
    ``loss^3`` and passes the old stop's ``10^(10 - 30)`` near loss 1e-7 (1e-21 at 1e-8); every factor's ``|det
    W_j| / ||W_j||^2`` is still 1e-7 at 1e-8, far above its floor 1e-10 and its rounding (~1e-40). The old
    end-to-end stop (the wrong version here) ends this run with ``precision_lost`` before loss 1e-7."""
    problem, model, init = exact_setting(dict(depth=3, init="balanced_exact", scale=0.1, seed=0, det="positive"))
    tr = get_engine("gf-mp", digits=30, path="raw", estimate=False).run(problem, model, init, until_loss=1e-8,
                                                                         per_decade=1, wall_budget=120.0)
    assert tr.status is not Status.PRECISION_LOST, tr.message
    assert tr.points[-1].loss <= 1e-8 * (1 + 1e-6)
    with mpmath.workdps(80):
        for p in tr.points:
            ratios = [abs(mpmath.mpf(d)) / float(np.sum(F * F)) for d, F in zip(p.hp["factor_dets"], p.factors)]
            assert min(ratios) >= 1e-10
            assert [mpmath.mpf(d) > 0 for d in p.hp["factor_dets"]] == \
                [mpmath.mpf(d) > 0 for d in tr.points[0].hp["factor_dets"]]
        W = mpmath.matrix(tr.points[-1].hp["product_work"])
        assert abs(mpmath.det(W)) / mpmath.mnorm(W, "f") ** 2 < 1e-20      # where the old stop had fired


def _system(digits, tol=None, L=2):
    return RawSystem(rc20(), DeepMatrix(L, (2, 2)), make_context(digits + 10), digits, per_factor_tol=tol)


def _state(rs, factors):
    return rs.state([np.array(F, dtype=float) for F in factors])


def test_the_loss_guard_fires_where_the_norm_over_the_residual_exceeds_what_the_digits_resolve():
    """RC20's ``W = [[X, 1], [1, r]]`` (``W_1 = W``, ``W_2 = I``): the residual ``r`` is formed from entries of size
    ``X``, so the loss ``r^2 / 2`` carries rounding ~``u X r`` (``u = 10^-30`` at 20 digits): relative ~``11 u X / r``
    against ``10^-20``. ``X = 1e4, r = 1e-8`` (1e12 -> 1e-17) is refused, with every factor det resolved (``1 /
    X^2 = 1e-8`` against the floor 1e-10); ``r = 3e-4`` (3e7 -> 4e-22; det W = 2) is kept. A bound relative to the loss alone
    (the engine's old ``loss 10^-digits`` floor) would keep both."""
    rs = _system(20, tol=1e-20)
    assert abs(float(rs.factor_floor) - 1e-10) < 1e-25
    bad = _state(rs, [[[1e4, 1.0], [1.0, 1e-8]], np.eye(2)])
    why = rs.precision_problem(bad)
    assert why is not None and why.startswith("the loss"), why
    assert all(q >= rs.factor_floor for q in rs.det_ratios(bad))
    # |r| perr with perr = 2 (L - 1) 2 u ||W_1|| ||W_2|| = 4e-30 * 1e4 * sqrt(2): 5.7e-34, 1.1e-17 of the loss
    assert 5.6e-34 < rs.loss_rounding(bad) < 5.7e-34
    good = _state(rs, [[[1e4, 1.0], [1.0, 3e-4]], np.eye(2)])
    assert rs.precision_problem(good) is None and rs.loss_rounding(good) < 1e-21 * rs.res.loss(rs.entries(good))


def test_a_factor_det_sign_change_from_inside_the_band_stops_and_one_from_far_above_is_kept():
    """30 digits, tol 1e-12: factor floor ``sqrt(tol) = 1e-6``, band for a sign change ``sqrt(1e-6) = 1e-3``. A
    step from ``det W_j / ||W_j||^2 = 1e-4`` to ``-1e-4`` jumped over the band (refused); from 0.4 to -0.4 it
    crossed at a finite rate (kept). Watching ``det W`` alone (the end-to-end stop, the wrong version here)
    misses the first: both factors flipping keeps ``det W``'s sign."""
    rs = _system(30, tol=1e-12)
    small = rs.det_watch(_state(rs, [np.diag([1.0, 1e-4]), np.diag([1.0, 1e-4])]))
    flipped = rs.det_watch(_state(rs, [np.diag([1.0, -1e-4]), np.diag([1.0, -1e-4])]))
    why = rs.sign_jump(small, flipped)
    assert why is not None and why.startswith("det W_1 changed sign within one step"), why
    assert rs.sign_jump(small, small) is None
    big = rs.det_watch(_state(rs, [np.diag([1.0, 0.5]), np.diag([1.0, 0.5])]))
    assert rs.sign_jump(big, rs.det_watch(_state(rs, [np.diag([1.0, -0.5]), np.diag([1.0, -0.5])]))) is None
