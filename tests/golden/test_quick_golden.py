"""Behaviour unchanged (issue 10): a representative subset of the built-in claims, rerun under the ``quick``
profile at seed 0, gives the summary stored in ``quick_summary.json`` (made by ``quick_golden.py`` on the code
before the refactor).

Compared: the verdict, whether it met its expectation, the example counts (holds, violations, errors,
inconclusive, skipped), the engines used, and the counterexample inputs, all exactly; the smallest normalized
margin and the evidence margin and error to a relative 1e-9. Two runs of the whole profile on the same code (one
with two spawned worker processes, one in a single process) gave bit-identical summaries, so 1e-9 only leaves
room for a refactor that reorders floating-point operations in the last bits, never for a changed decision.

The subset covers every engine and kind of evidence at about 40 s of one core: gf (``rc20.thm1.rank``, and the
refuted negative controls ``rc20.neg.det_negative`` and ``rc20.neg.unbalanced`` with their shrinking), gf-mp
(``rc20.cor.norms_diverge``), gd (``rc20.neg.large_step``), cp-fast (``rc20.exp.tensor_completion``), exact checks
(``rc20.thm2.static`` with sympy certificates, ``rc20.neg.static2_det_any`` in rationals, the Schatten minimizer,
the RMC21 component norms and CP-network identity through the tensor toolkit) and statistical tests
(``rmc21.low_tensor_rank`` holds, ``rmc21.neg.large_init`` refuted).
"""

from __future__ import annotations

import json
import math

import pytest

import quick_golden

SUBSET = (
    "rc20.thm1.rank", "rc20.neg.det_negative", "rc20.neg.unbalanced", "rc20.cor.norms_diverge",
    "rc20.neg.large_step", "rc20.exp.tensor_completion", "rc20.thm2.static", "rc20.neg.static2_det_any",
    "rc20.prop.schatten_minimizer", "rmc21.thm1.component_norms", "rmc21.cp_equals_network",
    "rmc21.low_tensor_rank", "rmc21.neg.large_init",
)
REL = 1e-9
NUMBERS = ("smallest_margin",)
EVIDENCE_NUMBERS = ("margin", "error")


def _golden() -> dict:
    return json.loads(quick_golden.GOLDEN.read_text())["claims"]


def _close(a, b) -> bool:
    if isinstance(a, str) or isinstance(b, str) or a is None or b is None:
        return a == b
    return a == b or math.isclose(a, b, rel_tol=REL, abs_tol=0.0)


def test_the_golden_covers_every_built_in_claim_and_the_subset():
    golden = _golden()
    assert sorted(golden) == quick_golden.all_claims()
    assert set(SUBSET) <= set(golden)
    kinds = {golden[c]["verdict"] for c in SUBSET}
    assert kinds == {"holds", "violated"}


@pytest.mark.parametrize("claim_id", SUBSET)
def test_quick_summary_unchanged(claim_id):
    want = _golden()[claim_id]
    _, got, _ = quick_golden.run_one(claim_id)
    exact = {k: v for k, v in want.items() if k not in NUMBERS + ("evidence",)}
    assert {k: got[k] for k in exact} == exact
    for k in NUMBERS:
        assert _close(got[k], want[k]), (k, got[k], want[k])
    assert got["evidence"]["which"] == want["evidence"]["which"]
    for k in EVIDENCE_NUMBERS:
        assert _close(got["evidence"][k], want["evidence"][k]), (k, got["evidence"][k], want["evidence"][k])
