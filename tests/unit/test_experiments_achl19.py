"""Helpers of the ACHL19 experiment claims against their definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models.generators import random_completion
from properties.experiments_achl19 import gaussian_init, projected
from properties.experiments_achl19_dynamics import rise_times


def test_gaussian_init_has_the_official_end_to_end_scale():
    """Per-layer std 1e-3^(1/N) / sqrt(n): ||W(0)||_F is about 1e-3 sqrt(n) (the official runner asserts 0.8-1.2)."""
    for L in (2, 3, 4):
        fs = gaussian_init((100, 100), L, seed=5, B=2)
        assert len(fs) == L and fs[0].shape == (2, 100, 100)
        assert abs(np.std(fs[0]) / (1e-3 ** (1 / L) / 10) - 1) < 0.02
        for b in range(2):
            W = fs[0][b]
            for F in fs[1:]:
                W = F[b] @ W
            assert 0.8 <= np.linalg.norm(W) / (1e-3 * 10) <= 1.2
        assert not np.array_equal(fs[0][0], fs[0][1])  # members are different inits


def test_projected_sets_exactly_the_observed_entries():
    p, W = random_completion((6, 5), rank=1, m=12, seed=1)
    X = np.zeros((6, 5))
    P = projected(p, X)
    assert np.array_equal(P.reshape(-1)[p.obs_flat], p.targets)
    mask = np.ones(30, bool)
    mask[p.obs_flat] = False
    assert np.all(P.reshape(-1)[mask] == 0) and np.all(X == 0)


def test_rise_times_of_logistic_curves():
    """sigma(t) = f / (1 + exp(-k (t - c))): reaches q f at c + ln(q / (1 - q)) / k."""
    steps = np.arange(0, 20001, 10)
    curves = [(10.0, 0.01, 5000.0), (5.0, 0.002, 12000.0)]
    sv = np.stack([f / (1 + np.exp(-k * (steps - c))) for f, k, c in curves], axis=1)
    sv[-1] = [f for f, _, _ in curves]  # the final record is the limit
    out = rise_times(steps, sv, 2)
    for (f, k, c), r in zip(curves, out):
        for key, q in (("a", 0.1), ("t", 0.5), ("b", 0.9)):
            exact = c + math.log(q / (1 - q)) / k
            assert exact <= r[key] < exact + 10  # the first record at or after the crossing
        assert abs(r["rho"] - 2 * math.log(9) / k / c) < 30 / c


class _Stop(Exception):
    pass


def _capture_device(monkeypatch, module, name):
    """Replace ``module.<name>`` (the run_dmf_gd it imported) by a stub that records its ``device`` and stops the run."""
    seen = []

    def stub(*args, device=None, **kw):
        seen.append(device)
        raise _Stop

    monkeypatch.setattr(module, name, stub)
    return seen


def test_experiment_runs_pin_the_cpu_even_where_cuda_is_visible(monkeypatch):
    """dmf_fast picks CUDA by itself for device=None; the claims (which pass no device) must run on the CPU so a
    seed gives the same numbers on every host."""
    import torch

    from properties import experiments_achl19 as E
    from properties import experiments_achl19_dynamics as D

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(E, "min_nuclear_completion", lambda problem, **kw: None)
    seen = _capture_device(monkeypatch, E, "run_dmf_gd")
    with pytest.raises(_Stop):
        E.run_completion.__wrapped__("reduced", "few", 0, 0, 1)
    seen_d = _capture_device(monkeypatch, D, "run_dmf_gd")
    with pytest.raises(_Stop):
        D.run_dynamics.__wrapped__("reduced", 0)
    assert seen == ["cpu"] and seen_d == ["cpu"]
