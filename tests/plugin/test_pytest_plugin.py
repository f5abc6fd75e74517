"""The pytest plugin (verify/pytest_plugin.py) in a temporary project, as a user meets it.

A ``test_mine.py`` registers a true claim (1 + x > 0 on [0, 1]), a false one (x < 1/2 on [0, 1]) and one whose
margin never clears its error (inconclusive by construction); pytest runs there in a subprocess, in one process
and under ``-n 2``. Exact checks: no numerics, so each run takes about a second beyond the imports.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

MINE = '''
from hypothesis import strategies as st

from properties.api import Outcome, claim

UNIT = st.fixed_dictionaries({"x": st.floats(0.0, 1.0, allow_nan=False, allow_subnormal=False)})


@claim("mine.true", title="1 + x > 0 on [0, 1]", source="test", statement="1 + x > 0", kind="exact", strategy=UNIT)
def true_claim(inputs, dropped):
    return Outcome(1.0 + inputs["x"], engine="exact")


@claim("mine.false", title="x < 1/2 on [0, 1]", source="test", statement="x < 1/2", kind="exact", strategy=UNIT)
def false_claim(inputs, dropped):
    return Outcome(0.5 - inputs["x"], engine="exact")


@claim("mine.undecided", title="x - x > 0 within error 1", source="test", statement="0 > 0", kind="exact",
       strategy=UNIT)
def undecided(inputs, dropped):
    return Outcome(0.0, error=1.0, engine="exact")


def test_plain():
    assert 1 + 1 == 2
'''

OTHER = '''
from hypothesis import strategies as st
from properties.api import Outcome, claim

X = st.fixed_dictionaries({"x": st.integers(0, 10)})


@claim("lib.nonneg", title="x >= 0", source="test", statement="x >= 0", kind="exact", strategy=X)
def nonneg(inputs, dropped):
    return Outcome(inputs["x"] + 1.0, engine="exact")


@claim("lib.small", title="x < 5 (false)", source="test", statement="x < 5", kind="exact", strategy=X)
def small(inputs, dropped):
    return Outcome(4.5 - inputs["x"], engine="exact")
'''


CONFTEST = '''
from pathlib import Path


def pytest_verify_record(item, record):
    """The plugin's hook for checks of one's own: called with the record of each claim that met its expectation."""
    with open(Path(__file__).parent / "hook_calls.txt", "a") as fh:
        fh.write(f"{record['claim']} {record['verdict']} {item.claim.id}\\n")
'''


def _pytest(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}   # not this session's settings
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return subprocess.run([sys.executable, "-m", "pytest", "-rA", "-p", "no:cacheprovider", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300, env=env)


def _outcomes(stdout: str) -> dict:
    """``{node id: PASSED|FAILED|...}`` from the ``-rA`` short summary."""
    found = re.findall(r"^(PASSED|FAILED|ERROR|XFAIL|SKIPPED) (\S+)", stdout, re.M)
    return {node: outcome for outcome, node in found}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("project")
    (root / "pytest.ini").write_text("[pytest]\n")
    (root / "test_mine.py").write_text(textwrap.dedent(MINE))
    (root / "mylib_claims.py").write_text(textwrap.dedent(OTHER))
    (root / "conftest.py").write_text(textwrap.dedent(CONFTEST))
    return root


@pytest.fixture(scope="module")
def plain(project):
    return _pytest(project, "--verify-out", "out1")


@pytest.fixture(scope="module")
def xdist(project):
    return _pytest(project, "-n", "2", "--verify-out", "out2")


EXPECTED = {"test_mine.py::mine.true": "PASSED", "test_mine.py::mine.false": "FAILED",
            "test_mine.py::mine.undecided": "FAILED", "test_mine.py::test_plain": "PASSED"}


def test_true_claim_passes_false_claim_fails_with_counterexample_and_reproduce_command(project, plain):
    assert plain.returncode == 1, plain.stdout + plain.stderr
    assert _outcomes(plain.stdout) == EXPECTED, plain.stdout
    text = plain.stdout
    assert "claim mine.false: violated (expected holds)" in text
    m = re.search(r"counterexample inputs: \{'x': ([0-9.e+-]+)\}", text)
    assert m and 0.5 < float(m.group(1)) <= 1.0, text          # a real counterexample to x < 1/2
    assert re.search(r"margin -[0-9.e+-]+ against its error estimate 0\.0", text), text
    cx = (project / "out1" / "counterexamples" / "mine.false.json").resolve()
    assert f"reproduce: verify reproduce {cx}" in text, text
    # inconclusive is a failure with its own reason, not an xfail
    assert "claim mine.undecided: inconclusive (expected holds)" in text
    assert "stayed within their error estimate" in text
    # the command in the failure text works, from the project, in a fresh process
    res = subprocess.run([sys.executable, "-c", "import sys; from verify.cli import main; sys.exit(main())",
                          "reproduce", str(cx)], cwd=project, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "reproduced: violated" in res.stdout, res.stdout + res.stderr


def test_results_and_summary_like_verify_run(project, plain):
    rows = [json.loads(line) for line in (project / "out1" / "results.jsonl").read_text().splitlines()]
    assert sorted((r["claim"], r["verdict"], r["met"]) for r in rows) == [
        ("mine.false", "violated", False), ("mine.true", "holds", True), ("mine.undecided", "inconclusive", False)]
    summary = json.loads((project / "out1" / "summary.json").read_text())
    assert summary["totals"]["claims"] == 3 and summary["totals"]["met"] == 1
    assert summary["profile"] == "quick" and summary["seed"] == 0
    assert "verify claims: profile quick, seed 0" in plain.stdout
    calls = (project / "hook_calls.txt").read_text().splitlines()
    assert calls and set(calls) == {"mine.true holds mine.true"}   # only for the claim that met its expectation


def test_xdist_gives_the_same_verdicts_and_counterexample(project, plain, xdist):
    assert xdist.returncode == 1, xdist.stdout + xdist.stderr
    assert _outcomes(xdist.stdout) == EXPECTED, xdist.stdout
    one = json.loads((project / "out1" / "counterexamples" / "mine.false.json").read_text())
    two = json.loads((project / "out2" / "counterexamples" / "mine.false.json").read_text())
    assert one["inputs"] == two["inputs"] and one["counterexample"]["outcome"] == two["counterexample"]["outcome"]
    rows = [json.loads(line) for line in (project / "out2" / "results.jsonl").read_text().splitlines()]
    assert sorted(r["claim"] for r in rows) == ["mine.false", "mine.true", "mine.undecided"]   # one writer


def test_verify_claims_option_and_k_selection(project):
    res = _pytest(project, "--verify-claims", "mylib_claims", "-k", "lib.", "--verify-out", "out3")
    assert _outcomes(res.stdout) == {"verify-claims:mylib_claims::lib.nonneg": "PASSED",
                                     "verify-claims:mylib_claims::lib.small": "FAILED"}, res.stdout + res.stderr
    assert "counterexample inputs: {'x': 5}" in res.stdout   # shrunk to the boundary
    res = _pytest(project, "--verify-claims", "mylib_claims", "-k", "nonneg", "--verify-out", "out4")
    assert res.returncode == 0 and _outcomes(res.stdout) == {"verify-claims:mylib_claims::lib.nonneg": "PASSED"}, \
        res.stdout


def test_plugin_does_nothing_in_a_project_without_claims(tmp_path):
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_x.py").write_text("def test_x():\n    assert True\n")
    res = _pytest(tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "verify claims" not in res.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pytest.ini", "test_x.py"]   # no reports/ written
    res = _pytest(tmp_path, "--verify-profile", "nope")
    assert res.returncode == 4 and "unknown profile 'nope'" in res.stderr, res.stdout + res.stderr
    res = _pytest(tmp_path, "--verify-claims", "no_such_claims_module")
    assert res.returncode == 2, res.stdout + res.stderr          # a collection error, reported as such
    assert "ERROR verify-claims:no_such_claims_module" in res.stdout
    assert "claims module 'no_such_claims_module' not found" in res.stdout


SLEEPY = '''
import time

from hypothesis import strategies as st

from properties.api import Outcome, claim


@claim("mine.sleepy", title="hangs", source="test", statement="0 < 1", kind="exact",
       strategy=st.fixed_dictionaries({"x": st.just(0.0)}), timeout=2)
def sleepy(inputs, dropped):
    time.sleep(600)
    return Outcome(1.0, engine="exact")


@claim("mine.after", title="runs after the hung one", source="test", statement="1 > 0", kind="exact",
       strategy=st.fixed_dictionaries({"x": st.just(0.0)}))
def after(inputs, dropped):
    return Outcome(1.0, engine="exact")
'''


def test_a_claims_time_limit_is_honoured(tmp_path):
    # @claim(timeout=2) on a check that sleeps 600 s: the item fails as error/timeout within seconds and the
    # next claim still runs (the plugin uses verify run's killable workers)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_sleepy.py").write_text(textwrap.dedent(SLEEPY))
    res = _pytest(tmp_path, "--verify-out", "out")
    assert _outcomes(res.stdout) == {"test_sleepy.py::mine.sleepy": "FAILED",
                                     "test_sleepy.py::mine.after": "PASSED"}, res.stdout + res.stderr
    assert "claim mine.sleepy: error" in res.stdout and "timeout" in res.stdout, res.stdout
    rows = {json.loads(line)["claim"]: json.loads(line) for line in
            (tmp_path / "out" / "results.jsonl").read_text().splitlines()}
    assert rows["mine.sleepy"]["verdict"] == "error" and rows["mine.sleepy"].get("reason") == "timeout"
