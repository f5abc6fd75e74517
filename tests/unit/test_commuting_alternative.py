"""achl19.thm.commuting at depth >= 3 is checked on instances where the theorem's limit (the LP / minimum
nuclear-norm solution) and the alternative it rules out (the minimizer of sum w^(2/N)) differ, so the claim can
tell them apart: the flow's limit is the LP solution and not the alternative."""

import numpy as np

import properties  # noqa: F401
from properties.achl19 import COMMUTING_GAP, commuting_problem
from properties.api import CLAIMS
from properties.commuting_alt import alternative, vertices


def test_vertex_enumeration_and_alternative():
    A = np.array([[1.0, 2.0, 0.5]])
    y = np.array([2.0])
    vs = vertices(A, y)
    assert sorted(float(v.sum()) for v in vs) == [1.0, 2.0, 4.0]
    # one measurement: each vertex has one nonzero, so sum w^(2/N) and sum w pick the same one
    assert np.allclose(alternative(A, y, 3), [0.0, 1.0, 0.0])


def test_the_limit_is_the_theorem_not_the_alternative():
    inputs = {"depth": 3, "d": 4, "measurements": 2, "seed": 9}
    _, w_lp, w_alt = commuting_problem(inputs)
    gap = np.linalg.norm(w_alt - w_lp) / np.linalg.norm(w_lp)
    assert gap >= COMMUTING_GAP
    out = CLAIMS["achl19.thm.commuting"].run_check(inputs)
    assert out.status == "holds"
    final = out.detail["distances"][-1]
    assert final < 1e-4 and gap - final > 0.1     # at alpha = 1e-3: at the LP solution, far from the alternative
