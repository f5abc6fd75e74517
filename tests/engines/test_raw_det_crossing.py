"""The raw paths of gf-mp and gf never record a det sign they cannot resolve (issue 11).

At depth 2 from a balanced start the det of W decays through every fixed relative band (det W / ||W||_F^2 is
7e-20 at loss 1e-2 from scale 0.1). gf-mp's raw path stops with ``precision_lost`` when a step *ends* inside the
band ``|det W| / ||W||^n < 10^(10 - digits)``; with 30 digits and tol 1e-6 a step jumped over the band, the det
came out negative, and the run went on to loss 1e-6 recording the flipped sign at 16 points ("completed" apart from
its estimate), a false counterexample to RC20's det-sign lemma. A sign change between accepted steps now stops
the run the same way (the det passed through the band). float64 ``gf`` had the same hole: depth 2, scale 0.5,
seed 1 recorded det < 0 from loss 1e-2 on (the step jumped from sigma_min/sigma_max = 2.8e-13 over the floor
2.2e-13). A det that crosses 0 at a finite rate from far above the band (unbalanced factors) is still recorded.
On ``path="raw"`` gf-mp now watches every factor det against ``max(10^(10 - digits), sqrt(tol))`` (rawstop; see
``RawSystem.precision_problem`` and tests/engines/test_raw_stop.py), which stops the first case earlier still.
About 4 s."""

from __future__ import annotations

from models import inits
from models.engines import get_engine
from models.factorizations import DeepMatrix
from models.problems import rc20
from models.trajectory import Status


def test_a_det_crossing_inside_one_step_is_precision_lost():
    """Since the raw path watches every factor det against ``max(10^(10 - digits), sqrt(tol))`` (rawstop), this
    run stops on the factor floor (1e-3 at tol 1e-6) before factor 1's det reaches the band where it flipped
    (|det W_1| ~ 7e-7 near loss 1e-2, from the float64 init's imbalance). The wrong version, the factor floor
    without ``sqrt(tol)`` (1e-20 at 30 digits), runs on to loss 1e-6 and records det W_1 = +0.99 against det W_2
    = -0.99 with an error estimate of 1e-5 (the reference run flips the same way): a resolved false
    counterexample to the factor-det lemma."""
    import mpmath

    model = DeepMatrix(2, (2, 2))
    init = inits.balanced(model, 0.1, seed=0, det="positive")
    tr = get_engine("gf-mp", digits=30, tol=1e-6, path="raw", estimate=False).run(
        rc20(), model, init, until_loss=1e-6, per_decade=4, wall_budget=60.0)
    assert tr.status is Status.PRECISION_LOST and "|det W_1| / ||W_1||^n" in tr.message, tr.message
    assert len(tr.points) >= 2 and all(p.det_sign == 1 for p in tr.points)
    sign0 = [mpmath.mpf(d) > 0 for d in tr.points[0].hp["factor_dets"]]
    assert all([mpmath.mpf(d) > 0 for d in p.hp["factor_dets"]] == sign0 for p in tr.points)
    assert tr.points[-1].loss > 1e-2      # it stopped where the factor dets left what tol 1e-6 resolves


def test_gf_raw_crossing_inside_one_step_is_precision_lost():
    model = DeepMatrix(2, (2, 2))
    tr = get_engine("gf", path="raw").run(rc20(), model, inits.balanced(model, 0.5, seed=1, det="positive"),
                                          until_loss=1e-10, per_decade=2, wall_budget=60.0)
    assert tr.status is Status.PRECISION_LOST and "changed within one step" in tr.message
    assert len(tr.points) >= 4 and all(p.det_sign == 1 for p in tr.points)


def test_a_finite_rate_crossing_of_unbalanced_factors_is_kept():
    model = DeepMatrix(2, (2, 2))
    tr = get_engine("gf", path="raw").run(rc20(), model, inits.gaussian(model, 0.5, seed=1, det="positive"),
                                          until_loss=1e-6, per_decade=2, wall_budget=60.0)
    assert tr.status is Status.COMPLETED
    assert tr.points[0].det_sign == 1 and tr.points[-1].det_sign == -1
