"""Depth 1 (the plain linear model) under ``gf``: the closed-form path against the exact solutions."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.linalg import expm

from models import generators as G
from models import inits
from models.engines import get_engine
from models.factorizations import DeepMatrix
from models.problems import rc20, sensing
from verify.cli import main


def test_rc20_depth1_observed_entries_relax_exponentially():
    problem = rc20()
    model = DeepMatrix(1, (2, 2))
    init = inits.gaussian(model, 1e-3, seed=0, det="positive")
    W0 = init.factors[0]
    traj = get_engine("gf").run(problem, model, init, until_loss=1e-12, record_at=(0.5, 2.0, 30.0))
    assert traj.status.value == "completed" and traj.stats["path"] == "linear"
    assert traj.final.loss == pytest.approx(1e-12, rel=1e-9)
    Y = {ij: y for ij, y in zip(problem.observed, problem.targets)}
    for p in traj.points:
        expect = W0.copy()
        for (i, j), y in Y.items():  # half_sum: w(t) = y + (w0 - y) e^{-t}
            expect[i, j] = y + (W0[i, j] - y) * math.exp(-p.t)
        assert np.max(np.abs(p.product - expect)) <= 4e-16
        assert p.product_err >= np.max(np.abs(p.product - expect))
        assert abs(p.loss - problem.loss(expect)) <= p.loss_err + 1e-300
    assert any(abs(p.t - 2.0) == 0.0 for p in traj.points)  # record_at times are exact
    # the det passes through 0 and ends at -1 + O(sqrt(loss)): the depth-1 limit [[w0_11, 1], [1, 0]]
    assert traj.points[0].det_sign == 1 and traj.final.det_sign == -1


def test_mean_reduction_relaxes_at_rate_2_over_m():
    problem, _ = G.random_completion((3, 4), 2, 5, seed=1, reduction="mean")
    model = DeepMatrix(1, (3, 4))
    init = inits.gaussian(model, 0.1, seed=2)
    W0 = init.factors[0]
    traj = get_engine("gf").run(problem, model, init, t_max=10.0, per_decade=2)
    assert traj.status.value == "completed" and traj.final.t == 10.0
    rate = 2.0 / problem.m
    for p in traj.points:
        expect = W0.copy()
        for (i, j), y in zip(problem.observed, problem.targets):
            expect[i, j] = y + (W0[i, j] - y) * math.exp(-rate * p.t)
        assert np.max(np.abs(p.product - expect)) <= 1e-15


def _expm_reference(problem, w0, t):
    """[w(t); 1] = expm(t [[-H, b], [0, 0]]) [w0; 1] (scaling and squaring, independent of the SVD formula)."""
    A, c = problem.operator, problem.grad_scale
    n = A.shape[1]
    M = np.zeros((n + 1, n + 1))
    M[:n, :n] = -c * A.T @ A
    M[:n, n] = c * A.T @ problem.targets
    return (expm(t * M) @ np.append(w0, 1.0))[:n]


@pytest.mark.parametrize("m", [5, 30])
def test_sensing_depth1_against_the_matrix_exponential(m):
    problem, _ = G.random_sensing((3, 4), 1, m, seed=m)
    if m > 12:  # overdetermined and inconsistent: perturb the targets off the range of A
        problem = sensing(problem.operator.reshape(m, 3, 4), problem.targets + 0.1 * np.cos(np.arange(m)))
    model = DeepMatrix(1, (3, 4))
    init = inits.gaussian(model, 0.5, seed=3)
    times = (0.3, 3.0, 40.0)
    traj = get_engine("gf").run(problem, model, init, until_loss=1e-10, record_at=times)
    for p in traj.points:
        ref = _expm_reference(problem, init.factors[0].reshape(-1), p.t).reshape(3, 4)
        err = np.max(np.abs(p.product - ref))
        assert err <= 1e-12 and err <= p.product_err + 1e-13  # expm's own error is ~1e-14 here
    if m > 12:  # the least-squares minimum is positive: the loss stalls above until_loss only if it is > 1e-10
        lsq = np.linalg.lstsq(problem.operator, problem.targets, rcond=None)[0]
        assert traj.stats["loss_min"] == pytest.approx(problem.loss(lsq.reshape(3, 4)), rel=1e-9)
        assert traj.status.value == "completed" and traj.final.t == 40.0  # ends at the last record_at time


def test_inconsistent_problem_without_end_time_stops_with_budget():
    A = np.zeros((2, 1, 1))
    A[:, 0, 0] = 1.0
    problem = sensing(A, [1.0, -1.0])  # w = 1 and w = -1: minimum loss 1 at w = 0
    model = DeepMatrix(1, (1, 1))
    traj = get_engine("gf").run(problem, model, inits.explicit(model, [np.array([[0.5]])]), until_loss=1e-6)
    assert traj.status.value == "budget" and traj.final.loss == pytest.approx(1.0, rel=1e-15)
    assert abs(traj.final.product[0, 0]) <= 1e-15
    # rate 2 (two unit measurements, half_sum): w(t) = 0.5 e^{-2t}; loss = 1/2((w-1)^2 + (w+1)^2) = 1 + w^2
    for p in traj.points:
        assert p.loss == pytest.approx(1.0 + 0.25 * math.exp(-4 * p.t), rel=1e-14)


def test_simulate_depth1_the_issue_command(capsys):
    code = main(["simulate", "--problem", "rc20", "--depth", "1", "--init", "gaussian", "--scale", "0.001",
                 "--until-loss", "1e-6", "--json", "-"])
    out, err = capsys.readouterr()
    assert code == 0, err
    d = json.loads(out)
    assert d["status"] == "completed" and d["final"]["loss"] == pytest.approx(1e-6, rel=1e-9)
    assert d["final"]["t"] == pytest.approx(-math.log(math.sqrt(2e-6) / math.sqrt(2 * d["points"][0]["loss"])),
                                            rel=1e-9)  # every residual is r0 e^{-t}: loss = loss0 e^{-2t}
