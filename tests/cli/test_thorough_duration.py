"""``thorough`` takes hours and says so: in ``verify run --help``, in the README and on the console when a run
starts (one estimate, :data:`verify.profiles.THOROUGH_HOURS`, everywhere)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from verify import profiles

ROOT = Path(__file__).resolve().parents[2]
HOURS = re.compile(r"about (\d+) h")


def test_help_readme_and_notice_give_one_thorough_estimate_in_hours():
    import argparse

    from verify.commands import _common

    parser = argparse.ArgumentParser()
    _common.add_search(parser)  # verify run's and verify ablate's --profile
    help_text = " ".join(parser.format_help().split())
    thorough = help_text[help_text.index("thorough (HOURS"):][:200]
    readme = " ".join((ROOT / "README.md").read_text().split())
    in_readme = readme[readme.index("`thorough` (**hours**"):][:600]
    notice = profiles.PROFILES["thorough"].notice
    found = [set(HOURS.findall(t)) for t in (thorough, in_readme, notice)]
    assert found == [{str(profiles.THOROUGH_HOURS)}] * 3, found
    assert notice.startswith("thorough takes hours") and not profiles.PROFILES["quick"].notice


def test_a_run_prints_its_profiles_notice_when_it_starts(run_toy, monkeypatch):
    quick = profiles.PROFILES["quick"]
    monkeypatch.setitem(profiles.PROFILES, "quick", dataclasses.replace(quick, notice="this takes a while"))
    code, out, err, _ = run_toy("toy.holds")
    lines = (out + err).splitlines()
    assert code == 0 and "this takes a while" in lines, lines
