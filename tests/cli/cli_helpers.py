"""Helpers of the CLI tests (a uniquely named module, so that other test directories' conftests cannot shadow it)."""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
TOY = str(HERE / "toy_claims.py")
TOY_ERRORS = str(HERE / "toy_errors.py")
BROKEN = str(HERE / "broken_claims.py")
TOY_FAULTS = str(HERE / "toy_faults.py")
TIMING_KEYS = {"seconds", "check_seconds"}


def strict_loads(text: str):
    def reject(name):
        raise AssertionError(f"non-standard JSON token {name}")
    return json.loads(text, parse_constant=reject)


def without_timings(obj):
    """``obj`` with every timing field removed (for comparing runs)."""
    if isinstance(obj, dict):
        return {k: without_timings(v) for k, v in obj.items() if k not in TIMING_KEYS}
    if isinstance(obj, list):
        return [without_timings(v) for v in obj]
    return obj


def read_summary(out: Path) -> dict:
    return strict_loads((Path(out) / "summary.json").read_text())


def read_lines(out: Path) -> list[dict]:
    return [strict_loads(line) for line in (Path(out) / "results.jsonl").read_text().splitlines()]
