"""The report shows the evidence: one margin, its error and their ratio per claim, the same in the report,
``verify show`` and ``verify reproduce``; negative controls read "refuted, as expected" in the colour of success."""

from __future__ import annotations

import math
import re
from html.parser import HTMLParser

from cli_helpers import TOY, read_summary, strict_loads
from models.stored import evidence


class _Rows(HTMLParser):
    """The claim rows of the report's tables: ``{claim: {"class": ..., "margin": ..., "error": ..., ...}}``."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.rows, self.row, self.cell, self.code = {}, None, None, False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "tr":
            self.row = {"class": a.get("class", ""), "cells": []}
        elif tag == "td" and self.row is not None:
            self.cell = {"class": a.get("class", ""), "text": ""}
        elif tag == "code":
            self.code = True

    def handle_endtag(self, tag):
        if tag == "td" and self.row is not None and self.cell is not None:
            self.row["cells"].append(self.cell)
            self.cell = None
        elif tag == "tr" and self.row is not None:
            cells = self.row["cells"]
            if cells and "margin" in " ".join(c["class"] for c in cells):
                by = {c["class"].split()[-1]: c["text"].strip() for c in cells if c["class"].startswith("num ")}
                self.rows[cells[0]["text"].strip()] = {"class": self.row["class"], "verdict": cells[4]["text"],
                                                       **by}
            self.row = None
        elif tag == "code":
            self.code = False

    def handle_data(self, data):
        if self.cell is not None:
            self.cell["text"] += data


def html_rows(path) -> dict:
    p = _Rows()
    p.feed(path.read_text())
    return p.rows


SHOW = re.compile(r"evidence \((?P<which>[^)]*)\): margin (?P<margin>\S+), error (?P<error>\S+), "
                  r"margin/error (?P<ratio>[^,\s]+)")
OUTCOME = re.compile(r"outcome: (?P<status>\w+), margin (?P<margin>\S+), error (?P<error>\S+), "
                     r"margin/error (?P<ratio>[^,\s]+)")


def test_report_show_and_reproduce_print_the_same_margin_error_and_ratio(cli, run_toy):
    code, _, err, d = run_toy("toy.holds", "toy.violated", "toy.refuted", "toy.theorem")
    assert code == 1, err
    rows = html_rows(d / "report.html")
    md = (d / "report.md").read_text()
    summary = read_summary(d)
    assert set(rows) == {"toy.holds", "toy.violated", "toy.refuted", "toy.theorem"}
    for rec in summary["claims"]:
        cid = rec["claim"]
        code, out, err = cli("show", cid, "--claims", TOY, "--out", d)
        assert code == 0, err
        m = SHOW.search(out)
        assert m, out
        shown = (m["margin"], m["error"], m["ratio"])
        assert (rows[cid]["margin"], rows[cid]["error"], rows[cid]["ratio"]) == shown, cid
        assert f"| {shown[0]} | {shown[1]} | {shown[2]} |" in next(ln for ln in md.splitlines()
                                                                    if ln.startswith(f"| `{cid}`"))
        # the numbers are the claim's own: margin in its units, error as the check returned it
        ev = rec["extra"]["evidence"]
        assert float(m["margin"]) == float(f"{ev['margin']:.4g}")
        if rec["counterexample_file"]:
            code, out, err = cli("reproduce", d / rec["counterexample_file"])
            assert code == 0, out + err
            r = OUTCOME.search(out)
            assert r and (r["margin"], r["error"], r["ratio"]) == shown, out
            assert f"stored:  violated, margin {shown[0]}, error {shown[1]}, margin/error {shown[2]}" in out
    # toy.violated: margin 1/2 - x of the stored shrunk input, in the claim's units, exact (error 0, ratio -inf)
    rec = next(r for r in summary["claims"] if r["claim"] == "toy.violated")
    doc = strict_loads((d / rec["counterexample_file"]).read_text())
    x = float.fromhex(doc["inputs"]["x"]["__float__"])
    assert rec["extra"]["evidence"]["which"] == "counterexample"
    assert rec["extra"]["evidence"]["margin"] == 0.5 - x and rows["toy.violated"]["ratio"] == "-inf"
    assert rows["toy.violated"]["error"] == "0"
    # toy.theorem: the smallest margin x (2 - x) + 1e-9 >= 1e-9 over its examples, with its error 1e-12
    th = next(r for r in summary["claims"] if r["claim"] == "toy.theorem")["extra"]["evidence"]
    assert th["which"] == "smallest" and th["error"] == 1e-12 and th["margin"] >= 1e-9
    assert math.isclose(float(rows["toy.theorem"]["ratio"]), th["margin"] / 1e-12, rel_tol=1e-2)


def test_negative_controls_read_refuted_as_expected_in_the_colour_of_success(cli, run_toy):
    code, out, err = cli("list", "--claims", TOY)
    assert "refuted" in next(ln for ln in out.splitlines() if ln.startswith("toy.refuted"))
    _, _, _, d = run_toy("toy.holds", "toy.violated", "toy.refuted")
    html = (d / "report.html").read_text()
    rows = html_rows(d / "report.html")
    assert rows["toy.refuted"]["verdict"] == "refuted, as expected"
    assert rows["toy.refuted"]["class"] == rows["toy.holds"]["class"].replace("holds", "refuted") == "v-refuted"
    assert rows["toy.violated"]["class"] == "v-violated" and rows["toy.violated"]["verdict"] == "violated"
    css = re.search(r"<style>(.*?)</style>", html, re.S).group(1)
    success = re.search(r"\.v-holds, \.v-refuted \{ background: (#[0-9a-f]{6}); \}", css)
    assert success, css
    failure = re.search(r"\.v-violated, \.v-unexpected \{ background: (#[0-9a-f]{6}); \}", css)
    assert failure and failure.group(1) != success.group(1)
    md = (d / "report.md").read_text()
    assert "| refuted, as expected | yes |" in next(ln for ln in md.splitlines() if ln.startswith("| `toy.refuted`"))
    assert "1 examples" not in md
    code, out, err = cli("show", "toy.refuted", "--claims", TOY, "--out", d)
    assert "last stored verdict: refuted, as expected (met;" in out
    code, out, err = cli("reproduce", d / "counterexamples" / "toy.refuted.json")
    assert code == 0 and "reproduced: violated (refuted, as expected)" in out


def test_a_counterexample_is_a_report_of_its_own_and_reproduce_redraws_its_figure(cli, run_toy):
    from cli_helpers import HERE

    _, _, _, d = run_toy(claims=str(HERE / "toy_trajectory.py"))  # --no-figures: nothing drawn yet
    assert not (d / "counterexamples" / "toytraj.bound.svg").exists()
    code, out, err = cli("report", d)
    assert code == 0, err
    rec = read_summary(d)["claims"][0]
    assert rec["verdict"] == "violated"
    series = rec["counterexample"]["outcome"]["detail"]["series"]
    assert series["x"] == "loss" and series["value_name"] == "w11" and len(series["points"]) == 12
    for x, margin, error, value, bound in series["points"]:  # the stored trajectory is the check's own numbers
        assert math.isclose(value - bound, margin, rel_tol=1e-12) and math.isclose(error, 2e-2 * value)
    svg = d / "counterexamples" / "toytraj.bound.svg"
    png = svg.with_suffix(".png")
    first = svg.read_bytes(), png.read_bytes()
    html = (d / "report.html").read_text()
    section = html[html.index("<h2>Counterexamples</h2>"):]
    assert '<img src="counterexamples/toytraj.bound.svg"' in section
    ev = rec["extra"]["evidence"]
    assert f"margin {evidence.num(ev['margin'])}, error {evidence.num(ev['error'])}" in section
    assert "|w11| against the claimed bound" in section and "12 recorded points" in section
    assert "the band is drawn" in section  # errors of 2e-2 |w11| are visible on this plot's scale
    md = (d / "report.md").read_text()
    assert "![toytraj.bound](counterexamples/toytraj.bound.png)" in md
    svg.unlink()
    png.unlink()
    code, out, err = cli("reproduce", d / rec["counterexample_file"])
    assert code == 0 and f"figure: {svg} and {png}" in out, out + err
    assert (svg.read_bytes(), png.read_bytes()) == first  # redrawn from the replay: the same figure, byte for byte
    code, out, err = cli("reproduce", d / rec["counterexample_file"], "--no-figure")
    assert code == 0 and "figure:" not in out
