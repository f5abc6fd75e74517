"""The high-precision gradient-flow engine ``gf-mp`` (Radau IIA in a private mpmath context).

Tolerances: where a reference exists (the float64 ``gf`` engine where it is reliable, or a gf-mp run with more
digits and a tighter tolerance), the difference must lie within the sum of the two engines' own error estimates
(``product_err``); a too-small estimate fails these tests just as a wrong trajectory does. The runs are kept at
moderate losses and loose tolerances so that the file runs in well under a minute, except one run at 30 digits
down to loss 1e-30 (~12 s); the 40-digit runs to loss 1e-30 are measured by ``verify bench --only gf-mp``.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import mpmath
import pytest

from models import inits
from models.engines import get_engine
from models.errors import InvalidInput
from models.factorizations import DeepMatrix
from models.problems import rc20
from models.trajectory import Status


@pytest.mark.parametrize("options", [{"digits": 5}, {"digits": "40"}, {"path": "diagonal"}, {"tol": 1.0},
                                     {"max_steps": 0}, {"estimate": "yes"}, {"stages": 1}, {"stages": 3.5}])
def test_bad_options_raise(options):
    with pytest.raises(InvalidInput):
        get_engine("gf-mp", **options)


@pytest.fixture(scope="module")
def depth3():
    model = DeepMatrix(3, (2, 2))
    init = inits.balanced(model, 0.5, seed=0, det="positive")
    before = mpmath.mp.prec
    tr = get_engine("gf-mp", digits=20, tol=1e-8).run(rc20(), model, init, until_loss=1e-3, per_decade=1)
    return model, init, tr, before


def test_global_precision_unchanged_and_hp_recorded(depth3):
    _, _, tr, before = depth3
    assert mpmath.mp.prec == before
    assert tr.status is Status.COMPLETED
    fin = tr.final
    assert fin.hp["digits"] == 20 and set(fin.hp) >= {"loss", "product", "t"}
    # a loss level is landed on from below, within LAND_TIGHT = 1e-3 tolerances (relative): here 1e-11
    loss = mpmath.mpf(fin.hp["loss"])
    assert 1e-3 * (1 - 1e-11) <= loss <= 1e-3
    assert fin.det_sign == 1


def test_chart_agrees_with_gf(depth3):
    model, init, tr, _ = depth3
    ref = get_engine("gf", rtol=1e-12).run(rc20(), model, init, until_loss=1e-3, per_decade=1)
    a, b = tr.final, ref.final
    assert abs(a.loss - b.loss) <= 1e-12
    assert abs(a.product[0, 0] - b.product[0, 0]) <= a.product_err + b.product_err
    # Theorem 1's bound (catalog RC20-Thm1): |w11| >= (1 - s)^2 / s
    s = math.sqrt(2 * a.loss)
    assert abs(a.product[0, 0]) * s >= (1 - s) ** 2


def test_error_estimate_bounds_difference_to_a_finer_run():
    # at an explicit time (a step end exactly: loss levels are landed on only to LAND_TIGHT * tol, so two runs'
    # level records sit at slightly different times), the estimate bounds the distance to a far finer run
    model = DeepMatrix(3, (2, 2))
    init = inits.balanced(model, 0.5, seed=0, det="positive")
    a = get_engine("gf-mp", digits=20, tol=1e-8).run(rc20(), model, init, t_max=500.0).final
    b = get_engine("gf-mp", digits=30, tol=1e-13, estimate=False).run(rc20(), model, init, t_max=500.0).final
    assert a.t == b.t == 500.0
    with mpmath.workdps(40):      # compare the 20- and 30-digit records at full length
        diff = abs(mpmath.mpf(a.hp["product"][0][0]) - mpmath.mpf(b.hp["product"][0][0]))
    assert 0 < diff <= a.product_err
    assert a.product_err / abs(a.product[0, 0]) < 1e-6     # and the estimate is not vacuous


def test_reaches_loss_1e30_with_18_digits_and_theorem1_bound():
    # catalog RC20-Thm1: |w11| s >= (1 - s)^2 with s = sqrt(2 loss); at loss 1e-30 the relative margin is ~2s ~
    # 2.8e-15, which float64 cannot resolve; tol 1e-20 (30 digits) leaves w11 with 18+ correct digits
    model = DeepMatrix(4, (2, 2))
    init = inits.balanced(model, 0.1, seed=0, det="positive")
    tr = get_engine("gf-mp", digits=30).run(rc20(), model, init, until_loss=1e-30, per_decade=1)
    assert tr.status is Status.COMPLETED and tr.stats["loose_landings"] == 0
    fin = tr.final
    assert fin.det_sign == 1
    with mpmath.workdps(40):
        loss, w11 = mpmath.mpf(fin.hp["loss"]), abs(mpmath.mpf(fin.hp["product"][0][0]))
        level = mpmath.mpf(1e-30)                            # the float the engine was given, exactly
        assert level * (1 - mpmath.mpf(1e-23)) <= loss <= level   # within LAND_TIGHT * tol = 1e-23 (relative)
        assert fin.product_err / w11 < 1e-18
        s = mpmath.sqrt(2 * loss)
        margin = w11 * s - (1 - s) ** 2
        assert margin - fin.product_err * s > 0 and margin < 4 * s   # the bound holds, and is tight to O(s)


def test_threads_at_different_precisions_match_serial_runs():
    # FLINT's precision is global: two threads (as in a dask worker) must not compute at each other's precision
    model = DeepMatrix(3, (2, 2))
    init = inits.balanced(model, 0.5, seed=0, det="positive")

    def run(digits):
        tr = get_engine("gf-mp", digits=digits, tol=1e-8, estimate=False).run(rc20(), model, init, until_loss=1e-2,
                                                                              per_decade=1)
        return tr.final.hp["product"]

    serial = [run(20), run(60)]
    with ThreadPoolExecutor(2) as pool:
        threaded = list(pool.map(run, [20, 60]))
    assert threaded == serial


def test_raw_path_agrees_with_gf_raw():
    model = DeepMatrix(2, (2, 2))
    init = inits.gaussian(model, 0.5, seed=1, det="positive")
    tr = get_engine("gf-mp", digits=20, tol=1e-8, path="raw").run(rc20(), model, init, until_loss=0.3, per_decade=1)
    ref = get_engine("gf", path="raw").run(rc20(), model, init, until_loss=0.3, per_decade=1)
    assert tr.status is Status.COMPLETED and tr.stats["path"] == "raw"
    a, b = tr.final, ref.final
    assert abs(a.product[0, 0] - b.product[0, 0]) <= a.product_err + b.product_err
    assert a.det_sign == b.det_sign
