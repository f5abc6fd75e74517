"""Fixtures of the CLI tests: the entry point called in-process on toy claims (fast, no figures)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli_helpers import TOY
from verify.cli import main


@pytest.fixture
def cli(capsys):
    """``cli(*args) -> (exit status, stdout, stderr)`` through ``verify.cli.main``."""
    def call(*args):
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err
    return call


@pytest.fixture
def run_toy(cli, tmp_path):
    """``run_toy(*ids, out=..., extra args) -> (code, stdout, stderr, out_dir)`` on the toy claims."""
    def call(*args, out=None, claims=TOY):
        out = Path(out) if out is not None else tmp_path / "out"
        code, stdout, stderr = cli("run", *args, "--claims", claims, "--out", out, "--no-figures")
        return code, stdout, stderr, out
    return call

