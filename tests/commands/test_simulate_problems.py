"""``verify simulate`` on problems other than rc20: generators, problem files, models, recording options."""

from __future__ import annotations

import json

import numpy as np
import pytest

from models.problem_files import load_problem
from verify.cli import main


def call(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_generator_with_save_problem_then_the_same_file(capsys, tmp_path):
    pf = tmp_path / "p.json"
    code, out, err = call(capsys, "simulate", "--problem", "random_completion:shape=4x3,rank=1,m=8,seed=2",
                          "--depth", 2, "--scale", 0.1, "--until-loss", 1e-6, "--save-problem", pf, "--json", "-")
    assert code == 0, err
    a = json.loads(out)
    p = load_problem(pf)
    assert p.shape == (4, 3) and p.m == 8 and a["settings"]["problem"]["observed"] == [list(o) for o in p.observed]
    code, out, err = call(capsys, "simulate", "--problem", pf, "--depth", 2, "--scale", 0.1, "--until-loss", 1e-6,
                          "--json", "-")
    assert code == 0, err
    b = json.loads(out)
    assert b["final"]["product"] == a["final"]["product"]  # the same problem, init and engine: the same run
    final = np.array(b["final"]["product"])
    for (i, j), v in zip(p.observed, p.targets):  # loss 1e-6 (half_sum): every residual below sqrt(2e-6)
        assert abs(final[i, j] - v) <= np.sqrt(2e-6) * (1 + 1e-6)


def test_cp_model_on_a_tensor_file_with_gd_and_gf(capsys, tmp_path):
    f = tmp_path / "t.json"
    f.write_text(json.dumps({"kind": "tensor_completion", "dims": [2, 3, 2], "indices": [[0, 0, 0], [1, 2, 1]],
                             "values": [0.5, -0.25]}))
    code, out, err = call(capsys, "simulate", "--problem", f, "--rank", 2, "--init", "gaussian", "--scale", 0.5,
                          "--engine", "gd", "--lr", 0.1, "--steps", 300, "--record-every", 100, "--json", "-")
    assert code == 0, err
    d = json.loads(out)
    assert d["settings"]["model"] == {"kind": "cp", "dims": [2, 3, 2], "rank": 2}
    assert [p["step"] for p in d["points"]] == [0, 100, 200, 300]
    code, out, err = call(capsys, "simulate", "--problem", f, "--model", "cp", "--rank", 2, "--init", "balanced",
                          "--until-loss", 1e-4, "--json", "-")
    assert code == 0, err
    assert json.loads(out)["final"]["loss"] <= 1e-4 * (1 + 1e-8)


def test_record_at_times_for_gf(capsys):
    code, out, err = call(capsys, "simulate", "--depth", 2, "--t-max", 20, "--record-at", "0.5,3,7", "--json", "-")
    assert code == 0, err
    ts = [p["t"] for p in json.loads(out)["points"]]
    for t in (0.5, 3.0, 7.0):  # the run ends at the last of them (or earlier, at --t-max or --until-loss)
        assert min(abs(s - t) for s in ts) <= 1e-12 * t
    assert max(ts) == pytest.approx(7.0, rel=1e-12)


def test_record_at_times_for_gf_mp(capsys):
    code, out, err = call(capsys, "simulate", "--engine", "gf-mp", "--digits", 20, "--depth", 2, "--record-at",
                          "0.5,2", "--json", "-")
    assert code == 0, err
    d = json.loads(out)
    ts = [p["t"] for p in d["points"]]
    for t in (0.5, 2.0):
        assert min(abs(s - t) for s in ts) <= 1e-12 * t
    assert max(ts) == pytest.approx(2.0, rel=1e-12) and d["status"] == "completed"


def test_gd_record_every_gives_checkpoints_every_k_steps(capsys):
    code, out, err = call(capsys, "simulate", "--engine", "gd", "--lr", 0.01, "--steps", 250, "--record-every", 50,
                          "--json", "-")
    assert code == 0, err
    assert [p["step"] for p in json.loads(out)["points"]] == [0, 50, 100, 150, 200, 250]
    code, out, err = call(capsys, "simulate", "--engine", "gd", "--lr", 0.05, "--until-loss", 1e-3, "--record-every",
                          50, "--init", "gaussian", "--scale", 0.3, "--det", "any", "--json", "-")
    assert code == 0, err
    pts = json.loads(out)["points"]
    assert all(p["step"] % 50 == 0 for p in pts[:-1]) and pts[-1]["loss"] <= 1e-3 < pts[-2]["loss"]
    assert pts[-1]["step"] - pts[-2]["step"] <= 50


def test_gd_normalized_step_rule_from_the_command_line(capsys):
    code, out, err = call(capsys, "simulate", "--engine", "gd", "--lr", 0.01, "--steps", 200, "--step-rule",
                          "normalized", "--record-every", 100, "--json", "-")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["settings"]["step_rule"] == "normalized" and doc["stats"]["rule_time"] > 0
    pts = doc["points"]
    assert [p["step"] for p in pts] == [0, 100, 200] and pts[-1]["loss"] < pts[0]["loss"]
    code, out, err = call(capsys, "simulate", "--step-rule", "normalized", "--json", "-")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--step-rule" in err


BAD_FILES = [
    ('{"kind": "completion", "shape": [2, 2], "observed": [[0, 1], [0, 1]], "values": [1, 2]}', "appears 2 times"),
    ('{"kind": "completion", "shape": [2, 2], "observed": [[2, 0]], "values": [1]}', "out of range"),
    ('{"kind": "completion", "shape": [2, 2], "observed": [[0, 1]], "values": [NaN]}', "NaN"),
    ('{"kind": "sensing", "measurements": [[[1, 0], [0, 1]], [[1, 0]]], "targets": [1, 2]}', "rectangular"),
    ('{"kind": "tensor_completion", "dims": [2, 2], "indices": [[0, 0]], "values": [1], "rank": 3}', "unknown key"),
    ('{"kind": "cube", "dims": [2, 2]}', "unknown kind"),
    ('{"kind": "completion", ', "not valid JSON"),
]


@pytest.mark.parametrize("text, needle", BAD_FILES)
def test_malformed_problem_file_exits_2_with_one_line(capsys, tmp_path, text, needle):
    f = tmp_path / "bad.json"
    f.write_text(text)
    code, out, err = call(capsys, "simulate", "--problem", f, "--json", "-")
    lines = err.strip().splitlines()
    assert code == 2 and out == "" and len(lines) == 1 and needle in lines[0] and str(f) in lines[0], err


@pytest.mark.parametrize("args, needle", [
    (["--problem", "nope"], "unknown problem"),
    (["--problem", "rc20_larger:size=3"], "no parameter"),
    (["--problem", "rc20_larger", "--eps", "0.1"], "--eps applies to --problem rc20"),
    (["--problem", "random_tensor", "--model", "deep"], "--model deep needs a matrix problem"),
    (["--problem", "random_tensor"], "--rank"),
    (["--problem", "random_tensor", "--rank", "2", "--engine", "gf-mp"], "engines gf, gd, gd-cp run a cp model"),
    (["--problem", "rc20_larger", "--model", "cp", "--rank", "2"], "--model cp needs a tensor problem"),
    (["--record-every", "5"], "--record-every applies to gd"),
    (["--record-at", "1,x"], "--record-at"),
    (["--engine", "gd", "--steps", "10", "--record-at", "2.5"], "step numbers"),
    (["--save-problem", "p.txt"], ".json or .npz"),
])
def test_bad_problem_options_exit_2_with_one_line(capsys, args, needle):
    code, out, err = call(capsys, "simulate", *args, "--json", "-")
    lines = err.strip().splitlines()
    assert code == 2 and out == "" and len(lines) == 1 and needle in lines[0], err
