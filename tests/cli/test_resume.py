"""Interrupted runs keep what finished; ``--resume`` completes them into the same summary."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from cli_helpers import TOY, read_lines, read_summary, without_timings

REPO = Path(__file__).resolve().parents[2]


def test_ctrl_c_keeps_finished_lines_and_resume_gives_the_same_summary(run_toy, tmp_path, monkeypatch):
    full_code, *_, full = run_toy(out=tmp_path / "full")

    monkeypatch.setenv("VERIFY_TOY_INTERRUPT", "1")
    code, out, err, d = run_toy(out=tmp_path / "cut")
    assert code == 130 and "interrupted" in err
    before = [r["claim"] for r in read_lines(d)]
    assert before == ["toy.holds", "toy.violated", "toy.refuted"]  # the claims before toy.interrupt
    assert not (d / "summary.json").exists()

    monkeypatch.delenv("VERIFY_TOY_INTERRUPT")
    code, out, err, d = run_toy("--resume", out=d)
    assert code == full_code == 1
    assert "ran 4, kept 3" in out
    lines = read_lines(d)
    assert [r["claim"] for r in lines[:3]] == before and len(lines) == 7
    assert without_timings(read_summary(d)) == without_timings(read_summary(full))


def test_resume_of_a_complete_run_runs_nothing(run_toy, tmp_path):
    _, _, _, d = run_toy("toy.holds", "toy.refuted")
    first = read_summary(d)
    code, out, err, d = run_toy("toy.holds", "toy.refuted", "--resume", out=d)
    assert code == 0 and "ran 0, kept 2" in out, out + err
    assert read_summary(d) == first  # identical, timings included: nothing was rerun


def test_resume_drops_a_torn_last_line(run_toy, tmp_path):
    _, _, _, d = run_toy("toy.holds", "toy.refuted", "toy.theorem")
    full = read_summary(d)
    path = d / "results.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text(lines[0] + lines[1][: len(lines[1]) // 2])  # killed in the middle of writing line 2
    code, out, err, d = run_toy("toy.holds", "toy.refuted", "toy.theorem", "--resume", out=d)
    assert code == 0 and "ran 2, kept 1" in out
    assert len(read_lines(d)) == 3
    assert without_timings(read_summary(d)) == without_timings(full)


def test_resume_refuses_results_of_another_profile_or_seed(run_toy, tmp_path):
    _, _, _, d = run_toy("toy.holds")
    code, out, err, _ = run_toy("toy.holds", "--seed", "7", "--resume", out=d)
    assert code == 2 and "seed 0" in err and len(err.strip().splitlines()) == 1


def test_killed_run_keeps_its_lines_and_resumes(run_toy, tmp_path):
    d = tmp_path / "killed"
    env = {**os.environ, "VERIFY_TOY_SLOW": "2", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "verify.cli", "run", "toy.holds", "toy.theorem", "toy.slow",
                             "--claims", TOY, "--out", str(d), "--no-figures"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            path = d / "results.jsonl"
            if path.exists() and path.read_text().count("\n") >= 2:
                break
            assert proc.poll() is None, "the run ended before it could be killed"
            time.sleep(0.05)
        else:
            raise AssertionError("no results within 60 s")
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert [r["claim"] for r in read_lines(d)] == ["toy.holds", "toy.theorem"]
    code, out, err, d = run_toy("toy.holds", "toy.theorem", "toy.slow", "--resume", out=d)
    assert code == 0 and "ran 1, kept 2" in out
    assert [r["claim"] for r in read_summary(d)["claims"]] == ["toy.holds", "toy.theorem", "toy.slow"]


def test_the_recorded_commit_is_read_before_any_claim_runs(monkeypatch, tmp_path):
    # a run is recorded under the commit whose code it runs: HEAD at its start, not HEAD when its first record is
    # written (a long run spans commits made meanwhile)
    from verify import runner, store

    store.git_commit.cache_clear()
    seen = {}

    def locked(*args, **kwargs):
        seen["cached"] = store.git_commit.cache_info().currsize
        return None

    monkeypatch.setattr(runner, "_run_locked", locked)
    runner.run(runner.RunConfig(patterns=("rc20.lemma.det_sign",), out=tmp_path / "out"))
    assert seen["cached"] == 1
    store.git_commit.cache_clear()
