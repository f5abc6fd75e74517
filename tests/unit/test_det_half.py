"""rc20.prop.det_half's test (properties/det_half.py): stated level and power, computed exactly from the binomial
law, and the decisions on the suite's init laws, on a law with P(det > 0) = 0.52 (the alternative the old n = 2000
test let pass) and on a non-symmetric law. Seeds fixed: deterministic."""

import numpy as np
import pytest

from properties.det_half import ALPHA, N_DRAWS, TEST, decide, det_signs, power


def test_level_and_power():
    null = power(0.5)
    assert null.violated <= 1e-7 * 1.01               # level: a true p = 1/2 is refuted at most 1e-7 of the time
    assert null.holds >= 1 - 2 * ALPHA                # and is decided "holds" otherwise
    assert TEST.red_by_chance() <= 1e-3               # the run level of properties.stats
    for p in (0.52, 0.48, 0.51):
        alt = power(p)
        assert alt.violated >= 1 - 1e-6 and alt.holds <= ALPHA   # p = 0.52 (or 0.51) cannot survive


def test_a_biased_law_is_refuted():
    rng = np.random.default_rng(0)
    k = int((rng.random(N_DRAWS) < 0.52).sum())
    assert decide(k, N_DRAWS).status == "violated"
    k = int((rng.random(N_DRAWS) < 0.5).sum())
    assert decide(k, N_DRAWS).status == "holds"


@pytest.mark.parametrize("law,depth,want", [("gaussian", 3, "holds"), ("balanced", 2, "holds"),
                                            ("shifted", 2, "violated")])
def test_decisions_on_the_init_laws(law, depth, want):
    signs = det_signs(law, depth, 1e-3, seed=11)
    assert len(signs) == N_DRAWS and not np.any(signs == 0)
    assert decide(int((signs > 0).sum()), len(signs)).status == want
