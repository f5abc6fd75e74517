"""The claims under pytest: which profile and seed the claim nodes use, and a verdict table at the end.

``VERIFY_CLAIMS_PROFILE`` (default ``ci``: the CI gate's derandomized profile) and ``VERIFY_CLAIMS_SEED``
(default 0) select the search; e.g. ``VERIFY_CLAIMS_PROFILE=quick pytest tests/claims`` for a fast local pass.
"""

from __future__ import annotations

import os

import pytest

from verify.profiles import get_profile

PROFILE = get_profile(os.environ.get("VERIFY_CLAIMS_PROFILE", "ci"))
SEED = int(os.environ.get("VERIFY_CLAIMS_SEED", "0"))

#: (claim id, verdict) of every claim node run in this session, for the summary table
VERDICTS: list = []


@pytest.fixture(scope="session")
def claims_profile():
    return PROFILE


@pytest.fixture(scope="session")
def claims_seed():
    return SEED


@pytest.fixture(scope="session")
def verdict_log():
    """Append ``(claim id, verdict)`` here to have it in the summary table."""
    return VERDICTS


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not VERDICTS:
        return
    tr = terminalreporter
    tr.section(f"claims: profile {PROFILE.name}, seed {SEED}")
    total = 0.0
    for cid, v in VERDICTS:
        total += v.seconds
        mark = "met" if v.met else "NOT MET"
        tr.write_line(f"{cid:<44} {v.expectation:<8} {v.status.value:<12} {mark:<8} {v.examples:>5} examples "
                      f"{v.seconds:>8.2f} s")
    tr.write_line(f"{len(VERDICTS)} claims, {total:.1f} s in the driver")
