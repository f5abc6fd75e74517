"""Problems as data: the built-in generators against their definitions, and problem files round-trip."""

from __future__ import annotations

import json

import numpy as np
import pytest

from models import generators as G
from models.errors import InvalidInput, SuiteError
from models.problem_files import ProblemFileError, load_problem, problem_from_data, problem_to_data, save_problem
from models.problems import MatrixProblem, TensorProblem, completion, rc20, sensing, tensor_completion


@pytest.mark.parametrize("unobserved", [(0, 0), (0, 1), (1, 0), (1, 1)])
def test_rc20_any_unobserved_entry(unobserved):
    z, zp, eps = 1.5, -2.0, 0.01
    p = rc20(z, zp, eps, unobserved=unobserved)
    ui, uj = unobserved
    obs = dict(zip(p.observed, p.targets))
    assert set(obs) == {(i, j) for i in range(2) for j in range(2)} - {unobserved}
    # eps sits opposite the unobserved entry, z in its row, z' in its column
    assert obs[(1 - ui, 1 - uj)] == eps
    assert obs[(ui, 1 - uj)] == z and obs[(1 - ui, uj)] == zp


@pytest.mark.parametrize("shape", [(2, 2), (3, 3), (5, 5), (5, 10), (4, 2)])
def test_rc20_larger_matches_the_code_generator(shape):
    d, dp = shape
    p = G.rc20_larger(shape)
    assert p.shape == shape and p.m == d * dp - 1 and (0, 0) not in p.observed
    T = np.zeros(shape)
    for (i, j), v in zip(p.observed, p.targets):
        T[i, j] = v
    expect = np.zeros(shape)
    expect[0, 1] = expect[1, 0] = 1.0
    for i in range(2, min(d, dp)):
        expect[i, i] = 1.0
    np.testing.assert_array_equal(T, expect)
    if d == dp:  # every completion has det -1 whatever the unobserved entry (cofactor expansion along row 1)
        for x in (-3.0, 0.0, 7.5):
            T[0, 0] = x
            assert np.linalg.det(T) == pytest.approx(-1.0, abs=1e-12)


@pytest.mark.parametrize("shape, rank, m", [((6, 6), 1, 20), ((5, 9), 2, 30), ((10, 10), 3, 100)])
def test_random_completion_is_the_achl19_generator(shape, rank, m):
    d, dp = shape
    p, W = G.random_completion(shape, rank, m, seed=7)
    s = np.linalg.svd(W, compute_uv=False)
    assert s[rank - 1] > 1e-6 * s[0] and (rank == min(shape) or s[rank] <= 1e-12 * s[0])   # rank exactly r
    assert np.linalg.norm(W) == pytest.approx(np.sqrt(d * dp), rel=1e-12)                  # RMS entry 1
    assert p.m == m and len(set(p.observed)) == m
    np.testing.assert_array_equal(p.targets, [W[i, j] for i, j in p.observed])
    p2, W2 = G.random_completion(shape, rank, m, seed=7)
    assert p2.observed == p.observed and np.array_equal(W2, W)
    assert not np.array_equal(G.random_completion(shape, rank, m, seed=8)[1], W)


def test_random_completion_draws_entries_uniformly():
    # 1 entry of a 3x3 matrix per seed, seeds 0..899: chi-square with 8 dof against uniform. Level 0.001
    # (threshold 26.12); seeds fixed, so the outcome is deterministic. A generator that never drew the last
    # row (one third of the cells) would give chi^2 >= 450.
    counts = np.zeros(9)
    for seed in range(900):
        (i, j), = G.random_completion((3, 3), 1, 1, seed=seed)[0].observed
        counts[3 * i + j] += 1
    chi2 = float(np.sum((counts - 100.0) ** 2 / 100.0))
    assert chi2 < 26.12, counts


def test_random_sensing_is_the_achl19_generator():
    d, dp, m = 8, 12, 300
    p, W = G.random_sensing((d, dp), 2, m, seed=3)
    A = p.operator.reshape(m, d, dp)
    np.testing.assert_allclose(p.targets, np.einsum("kij,ij->k", A, W), rtol=1e-12, atol=1e-14)
    assert np.linalg.matrix_rank(W) == 2 and np.linalg.norm(W) == pytest.approx(np.sqrt(d * dp), rel=1e-12)
    # entries N(0, 1/(d dp)): 28,800 samples, the sample variance has relative std sqrt(2/28800) = 0.8%; 5% is 6 sd
    assert np.var(A) * d * dp == pytest.approx(1.0, rel=0.05)
    assert abs(np.mean(A)) * np.sqrt(d * dp) < 6 / np.sqrt(A.size)


