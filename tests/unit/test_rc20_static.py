"""The exact static parts of RC20's Theorems 1 and 2 (properties/rc20_static.py): the proofs verify, and the
checker does not accept what is false (a doubled constant, a missing det hypothesis, a smaller erank constant),
each of which has an exact counterexample."""

from fractions import Fraction

import pytest

from properties.rc20_static import Certificates, ProofFailure, certify_erank, prove_static


@pytest.mark.parametrize("theorem", ["thm1", "thm2"])
def test_static_parts_are_proven(theorem):
    rec = prove_static(theorem)
    assert rec["facts_checked"] >= 20 and len(rec["statements"]) == 2


@pytest.mark.parametrize("theorem", ["thm1", "thm2"])
def test_wrong_statements_are_not_proven(theorem):
    with pytest.raises(ProofFailure):
        prove_static(theorem, factor=2)           # the constant doubled
    with pytest.raises(ProofFailure):
        prove_static(theorem, det_hypothesis=False)


def test_the_doubled_constant_and_the_dropped_det_have_exact_counterexamples():
    # W = [[x, 1], [1, c]]: s = |c|; the bound |w11| s > (1-s)^2 is tight as x c -> 1+ and s -> 0
    c = Fraction(1, 10)
    x = Fraction(101, 10)                         # det = x c - 1 = 1/100 > 0, loss = c^2 / 2 < 1/2
    assert x * c - 1 > 0 and abs(x) * c > (1 - c) ** 2          # Theorem 1's static bound holds ...
    assert abs(x) * c < 2 * (1 - c) ** 2                         # ... and its doubled version is false here
    x = Fraction(0)                               # det = -1 < 0: without det > 0 the bound fails
    assert x * c - 1 < 0 and not abs(x) * c > (1 - c) ** 2


def test_certificate_checker_rejects_a_false_identity():
    import sympy as sp

    a, s = sp.symbols("a s", real=True)
    P = Certificates([], [s, a])
    P.assume("s", s, False, "given")
    P.certify("2s", 2 * s, [(2, ["s"])])
    with pytest.raises(ProofFailure):
        P.certify("s-a", s - a, [(1, ["s"])])    # s - a >= 0 does not follow from s >= 0
    with pytest.raises(ProofFailure):
        P.certify("neg", -s, [(-1, ["s"])])      # negative coefficients are not certificates


def test_erank_constant_is_certified_and_tight():
    rec = certify_erank()
    assert 0.542 < rec["largest_upper_bound"] < 0.55       # the ratio peaks at ~0.5422
    with pytest.raises(ProofFailure):
        certify_erank(Fraction(54, 100))                 # below the peak: not certifiable (and false)
