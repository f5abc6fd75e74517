"""Every exit status of ``verify run``: 0 met, 1 not met or regressed, 2 bad usage or bad input."""

from __future__ import annotations

import json

import pytest

from cli_helpers import BROKEN, TOY, TOY_ERRORS, read_lines, read_summary


def test_exit_0_when_every_claim_meets_its_expectation(run_toy):
    code, out, err, d = run_toy("toy.holds", "toy.refuted")
    assert code == 0, out + err
    s = read_summary(d)
    assert s["totals"]["met"] == 2 and s["totals"]["not_met"] == 0
    assert [r["claim"] for r in s["claims"]] == ["toy.holds", "toy.refuted"]
    assert "2 of 2 claims met their expectation" in out


def test_exit_1_when_a_claim_does_not_meet_its_expectation(run_toy):
    code, out, err, d = run_toy("toy.holds", "toy.violated")
    assert code == 1
    rec = {r["claim"]: r for r in read_summary(d)["claims"]}["toy.violated"]
    assert rec["verdict"] == "violated" and rec["met"] is False
    assert rec["counterexample_file"] == "counterexamples/toy.violated.json"
    assert (d / rec["counterexample_file"]).exists()
    assert "not met: toy.violated" in out


def test_exit_1_on_regression_against_the_baseline(run_toy, tmp_path):
    code, *_ , base = run_toy("toy.holds", "toy.refuted", out=tmp_path / "base")
    assert code == 0
    # pretend that toy.violated met its expectation in the baseline: now it regresses
    summary = read_summary(base)
    summary["claims"].append({**summary["claims"][0], "claim": "toy.violated", "verdict": "holds", "met": True})
    (base / "summary.json").write_text(json.dumps(summary))
    code, out, err, d = run_toy("toy.holds", "toy.violated", "--baseline", base / "summary.json")
    assert code == 1
    s = read_summary(d)
    assert s["regressions"] == [{"claim": "toy.violated", "baseline": "holds", "now": "violated"}]
    assert "regression: toy.violated" in out


def test_baseline_without_regression_keeps_exit_0(run_toy, tmp_path):
    _, _, _, base = run_toy("toy.holds", "toy.refuted", out=tmp_path / "base")
    code, out, err, d = run_toy("toy.holds", "--baseline", base / "summary.json")
    assert code == 0, out + err
    assert read_summary(d)["regressions"] == []


def test_a_check_that_raises_is_an_error_and_the_others_still_run(run_toy):
    code, out, err, d = run_toy(claims=TOY_ERRORS)
    assert code == 1
    recs = {r["claim"]: r for r in read_lines(d)}
    assert set(recs) == {"toyerr.raises", "toyerr.fine"}
    bad = recs["toyerr.raises"]
    assert bad["verdict"] == "error" and bad["met"] is False
    assert "ZeroDivisionError" in bad["traceback"] and "Traceback" in bad["traceback"]
    assert recs["toyerr.fine"]["verdict"] == "holds" and recs["toyerr.fine"]["met"] is True


def _one_line_error(code, out, err, *needles):
    assert code == 2
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    for n in needles:
        assert n in lines[0], lines[0]


@pytest.mark.parametrize("args, needle", [
    (("toy.nope",), "unknown claim id 'toy.nope'"),
    (("nope.*",), "unknown pattern 'nope.*'"),
    (("--profile", "fastest"), "invalid choice: 'fastest'"),
    (("--seed", "-3"), "seed must be an integer >= 0"),
    (("--jobs", "0"), "jobs must be an integer >= 1"),
    (("--executor", "ray://x"), "--executor must be 'local' or 'dask://HOST:PORT'"),
    (("--bogus-flag",), "unrecognized arguments"),
])
def test_exit_2_on_bad_usage(run_toy, args, needle):
    code, out, err, d = run_toy(*args)
    _one_line_error(code, out, err, needle)
    assert not (d / "results.jsonl").exists()


@pytest.mark.parametrize("module, needle", [
    (BROKEN, "does not import: RuntimeError: this claims module is broken on purpose"),
    ("no_such_claims_module_xyz", "claims module 'no_such_claims_module_xyz' not found"),
    ("/no/such/file.py", "does not exist"),
])
def test_exit_2_when_the_claims_module_does_not_import(run_toy, module, needle):
    code, out, err, d = run_toy(claims=module)
    _one_line_error(code, out, err, needle)


@pytest.mark.parametrize("content, needle", [
    (None, "does not exist"),
    ("{not json", "is not valid JSON"),
    ('{"claims": 3}', "is not a verify summary"),
    ('{"x": NaN, "claims": []}', "is not valid JSON"),
])
def test_exit_2_on_an_unreadable_baseline(run_toy, tmp_path, content, needle):
    path = tmp_path / "baseline.json"
    if content is not None:
        path.write_text(content)
    code, out, err, d = run_toy("toy.holds", "--baseline", path)
    _one_line_error(code, out, err, "baseline", needle)
    assert not (d / "results.jsonl").exists()  # bad input is caught before any claim runs


def test_exit_2_on_unknown_claim_for_show_ablate_and_list_of_broken_module(cli, tmp_path):
    _one_line_error(*cli("show", "toy.nope", "--claims", TOY), "unknown claim id")
    _one_line_error(*cli("ablate", "toy.nope", "--claims", TOY, "--out", tmp_path), "unknown claim id")
    _one_line_error(*cli("ablate", "toy.holds", "--claims", TOY, "--out", tmp_path), "names no hypotheses")
    _one_line_error(*cli("list", "--claims", BROKEN), "does not import")


def test_bare_verify_is_run_profile_quick(monkeypatch, cli):
    from verify import runner
    seen = {}

    def fake_run(config, progress=None):
        seen["config"] = config
        return runner.RunResult({"totals": {"met": 0, "claims": 0, "holds": 0, "violated": 0, "inconclusive": 0,
                                            "error": 0}, "regressions": [], "claims": []}, 0)

    monkeypatch.setattr(runner, "run", fake_run)
    code, out, err = cli()
    assert code == 0
    c = seen["config"]
    assert c.profile == "quick" and c.patterns == () and c.modules == () and c.seed == 0
    assert str(c.out) == "reports/latest" and c.jobs == 1 and c.executor == "local" and c.figures
