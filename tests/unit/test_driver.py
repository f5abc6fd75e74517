"""The Hypothesis driver (verify.driver): exact JSON round trip of inputs, replay, determinism under a seed, and
the verdicts for violated, raising and inconclusive checks.

The claims here are built with the public API (:class:`properties.api.Claim`) and handed to
:func:`verify.driver.run_claim` directly: they are never registered, so the global registry is untouched.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from properties.api import CLAIMS, Claim, Expectation, Kind, Outcome
from verify.driver import claim_seed, inputs_from_json, inputs_to_json, replay, run_claim
from verify.records import VerdictStatus

UNIT = st.fixed_dictionaries({"x": st.floats(0.0, 1.0, allow_nan=False, allow_subnormal=False)})


def _claim(id, check, *, strategy=UNIT, expectation=Expectation.HOLDS, hypotheses=()):
    return Claim(id=id, title=id, source="test", statement="test", kind=Kind.EXACT, expectation=expectation,
                 strategy=lambda dropped: strategy, check=check, hypotheses=hypotheses, cost=0.01)


def _below_half(inputs, dropped):
    return Outcome(0.5 - inputs["x"], engine="toy")


# ----------------------------------------------------------------------------------------------------------------
# inputs_to_json / inputs_from_json
# ----------------------------------------------------------------------------------------------------------------
AWKWARD_FLOATS = [0.1, 1 / 3, -0.0, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, 10.0 ** -7.3,
                  math.pi * 1e15, -1e-300, float(np.nextafter(1.0, 2.0))]


@pytest.mark.parametrize("x", AWKWARD_FLOATS, ids=repr)
def test_float_round_trip_is_bit_exact(x):
    back = inputs_from_json(json.loads(json.dumps(inputs_to_json({"x": x}))))["x"]
    assert isinstance(back, float)
    assert back.hex() == x.hex()           # distinguishes -0.0 from 0.0 too
    assert inputs_to_json(x)["repr"] == repr(x)


@given(st.recursive(
    st.one_of(st.floats(allow_nan=False), st.integers(), st.booleans(), st.none(), st.text(max_size=5)),
    lambda kids: st.one_of(st.lists(kids, max_size=3), st.dictionaries(st.text(max_size=4), kids, max_size=3)),
    max_leaves=12))
@settings(max_examples=60, deadline=None)
def test_nested_round_trip(value):
    back = inputs_from_json(json.loads(json.dumps(inputs_to_json(value))))
    assert json.dumps(inputs_to_json(back), sort_keys=True) == json.dumps(inputs_to_json(value), sort_keys=True)
    assert type(back) is type(value)


def test_numpy_values_and_tuples_become_plain():
    value = {"a": np.float64(0.1), "b": np.int64(3), "c": np.bool_(True), "d": np.array([[1.5, 2.0]]), "e": (1, 2.5)}
    back = inputs_from_json(json.loads(json.dumps(inputs_to_json(value))))
    assert back == {"a": 0.1, "b": 3, "c": True, "d": [[1.5, 2.0]], "e": [1, 2.5]}
    assert type(back["a"]) is float and type(back["b"]) is int and type(back["c"]) is bool


def test_plain_json_numbers_are_accepted_and_unknown_types_rejected():
    assert inputs_from_json({"x": 0.25, "n": [1, 2]}) == {"x": 0.25, "n": [1, 2]}
    with pytest.raises(TypeError):
        inputs_to_json({"x": object()})


def test_nan_and_infinity_round_trip():
    back = inputs_from_json(json.loads(json.dumps(inputs_to_json([math.inf, -math.inf, math.nan]))))
    assert back[0] == math.inf and back[1] == -math.inf and math.isnan(back[2])


# ----------------------------------------------------------------------------------------------------------------
# Violations, shrinking, replay, determinism
# ----------------------------------------------------------------------------------------------------------------
def test_violation_is_shrunk_and_replays():
    c = _claim("t.below_half", _below_half)
    v = run_claim(c, "quick", seed=0)
    assert v.status is VerdictStatus.VIOLATED and not v.met
    cx = v.counterexample
    x = inputs_from_json(cx["inputs"])["x"]
    assert x == 1.0   # Hypothesis shrinks floats toward simple values: 1.0 is the simplest x with 1/2 - x < 0
    assert cx["claim_id"] == "t.below_half" and cx["outcome"]["status"] == "violated"
    again = replay(c, json.loads(json.dumps(cx["inputs"])))
    assert again.status == "violated" and again.margin == 0.5 - x


def test_a_directory_database_changes_nothing_and_stays_per_claim(tmp_path):
    """Hypothesis neither reads nor writes an example database for a test with an explicit ``@seed`` (6.170), so
    a profile's directory database changes no verdict; whatever a Hypothesis might write lies under the claim's
    own directory (the claims share the driver's property function, hence one database key)."""
    import dataclasses

    from verify.profiles import get_profile
    prof = dataclasses.replace(get_profile("quick"), database=str(tmp_path / "db"))
    c = _claim("t.below_half", _below_half)
    with_db, without = run_claim(c, prof, seed=0), run_claim(c, "quick", seed=0)
    assert with_db.status is without.status is VerdictStatus.VIOLATED
    assert with_db.counterexample["inputs"] == without.counterexample["inputs"]
    written = [f for f in (tmp_path / "db").rglob("*") if f.is_file()] if (tmp_path / "db").exists() else []
    assert all(f.relative_to(tmp_path / "db").parts[0] == "t.below_half" for f in written)


def test_refuted_expectation_is_met_by_a_violation():
    c = _claim("t.conjecture", _below_half, expectation=Expectation.REFUTED)
    v = run_claim(c, "quick", seed=0)
    assert v.status is VerdictStatus.VIOLATED and v.met and v.expectation == "refuted"


def test_holds():
    c = _claim("t.holds", lambda inputs, dropped: Outcome(1.0 + inputs["x"], engine="toy"))
    v = run_claim(c, "quick", seed=0)
    assert v.status is VerdictStatus.HOLDS and v.met and v.counterexample is None
    assert v.examples >= 2 and v.smallest_margin == pytest.approx(1.0, abs=0.5)
    assert v.engine == "toy"


def test_declared_examples_replace_the_profile_rule_under_that_profile_only():
    """``@claim(..., examples={"thorough": n})``: exactly n examples under thorough, however small the cost (the
    rule budget / cost would give 10,000 here, its minimum 50); other profiles keep budget / cost."""
    from dataclasses import replace

    from verify.profiles import PROFILES, Profile

    c = replace(_claim("t.declared", lambda inputs, dropped: Outcome(1.0 + inputs["x"], engine="toy")),
                examples=(("thorough", 3),))
    assert PROFILES["thorough"].examples_of(c) == 3 and PROFILES["ci"].examples_of(c) == 100
    assert PROFILES["quick"].examples_of(c) == PROFILES["quick"].examples_for(c.cost) == 25
    # the driver uses it: a cheap profile named thorough (no explain phase, no database) runs 3 examples
    cheap = Profile("thorough", budget=7.0, min_examples=2, max_examples=25, shrink_budget=8.0, hard_limit=40.0,
                    claim_timeout=300.0)
    v = run_claim(c, cheap, seed=0)
    assert v.status is VerdictStatus.HOLDS and v.examples == 3 and v.extra["max_examples"] == 3
    with pytest.raises(Exception, match="examples"):
        replace(c, examples=(("thorough", 0),))


def test_same_seed_same_search_and_counterexample():
    seen: dict[int, list] = {0: [], 1: []}

    def check(inputs, dropped, log=None):
        return Outcome(0.9 - inputs["x"] - 0.05 * inputs["y"], engine="toy")

    strategy = st.fixed_dictionaries({"x": st.floats(0.0, 1.0, allow_nan=False, allow_subnormal=False),
                                      "y": st.integers(0, 10)})
    verdicts = []
    for run in (0, 1):
        def logged(inputs, dropped, run=run):
            seen[run].append(json.dumps(inputs_to_json(inputs), sort_keys=True))
            return check(inputs, dropped)
        verdicts.append(run_claim(_claim("t.det", logged, strategy=strategy), "quick", seed=7))
    assert seen[0] == seen[1]
    a, b = verdicts
    assert a.counterexample["inputs"] == b.counterexample["inputs"]
    assert a.examples == b.examples and a.smallest_margin == b.smallest_margin
    assert a.extra["hypothesis_seed"] == b.extra["hypothesis_seed"] == claim_seed(7, "t.det")


def test_claim_seed_depends_on_seed_and_id():
    assert claim_seed(0, "a.b") == claim_seed(0, "a.b")
    assert len({claim_seed(0, "a.b"), claim_seed(1, "a.b"), claim_seed(0, "a.c")}) == 3
    assert 0 <= claim_seed(123, "x") < 2**63


# ----------------------------------------------------------------------------------------------------------------
# Errors and inconclusive outcomes
# ----------------------------------------------------------------------------------------------------------------
def test_raising_check_is_an_error_verdict_with_its_inputs():
    def check(inputs, dropped):
        if inputs["x"] > 0.25:
            raise FloatingPointError("engine diverged")
        return Outcome(1.0, engine="toy")

    v = run_claim(_claim("t.raises", check), "quick", seed=0)
    assert v.status is VerdictStatus.ERROR and not v.met
    assert v.counterexample["kind"] == "error"
    assert inputs_from_json(v.counterexample["inputs"])["x"] > 0.25
    assert "FloatingPointError: engine diverged" in v.counterexample["error"]
    assert "FloatingPointError" in v.traceback
    assert v.extra["errors"] >= 1


def test_check_returning_a_non_outcome_is_an_error():
    v = run_claim(_claim("t.bad_return", lambda inputs, dropped: 1.0), "quick", seed=0)
    assert v.status is VerdictStatus.ERROR
    assert "not an Outcome" in v.counterexample["error"]


def test_violation_wins_over_errors():
    def check(inputs, dropped):
        if inputs["x"] < 0.1:
            raise RuntimeError("boom")
        return Outcome(0.5 - inputs["x"], engine="toy")

    v = run_claim(_claim("t.both", check), "quick", seed=0)
    assert v.status is VerdictStatus.VIOLATED
    assert any("raised" in n for n in v.notes)


def test_margin_within_error_is_inconclusive_never_a_pass():
    """margin 1e-3 with error 1e-2 on some inputs: neither holds nor violated."""
    def check(inputs, dropped):
        if inputs["x"] > 0.5:
            return Outcome(1e-3, error=1e-2, engine="toy")
        return Outcome(1.0, engine="toy")

    v = run_claim(_claim("t.inconclusive", check), "quick", seed=0)
    assert v.status is VerdictStatus.INCONCLUSIVE and not v.met
    assert v.inconclusive >= 1
    assert any("within their error" in n for n in v.notes)


def test_outcome_status_boundaries():
    assert Outcome(1.0, 0.5).status == "holds"
    assert Outcome(-1.0, 0.5).status == "violated"
    assert Outcome(0.5, 0.5).status == "inconclusive"
    assert Outcome(-0.5, 0.5).status == "inconclusive"
    assert Outcome(0.0).status == "inconclusive"
    with pytest.raises(ValueError):
        Outcome(math.nan)
    with pytest.raises(ValueError):
        Outcome(1.0, error=-1.0)


def test_unknown_claim_id_and_profile_are_invalid_input():
    from verify.driver import get_claim
    with pytest.raises(ValueError):
        get_claim("no.such.claim")
    with pytest.raises(ValueError):
        run_claim(_claim("t.p", _below_half), "nope")


def test_driver_never_registers_the_claims_it_runs():
    before = set(CLAIMS)
    run_claim(_claim("t.unregistered", lambda inputs, dropped: Outcome(1.0)), "quick", seed=0)
    assert set(CLAIMS) == before
