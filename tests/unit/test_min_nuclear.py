"""models.min_nuclear against cases with a known minimizer."""

from __future__ import annotations

import numpy as np
import pytest

from models.errors import SuiteError
from models.generators import random_completion, random_sensing
from models.min_nuclear import min_nuclear_completion
from models.problems import completion, rc20


def test_fully_observed_matrix_is_its_own_minimizer():
    rng = np.random.default_rng(0)
    T = rng.standard_normal((6, 5))
    obs = [(i, j) for i in range(6) for j in range(5)]
    res = min_nuclear_completion(completion((6, 5), obs, T.reshape(-1)))
    nuc = np.linalg.svd(T, compute_uv=False).sum()
    np.testing.assert_array_equal(res.matrix, T)  # every entry observed: the projection sets them all
    assert res.nuclear_norm == pytest.approx(nuc, rel=1e-12)
    assert 0 <= res.gap < 1e-5 * nuc and res.lower <= nuc * (1 + 1e-12)


def test_rc20_minimizer_has_w11_zero():
    """[[x, 1], [1, 0]] has singular values |x +- sqrt(x^2 + 4)| / 2, nuclear norm sqrt(x^2 + 4): min 2 at x = 0."""
    res = min_nuclear_completion(rc20())
    assert res.lower <= 2.0 + 1e-12 <= res.nuclear_norm + 2e-12
    assert res.gap < 1e-5
    # sqrt(x^2 + 4) - 2 <= gap bounds |x|: x^2 <= gap (gap + 4)
    assert abs(res.matrix[0, 0]) <= np.sqrt(res.gap * (res.gap + 4.0)) + 1e-12


def test_low_rank_completion_recovers_with_many_observations():
    """Rank 1, 12x12, 100 of 144 entries: far above the recovery threshold, the minimizer is the target."""
    p, W = random_completion((12, 12), rank=1, m=100, seed=2)
    res = min_nuclear_completion(p)
    assert res.reconstruction_error(W) < 1e-4
    assert res.lower <= np.linalg.svd(W, compute_uv=False).sum() * (1 + 1e-12)


def test_sensing_is_refused():
    p, _ = random_sensing((3, 3), rank=1, m=4, seed=0)
    with pytest.raises(SuiteError):
        min_nuclear_completion(p)
