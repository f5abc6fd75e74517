"""The one vocabulary (issue 10): the verdict enum, the one key it is stored under, strict JSON, atomic writes,
and that runs stored by earlier versions (a verdict under the key ``status``) still load."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

from properties.api import Outcome
from properties.stats import ProportionAtLeast
from models.stored import evidence, jsonio
from models.stored.verdicts import KEY, VERDICTS, VerdictStatus, verdict_of
from verify import store
from verify.records import Verdict


def test_each_verdict_is_its_word_and_carries_its_sentence():
    assert VERDICTS == ("holds", "violated", "inconclusive", "error")
    for v in VerdictStatus:
        assert v == v.value and str(v) == v.value and f"{v}" == v.value and json.dumps(v) == f'"{v.value}"'
        assert len(v.message) > 20
    assert len({v.message for v in VerdictStatus}) == 4


@pytest.mark.parametrize("margin, error, word", [(2.0, 1.0, "holds"), (-2.0, 1.0, "violated"), (1.0, 1.0, "inconclusive"),
                                                 (-1.0, 1.0, "inconclusive"), (0.0, 0.0, "inconclusive"),
                                                 (1e-300, 0.0, "holds"), (-math.inf, 1e300, "violated"),
                                                 (1e300, math.inf, "inconclusive")])
def test_one_decision_rule_for_outcomes_and_statistical_tests(margin, error, word):
    assert VerdictStatus.decide(margin, error) is VerdictStatus(word)
    assert Outcome(margin, error).status is VerdictStatus(word)


def test_a_statistical_decision_speaks_the_same_vocabulary():
    dec = ProportionAtLeast(p0=0.5, p1=0.9, run_level=0.01).decide([True] * 200)
    assert dec.status is VerdictStatus.HOLDS


def test_a_verdict_is_written_under_one_key():
    v = Verdict(claim_id="x", expectation="holds", status=VerdictStatus.VIOLATED, met=False, examples=3,
                smallest_margin=-math.inf, seconds=0.1, seed=0, profile="quick")
    d = v.to_json()
    assert KEY == "verdict" and d["verdict"] == "violated" and "status" not in d
    assert d["smallest_margin"] is None


def test_records_of_earlier_versions_with_the_key_status_still_read():
    old = {"claim": "a.b", "status": "error", "reason": "timeout", "seconds": 30.0, "expectation": "holds"}
    assert verdict_of(old) == "error" and verdict_of({}, "error") == "error" and verdict_of({}) is None
    assert verdict_of({"verdict": "holds", "status": "violated"}) == "holds"   # the one key wins
    assert evidence.verdict_phrase(old) == "error (timeout after 30 s)"
    assert evidence.verdict_word("violated", "refuted") == evidence.REFUTED_AS_EXPECTED
    base = {"claims": [{"claim": "a.b", "status": "holds", "met": True}]}
    assert store.regressions(base, [{"claim": "a.b", "verdict": "violated", "met": False}]) == \
        [{"claim": "a.b", "baseline": "holds", "now": "violated"}]
    assert store.totals([old, {"claim": "c", "verdict": "holds", "met": True}])["error"] == 1


def test_diff_and_show_read_a_stored_run_of_an_earlier_version(tmp_path, capsys):
    from verify.cli import main
    recs = [{"claim": "rc20.thm1.static", "status": "holds", "met": True, "expectation": "holds", "examples": 3,
             "extra": {"evidence": {"margin": 1.0, "error": 0.0, "which": "smallest"}}}]
    for name in ("old", "new"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    assert main(["diff", str(tmp_path / "old"), str(tmp_path / "new")]) == 0
    assert "no differences" in capsys.readouterr().out


def test_strict_json_encodes_non_finite_numbers_and_numpy_values():
    obj = {"a": math.inf, "b": [-math.inf, math.nan, 1.5], "c": np.float64(np.nan), "d": np.arange(2),
           "e": np.bool_(True), "f": (np.int64(3),), "g": VerdictStatus.HOLDS}
    want = {"a": "inf", "b": ["-inf", "nan", 1.5], "c": "nan", "d": [0, 1], "e": True, "f": [3], "g": "holds"}
    assert jsonio.strict(obj) == want
    assert type(jsonio.strict(obj)["g"]) is str and type(jsonio.strict(obj, keep_unknown=True)["g"]) is str
    assert jsonio.loads(jsonio.dumps(obj)) == want
    assert jsonio.number(np.float32(-np.inf)) == "-inf" and jsonio.number(2) == 2.0
    marker = object()
    assert jsonio.strict({"x": marker, "y": math.inf}, keep_unknown=True) == {"x": marker, "y": "inf"}
    assert jsonio.strict({"x": {1, 2}}) == {"x": [1, 2]}
    with pytest.raises(ValueError):
        jsonio.loads('{"a": NaN}')


def test_atomic_write_replaces_in_one_step_and_leaves_the_file_on_failure(tmp_path):
    path = tmp_path / "sub" / "f.json"
    jsonio.write_json(path, {"x": math.inf})
    assert json.loads(path.read_text()) == {"x": "inf"} and path.read_text().endswith("\n")

    def broken(fh):
        fh.write(b"half")
        raise RuntimeError("stopped")
    with pytest.raises(RuntimeError):
        jsonio.atomic_write(path, broken)
    assert json.loads(path.read_text()) == {"x": "inf"}
    assert os.listdir(path.parent) == ["f.json"]          # no temporary file left behind
    jsonio.atomic_write(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
