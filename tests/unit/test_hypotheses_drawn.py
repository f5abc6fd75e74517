"""Every declared hypothesis of the RC20, ACH18 and ACHL19 claims changes what is drawn when it is dropped (issue 11).

``verify ablate ID`` reruns a claim once per hypothesis dropped and reports the hypotheses it could not show
necessary. That report is evidence only if dropping the hypothesis lets the strategy draw settings the theorem
excludes; a strategy that ignores ``dropped`` would make ``ablate`` call any hypothesis unnecessary. Here, for each
claim and each active hypothesis, the strategy with and without it is drawn with the same Hypothesis seed (so two
identical strategies give identical draws), and some drawn value must fall outside what the full strategy draws:
a string, bool or None it never draws, or a number outside the range of its draws. (The rmc21 and gunasekar17
claims are another engineer's, issue 11 part b.)
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings

from properties import CLAIMS

PREFIXES = ("rc20.", "ach18.", "achl19.")
N = 60

#: hypotheses the *check* enforces rather than the strategy: the exact static parts draw rational matrices of
#: either det sign and prove the statement symbolically under the hypothesis; dropped, only the exact evaluation at
#: the drawn matrix remains. For these a registered negative control that drops the hypothesis must exist (it is
#: expected refuted, and tests/claims runs it under ci), so ablate shows them necessary by a counterexample.
CHECK_ENFORCED = {("rc20.thm1.static", "det_positive"), ("rc20.thm2.static", "det_matches")}


def _cases():
    return [(c.id, h.name) for c in CLAIMS.values() if c.id.startswith(PREFIXES) for h in c.active_hypotheses]


def _draws(strategy, n: int = N) -> list[dict]:
    out: list[dict] = []

    @seed(20261130)
    @settings(max_examples=n, database=None, phases=[Phase.generate], deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def collect(inputs):
        out.append(inputs)

    collect()
    return out


def _leaves(value, path=""):
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _leaves(v, f"{path}.{k}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from _leaves(v, f"{path}[{i}]")
    else:
        yield path, value


def _outside(full: list[dict], dropped: list[dict]) -> list[str]:
    """The drawn leaves of ``dropped`` that the ``full`` draws never reach."""
    cats: dict[str, set] = {}
    nums: dict[str, list[float]] = {}
    for d in full:
        for path, v in _leaves(d):
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                nums.setdefault(path, []).append(float(v))
            else:
                cats.setdefault(path, set()).add(json.dumps(v))
    found = []
    for d in dropped:
        for path, v in _leaves(d):
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                seen = nums.get(path)
                if seen is None or not (min(seen) - 1e-12 * abs(min(seen)) <= v <= max(seen) + 1e-12 * abs(max(seen))):
                    found.append(f"{path}={v!r}")
            elif json.dumps(v) not in cats.get(path, set()):
                found.append(f"{path}={v!r}")
    return found


def test_cases_cover_the_claims():
    ids = {cid for cid, _ in _cases()}
    assert {"rc20.lemma.det_sign", "rc20.thm1.unobserved_entry", "rc20.prop.norm_minimizers_bounded",
            "achl19.thm.commuting", "ach18.conservation"} <= ids


def test_identical_strategies_draw_nothing_outside():
    """The comparison cannot pass by chance: the same strategy twice (same seed) reaches nothing new."""
    c = CLAIMS["rc20.thm1.unobserved_entry"]
    assert _outside(_draws(c.strategy(frozenset())), _draws(c.strategy(frozenset()))) == []


@pytest.mark.parametrize("cid,hyp", _cases())
def test_dropping_a_hypothesis_changes_the_draws(cid, hyp):
    c = CLAIMS[cid]
    if (cid, hyp) in CHECK_ENFORCED:
        from properties.api import Expectation

        controls = [n for n in CLAIMS.values() if n.parent == cid and hyp in n.dropped
                    and n.expectation is Expectation.REFUTED]
        assert controls, f"{cid}: {hyp!r} is enforced by the check but no negative control drops it"
        return
    full = _draws(c.strategy(c.dropped))
    without = _draws(c.strategy(c.dropped | {hyp}))
    assert _outside(full, without), f"{cid}: dropping {hyp!r} draws nothing the full strategy does not"
