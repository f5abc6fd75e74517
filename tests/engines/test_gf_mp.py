"""The high-precision gradient-flow engine ``gf-mp`` (Radau IIA in a private mpmath context).

Tolerances: where a reference exists (the float64 ``gf`` engine where it is reliable, or a gf-mp run with more
digits and a tighter tolerance), the difference must lie within the sum of the two engines' own error estimates
(``product_err``); a too-small estimate fails these tests just as a wrong trajectory does. The runs are kept at
moderate losses and loose tolerances so that the file runs in well under a minute; the loss-1e-30 runs are
measured by ``verify bench --only gf-mp``.
"""

from __future__ import annotations

import math

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
    assert abs(float(fin.hp["loss"]) - 1e-3) <= 1e-9
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


def test_error_estimate_bounds_difference_to_a_finer_run(depth3):
    model, init, tr, _ = depth3
    fine = get_engine("gf-mp", digits=30, tol=1e-13, estimate=False).run(rc20(), model, init, until_loss=1e-3,
                                                                        per_decade=1)
    a, b = tr.final, fine.final
    w_a, w_b = mpmath.mpf(a.hp["product"][0][0]), mpmath.mpf(b.hp["product"][0][0])
    assert 0 < abs(w_a - w_b) <= a.product_err
    assert a.product_err / abs(float(w_a)) < 1e-6     # and the estimate is not vacuous


def test_raw_path_agrees_with_gf_raw():
    model = DeepMatrix(2, (2, 2))
    init = inits.gaussian(model, 0.5, seed=1, det="positive")
    tr = get_engine("gf-mp", digits=20, tol=1e-8, path="raw").run(rc20(), model, init, until_loss=0.3, per_decade=1)
    ref = get_engine("gf", path="raw").run(rc20(), model, init, until_loss=0.3, per_decade=1)
    assert tr.status is Status.COMPLETED and tr.stats["main"]["path"] == "raw"
    a, b = tr.final, ref.final
    assert abs(a.product[0, 0] - b.product[0, 0]) <= a.product_err + b.product_err
    assert a.det_sign == b.det_sign
