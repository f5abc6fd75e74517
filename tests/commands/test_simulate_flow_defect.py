"""``verify simulate`` writes the gradient-flow defect of gf / gf-mp runs on deep matrix problems (issue 11).

The defect is the engine's tangent against the gradient-flow field computed independently (properties/flow_check.py):
rounding-level for the true engines on the chart, the raw factors, the end-to-end flow (non-square) and gf-mp;
the half-speed chart of tests/quality/perturb_gf_chart.py gives a defect of order 1 that exceeds the tolerance.
Small settings (loss 1e-4, a few seconds in all)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from verify.cli import main
from verify.flow_defect import MAX_ENTRIES

ROOT = Path(__file__).resolve().parents[2]


def _simulate(capsys, *args):
    code = main(["simulate", *map(str, args), "--json", "-"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


@pytest.mark.parametrize("args,path", [
    (("--depth", 3, "--until-loss", 1e-4), "chart"),
    (("--depth", 3, "--init", "gaussian", "--scale", 0.3, "--det", "positive", "--seed", 1, "--until-loss", 1e-2),
     "raw"),
    (("--problem", "random_completion:shape=2x3,rank=1,m=4,seed=0", "--depth", 2, "--scale", 0.1, "--until-loss",
      1e-3), "e2e"),
    (("--engine", "gf-mp", "--digits", 20, "--depth", 2, "--until-loss", 1e-3), None),
])
def test_true_engines_have_rounding_level_defects(capsys, args, path):
    d = _simulate(capsys, *args)
    if path is not None:
        assert d["stats"]["path"] == path
    fd = d["flow_defect"]
    assert fd["points"] == len(d["points"]) >= 3 and fd["exceeds_tolerance"] is False and fd["unresolved"] == 0
    assert fd["max"] == max(p["flow_defect"] for p in d["points"])
    assert fd["max"] < 1e-8 and fd["max_err"] < 1e-3 and fd["tolerance"] == 1e-2
    assert all(p["flow_defect_err"] >= 0 for p in d["points"])


def test_half_speed_chart_exceeds_the_tolerance(capsys, monkeypatch):
    spec = importlib.util.spec_from_file_location("__quality_dry__", ROOT / "tests/quality/perturb_gf_chart.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    for obj, name, new in mod.patches():
        monkeypatch.setattr(obj, name, new)
    d = _simulate(capsys, "--depth", 3, "--until-loss", 1e-2)
    fd = d["flow_defect"]
    assert fd["exceeds_tolerance"] is True and fd["max"] - fd["max_err"] > 0.1


def test_no_defect_where_the_check_does_not_apply(capsys):
    d = _simulate(capsys, "--engine", "gd", "--lr", 0.05, "--steps", 20)
    assert d["flow_defect"]["max"] is None and "gd" in d["flow_defect"]["note"]
    assert all("flow_defect" not in p for p in d["points"])
    d = _simulate(capsys, "--problem", "random_completion:shape=5x5,rank=1,m=10,seed=0", "--depth", 2, "--scale", 0.1,
                  "--until-loss", 1e-1)
    assert 25 > MAX_ENTRIES and d["flow_defect"]["max"] is None and "5x5" in d["flow_defect"]["note"]