def test_random_tensor_has_cp_rank_r_and_the_norm():
    p, T = G.random_tensor((4, 5, 3), rank=2, m=25, seed=1, norm=2.0)
    assert np.linalg.norm(T) == pytest.approx(2.0, rel=1e-12)
    for mode in range(3):  # each unfolding of a CP-rank-2 tensor has rank <= 2 (generic: exactly 2)
        assert np.linalg.matrix_rank(np.moveaxis(T, mode, 0).reshape(T.shape[mode], -1), tol=1e-10) == 2
    assert p.m == 25 and len({tuple(i) for i in p.indices.tolist()}) == 25
    np.testing.assert_array_equal(p.targets, T[tuple(p.indices.T)])


def test_generate_parses_the_command_line_form():
    name, params = G.parse_problem_spec("random_completion:shape=4x6, rank=2,m=10,seed=3,reduction=mean")
    p = G.generate(name, **params)
    assert p.shape == (4, 6) and p.m == 10 and p.reduction == "mean"
    assert G.generate("rc20", unobserved="1x0").observed == ((0, 0), (0, 1), (1, 1))
    for bad in ("nope", "rc20:w=1", "rc20_larger:shape=5", "random_completion:rank=x", "rc20:z"):
        with pytest.raises(InvalidInput):
            name, params = G.parse_problem_spec(bad)
            G.generate(name, **params)


def _problems():
    return [rc20(1.0, -2.0, 0.1, unobserved=(0, 1)), G.rc20_larger((3, 4), reduction="mean"),
            G.random_completion((5, 4), 2, 9, seed=2)[0], G.random_sensing((3, 5), 1, 7, seed=4)[0],
            G.random_tensor((3, 2, 4), 2, 10, seed=5)[0]]


@pytest.mark.parametrize("suffix", ["json", "npz"])
@pytest.mark.parametrize("k", range(5))
def test_problem_files_round_trip(tmp_path, suffix, k):
    p = _problems()[k]
    path = save_problem(p, tmp_path / f"p.{suffix}")
    q = load_problem(path)
    assert type(q) is type(p) and q.name == p.name and q.reduction == p.reduction
    np.testing.assert_array_equal(q.targets, p.targets)  # bit for bit (JSON floats round-trip)
    if isinstance(p, MatrixProblem):
        assert q.shape == p.shape and q.observed == p.observed
        np.testing.assert_array_equal(q.operator, p.operator)
        W = np.random.default_rng(0).standard_normal(p.shape)
        assert q.loss(W) == p.loss(W)
    else:
        assert q.dims == p.dims
        np.testing.assert_array_equal(q.indices, p.indices)


def test_the_issue_json_forms_load():
    c = problem_from_data({"kind": "completion", "shape": [2, 3], "observed": [[0, 1], [1, 2]], "values": [1, -2.5]})
    assert c.observed == ((0, 1), (1, 2)) and c.reduction == "half_sum"
    assert c.loss(np.zeros((2, 3))) == pytest.approx(0.5 * (1 + 2.5 ** 2))
    s = problem_from_data({"kind": "sensing", "measurements": [[[1, 0], [0, 1]], [[0, 2], [0, 0]]],
                           "targets": [1, 2], "reduction": "mean"})
    assert s.shape == (2, 2) and s.loss(np.eye(2)) == pytest.approx((1 + 4) / 2)  # residuals 2 - 1 and 0 - 2
    t = problem_from_data({"kind": "tensor_completion", "dims": [2, 2, 2], "indices": [[0, 1, 1]], "values": [3]})
    assert isinstance(t, TensorProblem) and t.loss(np.zeros((2, 2, 2))) == pytest.approx(4.5)


