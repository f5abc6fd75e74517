"""One gf-mp time estimate: ``verify simulate --help`` and the README say the same (issue 15: three different
estimates had drifted apart)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ESTIMATE = re.compile(r"(\d+-\d+) s")


def test_simulate_help_and_readme_give_one_gf_mp_estimate(capsys):
    from verify.cli import main
    try:
        main(["simulate", "--help"])
    except SystemExit:
        pass
    help_text = " ".join(capsys.readouterr().out.split())
    in_help = set(ESTIMATE.findall(help_text[help_text.index("1e-30 for gf-mp"):][:120]))
    readme = (ROOT / "README.md").read_text()
    lines = [ln for ln in readme.splitlines()
             if "gf-mp" in ln and ("--until-loss 1e-30" in ln or ln.startswith("| `gf-mp`"))]
    in_readme = {m for ln in lines for m in ESTIMATE.findall(ln)}
    assert len(lines) == 2 and len(in_help) == 1 and in_readme == in_help, (in_help, in_readme)
