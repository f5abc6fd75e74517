"""A deliberately wrong claim is refuted, with a shrunk counterexample that replays.

The claim is rc20.thm1.unobserved_entry with its bound made 10% too strong, |w11| >= 1.1 (1-s)^2/s. Along
balanced gradient flow |w11| s -> 1 as the loss falls (catalog RC20-Exp-MF: |w11| lies within a factor ~1.1 of
1/s), so the stronger bound fails once s = sqrt(2 loss) is small. It is written here the way a researcher writes
a claim, with the public API only (:class:`properties.Claim`, :func:`properties.escalate`, ...), declared to
*hold*, and handed to the driver directly: it is never put into the registry.
"""

from __future__ import annotations

import json
import math

import pytest

from properties import CLAIMS, Claim, Expectation, Kind, combine, escalate, point_outcome, rc20_setting
from verify.driver import inputs_from_json, replay, run_claim
from verify.records import VerdictStatus

FACTOR = 1.1
ORIGINAL = "rc20.thm1.unobserved_entry"


def _run(inputs):
    def run(engine):
        problem, model, init = rc20_setting(inputs)
        return engine.run(problem, model, init, until_loss=inputs["until_loss"], per_decade=4, wall_budget=60.0)
    return run


def _evaluate(traj):
    outs = []
    for k, p in enumerate(traj.points):
        s = math.sqrt(2.0 * max(p.loss, 0.0))
        if s >= 1.0:
            continue
        bound = FACTOR * (1.0 - s) ** 2 / s
        err = p.product_err + FACTOR * (1.0 - s * s) / s ** 3 * p.loss_err
        outs.append(point_outcome(abs(float(p.product[0, 0])) - bound, err, bound, point=k, loss=p.loss,
                                  w11=float(p.product[0, 0]), bound=bound))
    return combine(outs)


def too_strong(inputs, dropped):
    """rc20.thm1.unobserved_entry's check with the bound multiplied by 1.1."""
    return escalate(_run(inputs), _evaluate)


def _wrong_claim() -> Claim:
    original = CLAIMS[ORIGINAL]
    return Claim(id="test.wrong.unobserved_entry_times_1_1", title="|w11| >= 1.1 (1-s)^2/s (10% too strong)",
                 source="deliberately wrong variant of " + ORIGINAL, statement="|w11(t)| >= 1.1 (1-s)^2/s",
                 kind=Kind.TRAJECTORY, expectation=Expectation.HOLDS, strategy=original.strategy,
                 check=too_strong, hypotheses=original.hypotheses, cost=original.cost)


def _is_power_of_ten(x: float) -> bool:
    e = math.log10(x)
    return abs(e - round(e)) < 1e-12


@pytest.fixture(scope="module")
def verdict():
    return run_claim(_wrong_claim(), "ci", seed=0)


@pytest.mark.slow
def test_wrong_claim_is_refuted(verdict):
    assert ORIGINAL in CLAIMS and "test.wrong.unobserved_entry_times_1_1" not in CLAIMS
    assert verdict.status is VerdictStatus.VIOLATED, (verdict.notes, verdict.counterexample)
    assert not verdict.met          # declared to hold: the report would flag it
    assert verdict.counterexample is not None
    assert verdict.counterexample["outcome"]["status"] == "violated"
    assert verdict.smallest_margin is not None and verdict.smallest_margin < 0


@pytest.mark.slow
def test_counterexample_is_shrunk(verdict):
    """Hypothesis shrinks every knob toward its simplest value: the smallest depth, seed 0, and the scale and
    target loss at round powers of ten (exponents shrink toward the end of their range nearest 0)."""
    inputs = inputs_from_json(verdict.counterexample["inputs"])
    assert inputs["depth"] == 2
    assert inputs["seed"] == 0
    assert inputs["init"] == "balanced" and inputs["det"] == "positive"   # the theorem's hypotheses are kept
    assert _is_power_of_ten(inputs["scale"]), inputs
    assert _is_power_of_ten(inputs["until_loss"]), inputs
    detail = verdict.counterexample["outcome"]["detail"]
    # the violation is the 10%: the true bound still holds at the violating point
    assert detail["bound"] / FACTOR <= abs(detail["w11"]) < detail["bound"]


@pytest.mark.slow
def test_counterexample_replays_and_the_true_claim_holds_there(verdict):
    stored = json.loads(json.dumps(verdict.counterexample["inputs"]))
    again = replay(_wrong_claim(), stored)
    assert again.status == "violated"
    assert again.margin == verdict.counterexample["outcome"]["margin"]
    assert replay(CLAIMS[ORIGINAL], stored).status == "holds"