BAD = [
    ({"kind": "completion", "shape": [2, 2], "observed": [[0, 2]], "values": [1]}, "out of range"),
    ({"kind": "completion", "shape": [2, 2], "observed": [[0, 1], [0, 1]], "values": [1, 2]}, "appears 2 times"),
    ({"kind": "completion", "shape": [2, 2], "observed": [[0, 1]], "values": [1, 2]}, "values"),
    ({"kind": "completion", "shape": [2, 2], "observed": [[0, 1, 0]], "values": [1]}, "2 indices"),
    ({"kind": "completion", "shape": [2], "observed": [[0, 1]], "values": [1]}, "'shape' must have 2"),
    ({"kind": "completion", "shape": [2, 2], "observed": [[0.5, 1]], "values": [1]}, "integers"),
    ({"kind": "completion", "shape": [2, 2], "observed": [[0, 1]], "values": ["a"]}, "numbers"),
    ({"kind": "completion", "shape": [2, 2], "observed": [], "values": []}, "empty"),
    ({"kind": "completion", "shape": [2, 2], "observed": [[0, 1]], "values": [1], "extra": 1}, "unknown key"),
    ({"kind": "completion", "shape": [2, 2], "observed": [[0, 1]]}, "needs key"),
    ({"kind": "completion", "shape": [2, 2], "observed": [[0, 1]], "values": [1], "reduction": "sum"}, "reduction"),
    ({"kind": "matrix", "shape": [2, 2]}, "unknown kind"),
    ({"shape": [2, 2]}, "missing 'kind'"),
    ({"kind": "sensing", "measurements": [[[1, 0], [0, 1]], [[1, 0]]], "targets": [1, 2]}, "rectangular"),
    ({"kind": "sensing", "measurements": [[[1, 0], [0, 1]]], "targets": [1, 2]}, "targets"),
    ({"kind": "sensing", "measurements": [[1, 0], [0, 1]], "targets": [1, 2]}, "3-dimensional"),
    ({"kind": "tensor_completion", "dims": [2, 2], "indices": [[0, 2]], "values": [1]}, "out of range"),
    ({"kind": "tensor_completion", "dims": [2, 0], "indices": [[0, 0]], "values": [1]}, ">= 1"),
    ({"kind": "tensor_completion", "dims": [2, 2], "indices": [[1, 1], [1, 1]], "values": [1, 1]}, "appears"),
    ([1, 2], "JSON object"),
]


@pytest.mark.parametrize("data, needle", BAD)
def test_malformed_problem_data_is_one_line_suite_error(data, needle):
    with pytest.raises(ProblemFileError) as info:
        problem_from_data(data, "x")
    msg = str(info.value)
    assert isinstance(info.value, SuiteError) and "\n" not in msg and needle in msg, msg


def test_malformed_files(tmp_path):
    f = tmp_path / "nan.json"
    f.write_text('{"kind": "completion", "shape": [2, 2], "observed": [[0, 1]], "values": [NaN]}')
    with pytest.raises(ProblemFileError, match="NaN"):
        load_problem(f)
    f.write_text('{"kind": "completion", "kind": "sensing"}')
    with pytest.raises(ProblemFileError, match="twice"):
        load_problem(f)
    f.write_text("{not json")
    with pytest.raises(ProblemFileError, match="not valid JSON"):
        load_problem(f)
    g = tmp_path / "obj.npz"
    np.savez(g, kind=np.array("completion"), shape=np.array([2, 2]), observed=np.array([[0, 1]], dtype=object),
             values=np.array([1.0]))
    with pytest.raises(ProblemFileError, match="npz"):
        load_problem(g)
    np.savez(g, kind=np.array("completion"), shape=np.array([2, 2]), observed=np.array([[0, 1]]),
             values=np.array([np.inf]))
    with pytest.raises(ProblemFileError, match="non-finite"):
        load_problem(g)
    with pytest.raises(ProblemFileError, match="does not exist"):
        load_problem(tmp_path / "missing.json")
    with pytest.raises(ProblemFileError, match=".json or .npz"):
        load_problem(tmp_path / "p.txt")


def test_problem_to_data_is_the_issue_form():
    d = problem_to_data(completion((2, 3), [(0, 1)], [2.0]))
    assert {k: d[k] for k in ("kind", "shape", "observed", "values")} == \
        {"kind": "completion", "shape": [2, 3], "observed": [[0, 1]], "values": [2.0]}
    d = problem_to_data(sensing(np.ones((1, 2, 2)), [1.0]))
    assert d["kind"] == "sensing" and d["measurements"] == [[[1.0, 1.0], [1.0, 1.0]]]
    d = problem_to_data(tensor_completion((2, 2), [[1, 0]], [1.0]))
    assert d["kind"] == "tensor_completion" and d["indices"] == [[1, 0]]
    json.dumps(d, allow_nan=False)
