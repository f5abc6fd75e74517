"""examples/ci/verify.yml: valid YAML, and every ``verify`` command in it parses with the current CLI."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from verify.cli import build_parser

WORKFLOW = Path(__file__).resolve().parents[2] / "examples" / "ci" / "verify.yml"


def _steps():
    doc = yaml.safe_load(WORKFLOW.read_text())
    return doc["jobs"]["claims"]["steps"]


def _commands():
    out = []
    for step in _steps():
        for m in re.finditer(r"\.venv/bin/verify ([^|;>}\n]*)", step.get("run", "")):
            out.append(shlex.split(m.group(1)))
    return out


def test_every_verify_command_parses():
    commands = _commands()
    assert [c[0] for c in commands] == ["run", "run", "diff"]
    parser = build_parser()
    for argv in commands:
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # pragma: no cover -- the failure message is the point
            pytest.fail(f"verify {' '.join(argv)} does not parse (exit {exc.code})")
        if argv[0] == "run":
            assert args.junit_xml == Path("reports/ci/junit.xml") and args.profile == "ci"
    assert "--baseline" in commands[0] and "--baseline" not in commands[1]


def test_the_baseline_is_kept_as_an_artifact_and_fetched_back():
    steps = {s.get("name"): s for s in _steps()}
    keep = steps["Keep the baseline (default branch only)"]
    assert keep["uses"].startswith("actions/upload-artifact@")
    assert keep["with"]["name"] == "verify-baseline" and keep["with"]["path"] == "reports/ci/summary.json"
    fetch = steps["Fetch the baseline of the default branch"]["run"]
    assert "gh run download" in fetch and "--name verify-baseline --dir baseline" in fetch
