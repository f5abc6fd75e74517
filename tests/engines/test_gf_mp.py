"""The high-precision gradient-flow engine ``gf-mp``: option checking and scoped precision (interim)."""

from __future__ import annotations

import mpmath
import pytest

from models import inits
from models.engines import get_engine
from models.errors import InvalidInput
from models.factorizations import DeepMatrix
from models.problems import rc20


@pytest.mark.parametrize("options", [{"digits": 5}, {"digits": "40"}, {"path": "diagonal"}, {"tol": 1.0},
                                     {"max_steps": 0}, {"estimate": "yes"}])
def test_bad_options_raise(options):
    with pytest.raises(InvalidInput):
        get_engine("gf-mp", **options)


def test_short_run_leaves_global_precision_alone():
    before = mpmath.mp.dps
    model = DeepMatrix(3, (2, 2))
    init = inits.balanced(model, 0.1, seed=0, det="positive")
    tr = get_engine("gf-mp", digits=30, estimate=False, max_steps=3).run(rc20(), model, init, until_loss=1e-3)
    assert mpmath.mp.dps == before
    assert tr.points and tr.points[0].hp is not None
