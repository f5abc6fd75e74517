"""A missing error estimate is infinite, never zero (issue 11): the engines mark points without a companion or
reference run with ``loss_err = product_err = inf``, and :func:`properties.escalate` never returns a verdict
decided on such a run."""

import math

import pytest

from models import inits
from models.engines import get_engine
from models.engines import gf as gf_module
from models.errors import EngineFailure
from models.factorizations import DeepMatrix
from models.problems import rc20
from models.trajectory import Status
from properties import Outcome, combine, escalate, point_outcome
from properties import error_unknown

MODEL = DeepMatrix(3, (2, 2))
INIT = inits.balanced(MODEL, 0.5, seed=0, det="positive")


def _all_unknown(tr):
    return all(math.isinf(p.loss_err) and math.isinf(p.product_err) for p in tr.points)


def test_gf_without_companion_has_infinite_errors():
    tr = get_engine("gf", loose=0).run(rc20(), MODEL, INIT, until_loss=1e-3)
    # it reached its end, but an unknown (infinite) error resolves nothing: not 'completed' (issue 15)
    assert tr.status is Status.INACCURATE and len(tr.points) > 3 and tr.final.loss <= 1e-3 * (1 + 1e-9)
    assert _all_unknown(tr) and math.isinf(tr.error_estimate)
    assert error_unknown(tr) == len(tr.points)
    # the default run estimates them (finite), so the infinity above is the missing companion, not the setting
    ok = get_engine("gf").run(rc20(), MODEL, INIT, until_loss=1e-3)
    assert error_unknown(ok) == 0 and math.isfinite(ok.error_estimate)


def test_gf_points_the_companion_did_not_reach_have_infinite_errors(monkeypatch):
    real_companion = gf_module.GradientFlow.companion

    def short_companion(self):
        c = real_companion(self)
        c.max_steps = 3            # the companion stops (budget) long before the main run's end
        return c

    monkeypatch.setattr(gf_module.GradientFlow, "companion", short_companion)
    tr = get_engine("gf").run(rc20(), MODEL, INIT, until_loss=1e-4)
    assert math.isfinite(tr.points[0].product_err)            # the start is matched
    assert math.isinf(tr.points[-1].product_err) and math.isinf(tr.points[-1].loss_err)
    assert math.isinf(tr.error_estimate) and "error_run_note" in tr.stats


def test_gf_estimates_errors_on_a_run_that_lost_precision():
    # depth 2 on the raw factors loses the det sign in float64 near loss 2e-2: the points it kept are evidence
    # (escalate judges them with accept_precision_loss), so they carry a real estimate, not zero
    m2 = DeepMatrix(2, (2, 2))
    tr = get_engine("gf", path="raw").run(rc20(), m2, inits.balanced(m2, 0.5, seed=0, det="positive"),
                                          until_loss=1e-12)
    assert tr.status is Status.PRECISION_LOST and len(tr.points) > 3
    assert all(p.product_err > 0 for p in tr.points[1:])
    assert sum(math.isfinite(p.product_err) for p in tr.points) >= len(tr.points) - 1


def test_gf_mp_without_reference_has_infinite_errors():
    tr = get_engine("gf-mp", digits=20, tol=1e-8, estimate=False).run(rc20(), MODEL, INIT, until_loss=1e-2,
                                                                        per_decade=1)
    assert tr.status is Status.INACCURATE and _all_unknown(tr) and math.isinf(tr.error_estimate)
    assert tr.final.loss <= 1e-2 * (1 + 1e-9)


def test_point_outcome_with_unknown_error_is_inconclusive():
    for err in (math.inf, math.nan):
        o = point_outcome(-5.0, err, 1.0)
        assert o.status == "inconclusive" and math.isinf(o.error)
    assert combine([point_outcome(1.0, 0.0, 1.0), point_outcome(1.0, math.inf, 1.0)]).status == "inconclusive"


@pytest.mark.parametrize("claimed", [5.0, -5.0])
def test_escalate_never_decides_on_unknown_error(claimed):
    def run(engine):
        return engine.run(rc20(), MODEL, INIT, until_loss=1e-3)

    # an evaluator that ignores the points' errors and "decides" with error 0 ...
    # the run without a companion is 'inaccurate' (its error is infinite), so it is no rung to stop on: the
    # ladder ends without a verdict, and the claim is an error, never holds or violated
    careless = lambda tr: Outcome(claimed, 0.0, {}, tr.engine)
    with pytest.raises(EngineFailure, match="without an error estimate"):
        escalate(run, careless, ladder=(("gf", {"loose": 0}),))
    # ... and one that uses them (infinite): no verdict either
    careful = lambda tr: combine(point_outcome(claimed, p.product_err, 1.0) for p in tr.points)
    with pytest.raises(EngineFailure, match="without an error estimate"):
        escalate(run, careful, ladder=(("gf", {"loose": 0}),))
    # the next level (with its companion) decides
    out = escalate(run, careless, ladder=(("gf", {"loose": 0}), ("gf", {})))
    assert out.status == ("holds" if claimed > 0 else "violated") and out.engine.startswith("gf")
