"""Nothing lost, nothing hidden: one run per output directory, time limits, exit statuses CI can trust.

0 every claim met, 1 some claim not met (a claim past its time limit is an ``error`` with reason ``timeout``),
2 bad usage or input with one line on stderr, 3 an internal error whose traceback is saved to a named file.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cli_helpers import TOY, TOY_FAULTS, read_lines, read_summary
from verify import outdir, runner

ROOT = Path(__file__).resolve().parents[2]


def _one_line(code, err, want_code=2):
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == want_code and len(lines) == 1, (code, err)
    assert "Traceback" not in err
    return lines[0]


# ----- 1. one run owns its output directory --------------------------------------------------------------------
def test_two_concurrent_runs_into_one_directory_lose_nothing(cli, tmp_path):
    out, gate = tmp_path / "out", tmp_path / "gate"
    env = {**os.environ, "VERIFY_TOY_WAIT": str(gate), "PYTHONPATH": str(ROOT)}
    first = subprocess.Popen([sys.executable, "-m", "verify.cli", "run", "toy.slow", "toy.holds", "toy.violated",
                              "--claims", TOY, "--out", str(out), "--no-figures", "--quiet"],
                             env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lock = out / outdir.LOCK
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # the first run holds the lock once it wrote its pid there
            if lock.exists() and f'"pid": {first.pid}' in lock.read_text():
                break
            assert first.poll() is None, first.communicate()
            time.sleep(0.05)
        code, stdout, err = cli("run", "toy.holds", "--claims", TOY, "--out", out, "--no-figures")
        line = _one_line(code, err)
        assert "is in use by another run" in line and f"pid {first.pid}" in line, line
    finally:
        gate.touch()
        stdout, stderr = first.communicate(timeout=120)
    assert first.returncode == 1, stdout + stderr  # toy.violated is not met; nothing else went wrong
    lines = read_lines(out)  # every line is intact strict JSON, one per claim of the first run
    assert sorted(r["claim"] for r in lines) == ["toy.holds", "toy.slow", "toy.violated"]
    s = read_summary(out)
    assert s["complete"] and sorted(r["claim"] for r in s["claims"]) == ["toy.holds", "toy.slow", "toy.violated"]
    assert (out / "counterexamples" / "toy.violated.json").exists()
    code, stdout, err = cli("run", "toy.slow", "toy.holds", "toy.violated", "--claims", TOY, "--out", out,
                            "--no-figures", "--resume")  # the next --resume works and has nothing to do
    assert code == 1 and "ran 0, kept 3" in stdout, stdout + err


def test_ablate_into_a_directory_in_use_is_refused_naming_the_owner(cli, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    with outdir.DirLock(out, "verify run"):  # held by this process, on another open file
        code, stdout, err = cli("ablate", "toy.theorem", "--claims", TOY, "--out", out)
        line = _one_line(code, err)
    assert f"in use by another run (verify run, pid {os.getpid()} on " in line
    assert not (out / "ablations").exists()


def test_the_lock_of_a_dead_run_is_no_obstacle(run_toy, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / outdir.LOCK).write_text(json.dumps({"pid": 999999, "host": "gone", "command": "verify run",
                                               "started": "2020-01-01T00:00:00+00:00"}))
    code, stdout, err, _ = run_toy("toy.holds", out=out)
    assert code == 0, stdout + err
    assert f'"pid": {os.getpid()}' in (out / outdir.LOCK).read_text()


def test_a_fresh_run_sets_the_earlier_runs_outputs_aside(run_toy, tmp_path):
    out = tmp_path / "out"
    code, *_ = run_toy("toy.violated", out=out)
    assert code == 1 and (out / "counterexamples" / "toy.violated.json").exists()
    (out / "ablations").mkdir()
    (out / "ablations" / "toy.theorem.json").write_text("{}")
    code, stdout, err, _ = run_toy("toy.holds", "--seed", "5", out=out)
    assert code == 0, stdout + err
    assert not (out / "counterexamples").exists() and not (out / "ablations").exists()
    prev = out / outdir.PREVIOUS
    assert (prev / "counterexamples" / "toy.violated.json").exists() and (prev / "ablations").is_dir()
    assert [r["claim"] for r in read_lines(prev)] == ["toy.violated"]
    assert [r["claim"] for r in read_summary(out)["claims"]] == ["toy.holds"]
    assert "toy.violated" not in (out / "report.md").read_text()
    # --resume keeps what is there
    code, stdout, err, _ = run_toy("toy.holds", "toy.violated", "--seed", "5", "--resume", out=out)
    assert code == 1 and "kept 1" in stdout
    assert (prev / "counterexamples" / "toy.violated.json").exists()


# ----- 2. time limits ------------------------------------------------------------------------------------------
def test_a_hanging_claim_ends_as_error_timeout_and_the_run_goes_on(run_toy):
    # toyfault.hang spins in pure Python for ever and declares timeout=1.0; toyfault.after runs after it
    code, stdout, err, out = run_toy("toyfault.hang", "toyfault.after", claims=TOY_FAULTS)
    assert code == 1, stdout + err
    recs = {r["claim"]: r for r in read_summary(out)["claims"]}
    hang = recs["toyfault.hang"]
    assert hang["verdict"] == "error" and hang["reason"] == "timeout" and hang["met"] is False
    assert hang["seconds"] == 1.0 and "time limit of 1 s" in hang["error"]
    assert recs["toyfault.after"]["verdict"] == "holds" and recs["toyfault.after"]["examples"] > 0
    assert "not met: toyfault.hang: error (timeout after 1 s) (expected holds)" in stdout


def test_a_worker_that_dies_is_an_error_verdict_and_the_run_goes_on(run_toy):
    code, stdout, err, out = run_toy("toyfault.exits", "toyfault.after", claims=TOY_FAULTS)
    assert code == 1, stdout + err
    recs = {r["claim"]: r for r in read_summary(out)["claims"]}
    assert recs["toyfault.exits"]["verdict"] == "error"
    assert "WorkerDied: the worker process exited (code 3)" in recs["toyfault.exits"]["error"]
    assert recs["toyfault.after"]["verdict"] == "holds"


def test_time_limit_precedence():
    from verify import discovery
    cat = discovery.load((TOY_FAULTS, TOY))
    hang, holds = cat.get("toyfault.hang"), cat.get("toy.holds")
    assert runner.time_limit(holds, "quick") == 300.0 and runner.time_limit(holds, "ci") == 600.0
    assert runner.time_limit(hang, "quick") == 1.0                 # the claim's own
    assert runner.time_limit(hang, "quick", 7.5) == 7.5            # --claim-timeout wins
    assert runner.time_limit(holds, "thorough", 2.0) == 2.0


@pytest.mark.parametrize("value", ["0", "-1", "inf", "soon"])
def test_claim_timeout_must_be_positive_seconds(run_toy, value):
    code, stdout, err, _ = run_toy("toy.holds", "--claim-timeout", value)
    assert "--claim-timeout: must be a number of seconds > 0" in _one_line(code, err)


# ----- 3. exit statuses and writable outputs -------------------------------------------------------------------
def test_out_that_is_a_file_or_below_a_file_is_bad_input(run_toy, tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    code, stdout, err, _ = run_toy("toy.holds", out=f)
    assert "is a file, not a directory" in _one_line(code, err)
    code, stdout, err, _ = run_toy("toy.holds", out=f / "sub")
    assert f"is below {str(f)!r}, which is a file" in _one_line(code, err)


def test_out_on_a_filesystem_that_refuses_writes_is_bad_input(run_toy, tmp_path, monkeypatch):
    def refuse(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system")
    monkeypatch.setattr(outdir.tempfile, "mkstemp", refuse)
    code, stdout, err, _ = run_toy("toy.holds", out=tmp_path / "ro")
    assert "is not writable: Read-only file system" in _one_line(code, err)


def test_an_internal_error_exits_3_with_its_traceback_in_a_named_file(cli, monkeypatch):
    def broken(*a, **k):
        return 1 / 0
    monkeypatch.setattr(runner, "run", broken)
    code, stdout, err = cli("run", "toy.holds", "--claims", TOY)
    line = _one_line(code, err, want_code=3)
    assert line.startswith("verify run: internal error: ZeroDivisionError: division by zero; traceback in ")
    path = Path(line.rsplit("traceback in ", 1)[1])
    try:
        text = path.read_text()
        assert "Traceback (most recent call last)" in text and "1 / 0" in text and "toy.holds" in text
    finally:
        path.unlink()


@pytest.mark.parametrize("claim, returned", [("toyfault.none", "NoneType"), ("toyfault.float", "float")])
def test_reproduce_a_check_that_returned_no_outcome_answers_in_a_line(run_toy, cli, claim, returned):
    code, stdout, err, out = run_toy(claim, claims=TOY_FAULTS)
    assert code == 1
    rec = read_summary(out)["claims"][0]
    assert rec["verdict"] == "error" and rec["counterexample_file"]
    code, stdout, err = cli("reproduce", out / rec["counterexample_file"])
    assert code == 0 and err == "" and "Traceback" not in stdout, stdout + err
    assert f"TypeError: check of {claim} returned {returned}, not an Outcome" in stdout
    assert "reproduced: error" in stdout


def test_progress_lines_say_1_example_and_stay_aligned_for_long_ids():
    from verify.progress import describe
    short = describe({"claim": "toy.holds", "verdict": "holds", "examples": 1, "seconds": 1.0, "met": True})
    long = describe({"claim": "rc20.prop.norm_minimizers_bounded.without_is_quasi_norm", "verdict": "violated",
                     "examples": 12, "seconds": 1.0, "met": True})
    assert " 1 example " in short and "1 examples" not in short and "12 examples" in long
    assert short.index(" holds ") == long.index(" violated ") and short.rindex(" s") == long.rindex(" s")
