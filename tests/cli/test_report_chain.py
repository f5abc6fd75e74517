"""The report shows the evidence chain of every claim (issue 11, "What to build" item 5): the exact part, the
dynamic part (engine, precision, how the path was validated, smallest margin against its error) and the
statistical part (test, level, power), rendered from the stored records alone."""

from __future__ import annotations

import re

from cli_helpers import HERE, TOY, read_summary

TOY_CHAIN = str(HERE / "toy_chain.py")


def _md_row(report: str, claim: str) -> list[str]:
    section = report.split("## What each verdict rests on", 1)[1]
    row = next(ln for ln in section.splitlines() if ln.startswith(f"| `{claim}`"))
    return [c.strip() for c in re.split(r"(?<!\\)\|", row.strip().strip("|"))]


def test_the_report_renders_the_chain_of_an_exact_a_dynamic_and_a_statistical_claim(cli, tmp_path):
    out = tmp_path / "out"
    code, stdout, err = cli("run", "toychain.*", "toy.theorem", "--claims", TOY_CHAIN, "--claims", TOY,
                            "--out", out, "--no-figures")
    assert code == 0, stdout + err
    recs = {r["claim"]: r for r in read_summary(out)["claims"]}
    report = (out / "report.md").read_text()

    # exact: symbolic (sympy), its declared basis, margin against error 0
    _, verdict, exact, dynamic, stat = _md_row(report, "toychain.exact")
    assert verdict == "holds" and dynamic == "-" and stat == "-"
    assert "declared: sqrt(2)^2 = 2 proven exactly (sympy)" in exact
    assert "checked by sympy (symbolic, 1 example)" in exact and "margin 1, error 0, margin/error inf" in exact

    # dynamic: engine and precision, the gradient-flow check of the path, the smallest margin against its error
    rec = recs["toychain.dynamic"]
    fc = rec["extra"]["chain"]["flow_check"]
    assert fc["status"] == "holds" and fc["points"] >= 2 and fc["largest_defect"] < fc["tolerance"] == 1e-2
    ev = rec["extra"]["evidence"]
    _, verdict, exact, dynamic, stat = _md_row(report, "toychain.dynamic")
    assert exact == "part of the combined check: static toychain.exact proven (sympy)" and stat == "-"
    assert "engines: gf rtol=1e-10 (float64, 1 example)" in dynamic
    assert f"at {fc['points']} recorded points: holds, largest defect" in dynamic
    assert "against tolerance 0.01" in dynamic
    assert f"margin {ev['margin']:.4g}, error {ev['error']:.4g}" in dynamic
    assert ev["error"] > 0 and ev["margin"] > ev["error"]        # a real margin, cleared beyond its error
    assert "loss\\_decreased holds" in dynamic                    # the parts of the combined check

    from models.stored.chain import how_exact
    from verify.engine_facts import arithmetic
    assert rec["extra"]["chain"]["arithmetic"] == {"gf rtol=1e-10": "float64"}
    assert arithmetic("gf-mp digits=40") == "mpmath, 40 digits" and arithmetic("gf rtol=1e-12 path=raw") == "float64"
    assert arithmetic("gd") == "float64" and arithmetic("sympy + gf") == "" and arithmetic("numpy float64") == "float64"
    assert [how_exact(e) for e in ("sympy certificates", "python-flint arb", "exact rationals", "numpy float64")] \
        == ["symbolic", "certified", "exact arithmetic", "floating point, error as the check bounds it"]

    # a trajectory claim whose path was not validated says so
    _, _, _, dynamic, _ = _md_row(report, "toy.theorem")
    assert "path: not validated against the gradient-flow field (no check recorded)" in dynamic

    # statistical: test, level, power as the claim states them
    _, verdict, exact, dynamic, stat = _md_row(report, "toychain.stat")
    assert exact == "-" and dynamic == "-"
    assert "test: exact one-sided binomial, H0 P(heads) = 1" in stat
    assert "level: 0.001" in stat and "power: 0.878 (vs p 0.9)" in stat

    html = (out / "report.html").read_text()
    assert '<tr class="v-holds" id="chain-toychain.dynamic">' in html
    assert "<li>test: exact one-sided binomial, H0 P(heads) = 1</li>" in html

    # rendered from the stored JSON alone: verify report rebuilds the same chain
    (out / "report.md").unlink()
    assert cli("report", out, "--no-figures")[0] == 0
    assert (out / "report.md").read_text() == report
