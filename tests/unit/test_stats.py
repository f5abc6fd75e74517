"""The statistical rule (properties.stats): exact levels and power, decisions on known sequences, and that the
per-run level covers every profile's example count."""

from __future__ import annotations

import math

import numpy as np
import pytest

from properties import stats as T
from properties.rmc21_lowrank import LTR_TEST
from verify.profiles import PROFILES


def test_every_profile_runs_at_most_max_tests_per_run():
    assert max(p.max_examples for p in PROFILES.values()) <= T.MAX_TESTS_PER_RUN


def test_sequential_decisions_on_constant_sequences():
    t = T.ProportionAtLeast(p0=0.5, p1=0.9, alpha=1e-3, run_level=1e-3, n_max=200)
    up = math.log10(0.9 / 0.5)
    down = math.log10(0.1 / 0.5)
    d = t.decide([True] * 100)
    assert d.status == "holds" and d.n == math.floor(3 / up) + 1      # 12 successes: 1.8^12 > 1000 > 1.8^11
    d = t.decide([False] * 100)
    assert d.status == "violated" and d.n == math.floor(7 / -down) + 1  # 11 failures: 5^11 > 1e7 > 5^10
    d = t.decide([True, False] * 3)
    assert d.status == "inconclusive" and d.n == 6
    assert t.outcome(d).status == "inconclusive"


def test_sequential_operating_characteristic_is_exact_and_within_its_levels():
    t = T.ProportionAtLeast(p0=0.5, p1=0.9, alpha=1e-3, run_level=1e-3, n_max=60)
    for p in (0.3, 0.5, 0.7, 0.9, 0.98):
        op = t.operating(p)
        assert op.holds + op.violated + op.inconclusive == pytest.approx(1.0, abs=1e-12)
    assert t.operating(0.5).holds <= 1e-3                    # Ville: P(holds) <= alpha at p0
    assert t.operating(0.9).violated <= 1e-3 / 1e4          # and P(violated) <= beta at p1
    # Monte Carlo with a fixed seed agrees with the dynamic programme (4 sigma)
    rng = np.random.default_rng(0)
    n, p = 4000, 0.7
    hits = sum(t.decide(rng.random(60) < p).status == "holds" for _ in range(n))
    op = t.operating(p)
    assert abs(hits / n - op.holds) <= 4 * math.sqrt(op.holds * (1 - op.holds) / n)


def test_the_low_tensor_rank_test_keeps_every_profile_green_by_chance_below_its_level():
    assert LTR_TEST.red_by_chance() <= LTR_TEST.run_level
    assert LTR_TEST.operating(LTR_TEST.p0).holds <= LTR_TEST.alpha
    assert LTR_TEST.operating(LTR_TEST.p1).holds >= 0.99999                   # the stated power
    assert LTR_TEST.operating(0.3).violated >= 0.99999                       # large init (~30% success) refuted


def test_equivalence_test_never_takes_non_rejection_as_evidence():
    # n = 2000 (rc20.prop.det_half today): p = 0.52 is neither shown equal to 1/2 within 0.03 nor refuted
    small = T.ProportionEquals(0.5, 0.03, 2000)
    assert small.operating(0.52).holds < 0.5
    big = T.ProportionEquals(0.5, 0.03, 20000)
    assert big.operating(0.5).holds >= 1 - 1e-6 and big.red_by_chance() <= 1e-3
    assert big.operating(0.52).violated >= 0.6                               # power against p = 0.52
    d = big.decide(10000)
    assert d.status == "holds" and big.outcome(d).status == "holds"
    assert big.decide(10600).status == "violated"                            # 0.53: 8.5 sigma from 1/2


def test_equivalence_operating_characteristic_matches_its_decisions():
    e = T.ProportionEquals(0.5, 0.1, 300)
    ks = np.arange(301)
    from scipy.stats import binom
    for p in (0.45, 0.5, 0.62):
        pmf = binom.pmf(ks, 300, p)
        sts = [e.decide(int(k)).status for k in ks]
        op = e.operating(p)
        assert op.holds == pytest.approx(sum(w for w, s in zip(pmf, sts) if s == "holds"), abs=1e-12)
        assert op.violated == pytest.approx(sum(w for w, s in zip(pmf, sts) if s == "violated"), abs=1e-12)
