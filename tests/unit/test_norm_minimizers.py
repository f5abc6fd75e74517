"""rc20.prop.norm_minimizers_bounded at full strength (issue 11): norms and quasi-norms that approach the bound.

The families of properties/norm_minimizers.py have closed-form minimizers; the search must find them to its
stated error, and the claim's draws must refute the two wrong versions of the bound (halved; K dropped) under the
ci profile, while the theorem itself holds there.
"""

from __future__ import annotations

import math

import pytest

from properties import CLAIMS, Claim, Expectation, Kind
from properties import measures as M
from properties import norm_minimizers as NM
from verify.driver import run_claim
from verify.records import VerdictStatus

ID = "rc20.prop.norm_minimizers_bounded"


@pytest.mark.parametrize("spec", [NM.tight_lp(0.3, 100.0, 0.01), NM.tight_lp(0.5, 10.0, 0.01),
                                  NM.tight_lp(0.8, 0.1, 0.3), NM.tight_lp(1.0, 2.0, 0.01),
                                  NM.tight_max(0.01), NM.tight_max(0.5)])
def test_search_finds_the_closed_form_minimizer(spec):
    f = M.from_spec(spec)
    out = NM.minimizer_outcome(f)
    want = NM.expected_ratio(spec)
    assert out.status == "holds"
    # ratio |x*|/B found versus the closed form, to the search's own error (plus rounding of B)
    assert abs(out.detail["ratio"] - want) <= out.error + 1e-12, (out.detail, want)
    assert want > 0.74          # these are the draws that approach the bound


def test_tight_lp_quasi_norm_needs_k():
    """p < 1: the minimizer x* = -X is beyond 2||J||/||E11|| (no K), within 2K||J||/||E11||."""
    f = M.from_spec(NM.tight_lp(0.5, 10.0, 0.05))
    assert f.quasi_constant == 2.0
    assert NM.minimizer_outcome(f).status == "holds"
    no_k = NM.minimizer_outcome(f, with_k=False)
    assert no_k.status == "violated" and abs(no_k.detail["largest_minimizer"] - 10.0) < 1e-9


def test_linear_lp_quasi_triangle_and_error_bound():
    import numpy as np

    rng = np.random.default_rng(3)
    f = M.from_spec(NM.tight_lp(0.4, 3.0, 0.1))
    K = f.quasi_constant
    for _ in range(200):
        A, B = rng.standard_normal((2, 2, 2))
        assert f(A + B) <= K * (f(A) + f(B)) * (1 + 1e-12)
        D = rng.uniform(-1e-3, 1e-3, (2, 2))
        assert abs(f(A + D) - f(A)) <= f.error(A, 1e-3)


def _wrong(name: str, **kw) -> Claim:
    c = CLAIMS[ID]
    return Claim(id=f"test.wrong.norm_minimizers_{name}", title=f"{c.title} ({name})", source="wrong variant of " + ID,
                 statement=name, kind=Kind.EXACT, expectation=Expectation.HOLDS, strategy=c.strategy,
                 check=lambda inputs, dropped: NM.minimizer_outcome(M.from_spec(inputs["measure"]), **kw),
                 hypotheses=c.hypotheses, cost=c.cost)


@pytest.mark.parametrize("name,kw", [("bound_halved", {"factor": 0.5}), ("without_K", {"with_k": False})])
def test_wrong_bound_is_refuted_under_ci(name, kw):
    v = run_claim(_wrong(name, **kw), "ci", seed=0)
    assert v.status is VerdictStatus.VIOLATED, (v.notes, v.counterexample)
    assert v.counterexample["outcome"]["status"] == "violated"


def test_the_theorem_holds_under_ci():
    v = run_claim(ID, "ci", seed=0)
    assert v.status is VerdictStatus.HOLDS, (v.notes, v.counterexample)
    assert math.isfinite(v.smallest_margin) and v.smallest_margin < 0.05   # a draw came within 5% of the bound
