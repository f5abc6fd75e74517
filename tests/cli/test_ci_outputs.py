"""CI-native outputs of ``verify run`` (``--junit-xml``, GitHub annotations) and ``verify diff``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from junitparser import Error, Failure, JUnitXml

from cli_helpers import TOY_ERRORS

ROOT = Path(__file__).resolve().parents[2]

DRIFT = '''
import os

from hypothesis import strategies as st

from properties.api import Outcome, claim

X = st.fixed_dictionaries({"x": st.integers(0, 3)})


@claim("drift.margin", title="shift + x > 0", source="test", statement="shift + x > 0", kind="exact", strategy=X)
def margin(inputs, dropped):
    return Outcome(float(os.environ.get("DRIFT_SHIFT", "1")) + inputs["x"], engine="exact")


@claim("drift.flip", title="sign > 0", source="test", statement="sign > 0", kind="exact", strategy=X)
def flip(inputs, dropped):
    return Outcome(-1.0 if os.environ.get("DRIFT_FLIP") else 1.0, engine="exact")


@claim("drift.same", title="2 > 0", source="test", statement="2 > 0", kind="exact", strategy=X)
def same(inputs, dropped):
    return Outcome(2.0, engine="exact")
'''


def _cases(path):
    xml = JUnitXml.fromfile(str(path))
    return {case.name: case for suite in xml for case in suite}


def test_junit_xml_has_one_testcase_per_claim_and_marks_the_failures(run_toy, tmp_path):
    junit = tmp_path / "ci" / "verify.xml"
    code, out, err, d = run_toy("toy.holds", "toy.violated", "toy.refuted", "--junit-xml", junit)
    assert code == 1 and f"JUnit XML in {junit}" in out
    cases = _cases(junit)
    assert sorted(cases) == ["toy.holds", "toy.refuted", "toy.violated"]
    assert cases["toy.holds"].is_passed and cases["toy.refuted"].is_passed   # refuted as expected: a pass
    (failure,) = cases["toy.violated"].result
    assert isinstance(failure, Failure) and failure.type == "violated"
    m = re.search(r"counterexample \{'x': ([0-9.e+-]+)\}; margin (-[0-9.e+-]+) against error 0\.0; "
                  r"verify reproduce (\S+)$", failure.message)
    assert m, failure.message
    x, margin = float(m.group(1)), float(m.group(2))
    assert 0.5 < x <= 1.0 and margin == 0.5 - x                        # the counterexample to x < 1/2
    assert m.group(3) == str(d / "counterexamples" / "toy.violated.json")
    assert cases["toy.violated"].classname == "toy"


def test_junit_error_verdict_is_an_error(cli, tmp_path):
    junit = tmp_path / "v.xml"
    code, out, err = cli("run", "--claims", TOY_ERRORS, "--out", tmp_path / "o", "--no-figures", "--junit-xml", junit)
    assert code == 1
    cases = _cases(junit)
    assert cases["toyerr.fine"].is_passed
    (error,) = cases["toyerr.raises"].result
    assert isinstance(error, Error) and "ZeroDivisionError" in error.message


def test_junit_xml_to_an_unwritable_place_is_bad_input(run_toy, tmp_path):
    code, out, err, d = run_toy("toy.holds", "--junit-xml", tmp_path)
    assert code == 2 and "is a directory" in err and not (d / "results.jsonl").exists()


def test_github_annotations_only_under_github_actions(run_toy, monkeypatch):
    monkeypatch.chdir(ROOT)             # GitHub's workspace: file= is relative to it; line= is the @claim line
    code, out, err, d = run_toy("toy.holds", "toy.violated")
    assert "::error" not in out
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    code, out, err, d = run_toy("toy.holds", "toy.violated")
    lines = [ln for ln in out.splitlines() if ln.startswith("::")]
    assert len(lines) == 1, out
    src = (ROOT / "tests/cli/toy_claims.py").read_text().splitlines()
    line = 1 + next(i for i, text in enumerate(src) if text.startswith('@claim("toy.violated"'))
    assert lines[0].startswith(f"::error file=tests/cli/toy_claims.py,line={line},title=verify%3A toy.violated "
                               "violated::violated (expected holds); counterexample {'x': ")
    assert "verify reproduce " in lines[0]


@pytest.fixture(scope="module")
def drift_module(tmp_path_factory):
    """One file for the module: its claim ids are registered once per process."""
    mod = tmp_path_factory.mktemp("drift") / "drift_claims.py"
    mod.write_text(DRIFT)
    return mod


@pytest.fixture
def drift_runs(cli, tmp_path, monkeypatch, drift_module):
    mod = drift_module
    monkeypatch.delenv("DRIFT_FLIP", raising=False)
    monkeypatch.setenv("DRIFT_SHIFT", "1")
    code, *_ = cli("run", "--claims", mod, "--out", tmp_path / "old", "--no-figures")
    assert code == 0
    monkeypatch.setenv("DRIFT_SHIFT", "0.5")
    monkeypatch.setenv("DRIFT_FLIP", "1")
    code, *_ = cli("run", "--claims", mod, "--out", tmp_path / "new", "--no-figures")
    assert code == 1
    return tmp_path / "old", tmp_path / "new"


def test_diff_shows_the_margin_drift_and_the_regression(cli, drift_runs):
    old, new = drift_runs
    code, out, err = cli("diff", old, new)
    assert code == 1, out + err           # drift.flip met its expectation in OLD and not in NEW
    assert out.splitlines()[0].startswith("3 claims: 1 regressed, 0 improved, 0 other verdict changes, "
                                          "1 margins drifted")
    rows = {ln.split()[0]: ln.split() for ln in out.splitlines()[3:] if ln.startswith("drift.")}
    assert rows["drift.margin"] == ["drift.margin", "margin", "holds", "holds", "1", "0.5", "-0.5", "-0.5"]
    assert rows["drift.flip"][:4] == ["drift.flip", "regressed", "holds", "violated!"]
    assert "drift.same" not in rows                                    # unchanged rows are left out
    code, out, err = cli("diff", old, new, "--json")
    data = json.loads(out)
    row = next(r for r in data["rows"] if r["claim"] == "drift.margin")
    assert (row["old_margin"], row["new_margin"], row["drift"], row["rel_drift"]) == (1.0, 0.5, -0.5, -0.5)
    assert data["regressions"] == [{"claim": "drift.flip", "baseline": "holds", "now": "violated"}]


def test_diff_of_a_run_with_itself_and_tolerance_and_bad_input(cli, drift_runs, tmp_path):
    old, new = drift_runs
    code, out, err = cli("diff", old, old / "summary.json")
    assert code == 0 and "no differences" in out
    code, out, err = cli("diff", new, old, "--rtol", "2")        # NEW -> OLD: an improvement, drift 1 within 2x
    assert code == 0 and "1 improved" in out and "0 margins drifted" in out
    code, out, err = cli("diff", old, tmp_path / "missing")
    assert code == 2 and "does not exist" in err
