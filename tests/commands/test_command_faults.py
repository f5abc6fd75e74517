"""Faults of ``verify simulate`` and ``verify bench`` answered with one line (exit 2), never a traceback, and
records whose error estimate is never silently wrong (status ``inaccurate``, unknown errors infinite, det flips
reported)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from models.trajectory import Point, Status, Trajectory
from verify.cli import main
from verify.commands import bench, simulate


def call(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def one_line(code, err, want=2):
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == want and len(lines) == 1 and "Traceback" not in err, (code, err)
    return lines[0]


def write_factors(path, value, depth=3):
    path.write_text(json.dumps({"factors": [[[value, value], [value, value]]] * depth}))
    return path


@pytest.fixture
def forbid_work(monkeypatch):
    """Fail the test if a command computes before checking its outputs."""
    def forbidden(*a, **k):
        raise AssertionError("computed before checking the output")
    monkeypatch.setattr(simulate.DeepMatrix, "__init__", forbidden)
    monkeypatch.setattr(bench, "bench_gf", forbidden)
    monkeypatch.setattr(bench, "_bench_gd", forbidden)


def test_an_init_that_overflows_float64_is_bad_input(capsys, tmp_path):
    f = write_factors(tmp_path / "huge.json", 1e200)
    code, out, err = call(capsys, "simulate", "--init", f, "--json", "-")
    assert "overflows float64" in one_line(code, err) and out == ""


@pytest.mark.parametrize("engine", ["gf", "gf-mp", "gd"])
def test_a_stationary_start_is_bad_input(capsys, tmp_path, engine):
    # all-zero factors at depth 3: every factor gradient is 0, so the flow stays at loss 1 for ever
    f = write_factors(tmp_path / "zeros.json", 0.0)
    extra = ["--steps", "10"] if engine == "gd" else []
    code, out, err = call(capsys, "simulate", "--engine", engine, "--init", f, *extra, "--json", "-")
    assert "is a stationary point of the loss" in one_line(code, err)


@pytest.mark.parametrize("digits", [19, 500, 1000, 2000])
def test_gf_mp_digits_outside_its_range_is_bad_input(capsys, digits):
    code, out, err = call(capsys, "simulate", "--engine", "gf-mp", "--digits", digits, "--json", "-")
    assert "--digits must be between 20 and 300" in one_line(code, err)


@pytest.mark.parametrize("args, needle", [
    (["--init", "identity", "--det", "negative"], "--det negative does not apply to --init identity"),
    (["--init", "FILE", "--scale", "5"], "--scale does not apply to --init"),
    (["--init", "FILE", "--det", "positive"], "--det does not apply to --init"),
])
def test_options_that_the_init_would_ignore_are_bad_input(capsys, tmp_path, args, needle):
    f = write_factors(tmp_path / "init.json", 0.3)
    args = [str(f) if a == "FILE" else a for a in args]
    code, out, err = call(capsys, "simulate", *args, "--json", "-")
    assert needle in one_line(code, err)


@pytest.mark.parametrize("command", [["simulate"], ["bench", "--only", "gd"], ["bench", "--only", "gf"]])
def test_unwritable_json_fails_before_any_work(capsys, tmp_path, forbid_work, command):
    f = tmp_path / "file"
    f.write_text("x")
    for target, needle in ((f / "out.json", "is a file, not a directory"), (tmp_path, "is a directory")):
        code, out, err = call(capsys, *command, "--json", target)
        assert needle in one_line(code, err)


def test_a_huge_error_estimate_is_inaccurate_not_completed(capsys, tmp_path):
    # the case: unbalanced Gaussian init, depth 7, scale 10. With seed 0 gf now stops at the det crossing
    # it cannot resolve (precision_lost); seed 1 reaches its end with a relative error estimate ~70
    path = tmp_path / "t.json"
    code, out, err = call(capsys, "simulate", "--init", "gaussian", "--depth", 7, "--scale", 10, "--seed", 1,
                          "--json", path)
    doc = json.loads(path.read_text())
    assert doc["error_estimate"] >= 1.0
    assert doc["status"] == "inaccurate" and code == 1
    assert "--engine gf-mp" in doc["message"] and "warning: gf ended with status inaccurate" in err


def test_a_failed_run_names_what_would_go_on_and_its_unknown_error_is_infinite(capsys, tmp_path):
    # balanced, depth 4, scale 1e-12: scipy's BDF fails near the saddle (loss ~0.47)
    path = tmp_path / "t.json"
    code, out, err = call(capsys, "simulate", "--depth", 4, "--scale", 1e-12, "--json", path)
    doc = json.loads(path.read_text())
    assert code == 1 and doc["status"] == "solver_failed"
    assert "gf-mp" in doc["message"] and "--rtol" in doc["message"]
    # the companion run now also follows a failed run (issue 11), so the kept points carry a real estimate; what
    # must never appear is an error of 0 read as exact: each is a positive number or inf (unknown)
    def positive(x):
        return x == "inf" or float(x) > 0
    assert positive(doc["error_estimate"])
    assert all(positive(p["product_err"]) and positive(p["loss_err"]) for p in doc["points"][1:])


def test_unknown_errors_of_a_failed_record_are_infinite_and_the_start_stays_exact():
    W = np.eye(2)
    pts = (Point(0.0, None, 1.0, W, 1), Point(1.0, None, 0.5, W, 1), Point(2.0, None, 0.4, W, 1, loss_err=1e-9))
    t = Trajectory("gf", {}, pts, Status.PRECISION_LOST, "", 0.0)
    assert t.error_estimate == math.inf
    assert (t.points[0].loss_err, t.points[0].product_err) == (0.0, 0.0)
    assert t.points[1].loss_err == math.inf and t.points[2].loss_err == 1e-9 and t.points[2].product_err == math.inf
    assert "gf-mp" in t.message
    ok = Trajectory("gf", {}, pts, Status.COMPLETED, "", 0.5)
    assert ok.status is Status.COMPLETED and ok.error_estimate == 0.5 and ok.points[1].loss_err == 0.0
    assert Trajectory("gf", {}, pts, Status.COMPLETED, "", 1.0).status is Status.INACCURATE
    assert Trajectory("gf", {}, pts, Status.COMPLETED, "", math.nan).status is Status.INACCURATE
    late = Trajectory("gf", {}, pts, Status.BUDGET, "stopped at the wall budget", 3.0)
    assert late.status is Status.INACCURATE and late.message.startswith("stopped at the wall budget; but the error")
    assert Trajectory("gf", {}, pts, Status.BUDGET, "", 0.5).status is Status.BUDGET
    assert not Status.INACCURATE.trustworthy


def test_a_det_flip_in_gd_is_in_the_record_and_on_the_console(capsys, tmp_path):
    # step size 0.2 on the 2x2 problem flips det from +1 to -1 within the first 128 steps (gradient flow cannot)
    path = tmp_path / "t.json"
    code, out, err = call(capsys, "simulate", "--engine", "gd", "--depth", 2, "--lr", 0.2, "--steps", 3000,
                          "--scale", 0.5, "--json", path)
    doc = json.loads(path.read_text())
    assert code == 0 and doc["points"][0]["det_sign"] == 1 and doc["final"]["det_sign"] == -1
    change = doc["det_sign_change"]
    assert change["from"] == 1 and change["to"] == -1 and change["after"]["step"] < change["at"]["step"]
    assert "warning: the det sign changed from +1 to -1 between step" in err
    assert "so this is the step size (try a smaller --lr)" in err      # gd declares clock "step"


def test_a_gf_run_keeps_its_det_sign_and_reports_no_change(capsys, tmp_path):
    path = tmp_path / "t.json"
    code, out, err = call(capsys, "simulate", "--depth", 2, "--until-loss", 1e-6, "--json", path)
    doc = json.loads(path.read_text())
    assert code == 0 and doc["det_sign_change"] is None and "warning" not in err


def test_factors_on_the_chart_path_say_there_are_none(capsys):
    code, out, err = call(capsys, "simulate", "--depth", 2, "--until-loss", 1e-4, "--factors", "--json", "-")
    doc = json.loads(out)
    assert code == 0 and "factors" not in doc["final"]
    assert "warning: --factors: gf integrated the end-to-end matrix on its chart" in err
