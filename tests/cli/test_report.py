"""The report: well-formed HTML that escapes markup, Markdown, byte-stable figures, rebuilt from JSON only."""

from __future__ import annotations

import json
import math
from html.parser import HTMLParser

import pytest

from cli_helpers import TOY, read_summary, without_timings

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class _WellFormed(HTMLParser):
    """Checks that every element is closed in order (void elements excepted) and collects script tags."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.errors, self.scripts, self.text = [], [], 0, []

    def handle_starttag(self, tag, attrs):
        if tag == "script":
            self.scripts += 1
        if tag not in VOID:
            self.stack.append((tag, self.getpos()))

    def handle_startendtag(self, tag, attrs):
        if tag not in VOID:
            self.errors.append(f"self-closed non-void <{tag}/> at {self.getpos()}")

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.stack or self.stack[-1][0] != tag:
            self.errors.append(f"</{tag}> at {self.getpos()} closes {self.stack[-1] if self.stack else 'nothing'}")
        else:
            self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def check_html(text: str) -> _WellFormed:
    assert text.startswith("<!DOCTYPE html>")
    p = _WellFormed()
    p.feed(text)
    p.close()
    assert not p.errors, p.errors
    assert not p.stack, f"unclosed: {p.stack}"
    return p


@pytest.fixture
def report_dir(run_toy, cli, tmp_path):
    code, out, err, d = run_toy()
    assert code == 1
    code, out, err = cli("ablate", "toy.theorem", "--claims", TOY, "--out", d)
    assert code == 0, out + err
    return d


def test_html_is_well_formed_and_escapes_a_title_with_markup(report_dir):
    html = (report_dir / "report.html").read_text()
    p = check_html(html)
    assert p.scripts == 0  # the title's <script> is shown, not interpreted
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in html
    assert "<b>bold</b>" not in html and "<i>Markup</i>" not in html
    assert "<script>alert('x')</script> & <b>bold</b> | pipe" in "".join(p.text)
    # the content: a table by paper, the claim that failed, the ablation, the reproduce command
    assert "Toy 2024 (6/7 met)" in html
    assert "verify reproduce counterexamples/toy.violated.json" in html
    assert "Ablations" in html and "not shown necessary (7 examples tried)" in html


def test_markdown_escapes_markup_and_table_breaks(report_dir):
    md = (report_dir / "report.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| `toy.markup`"))
    assert "&lt;script&gt;" in row and "<script>" not in md and "<b>" not in md
    assert row.count(" | ") == 12  # 13 cells: the title's pipe is escaped
    assert "| `toy.violated` |" in md and "**no**" in md
    assert "[toy.violated.json](counterexamples/toy.violated.json)" in md
    assert "| `nonnegative` | x &gt;= 0 | violated | necessary: counterexample" in md


def test_report_is_rebuilt_from_stored_json_without_rerunning(report_dir, cli, monkeypatch):
    from verify import driver, runner

    def forbidden(*a, **k):
        raise AssertionError("the report must not rerun claims")

    monkeypatch.setattr(driver, "run_claim", forbidden)
    monkeypatch.setattr(runner, "execute", forbidden)
    before = (report_dir / "report.html").read_text()
    (report_dir / "report.html").unlink()
    (report_dir / "report.md").unlink()
    code, out, err = cli("report", report_dir)
    assert code == 0, err
    assert (report_dir / "report.html").read_text() == before
    assert (report_dir / "report.md").exists()


def test_report_of_an_interrupted_run_builds_its_summary_from_the_records(cli, report_dir):
    before = (report_dir / "report.md").read_text()
    (report_dir / "summary.json").unlink()
    code, out, err = cli("report", report_dir, "--no-figures")
    assert code == 0, err
    assert not (report_dir / "summary.json").exists()          # built in memory by the command, not written
    md = (report_dir / "report.md").read_text()
    assert md.count("`toy.") == before.count("`toy.") > 0


def test_report_of_a_directory_without_results_is_bad_input(cli, tmp_path):
    code, out, err = cli("report", tmp_path)
    assert code == 2 and "holds no summary.json or results.jsonl" in err


def _synthetic_data(data_dir):
    data_dir.mkdir(parents=True)
    pts = []
    for k in range(12):
        loss = 10.0 ** (-k)
        r = math.sqrt(2 * loss)
        w11 = (1 - min(r, 0.9)) ** 2 / r * 1.1
        pts.append({"t": float(k), "loss": loss, "w11": w11, "bound": "inf" if k == 0 else 1.0, "sigma": [w11, r],
                    "erank": 1.0 + r, "det_sign": 1, "norm": w11, "loss_err": 1e-16, "product_err": 1e-9 * w11,
                    "sigma2_err": 2e-9 * w11, "s": r, "w11_s": w11 * r, "bound_s": (1 - r) ** 2 if r < 1 else 0.0,
                    "erank_minus_one": r})
    run = {"label": "depth 2", "settings": {"init": "balanced"}, "status": "completed", "points": pts}
    for name in ("rc20_depths", "det_sign", "rc20_perturbed"):
        (data_dir / f"{name}.json").write_text(json.dumps({"figure": name, "runs": [run]}))
    cp = {"label": "cp", "settings": {}, "status": "budget", "engine": "gd", "message": "stopped",
          "points": [{"t": float(k), "loss": 10.0 ** (-k / 3), "norms": [1.0 + k, 0.1, "nan"]} for k in range(20)]}
    (data_dir / "cp_norms.json").write_text(json.dumps({"figure": "cp_norms", "runs": [cp]}))


def test_figures_are_drawn_from_stored_data_and_byte_stable(tmp_path):
    from reports import figures

    _synthetic_data(tmp_path / "data")
    first = figures.render_all(tmp_path / "data", tmp_path / "a")
    assert [f["name"] for f in first] == ["rc20_w11", "rc20_sigma_erank", "det_sign", "rc20_perturbed", "cp_norms"]
    for f in first:
        assert (tmp_path / "a" / f["svg"]).stat().st_size > 1000 and (tmp_path / "a" / f["png"]).stat().st_size > 1000
    for spec in (figures.FIGURES[0], figures.FIGURES[-1]):  # redraw two (time): same bytes
        data = json.loads((tmp_path / "data" / f"{spec.data}.json").read_text())
        for path in figures.render_figure(spec, data, tmp_path / "b"):
            assert path.read_bytes() == (tmp_path / "a" / path.name).read_bytes(), path.name
    svg = (tmp_path / "a" / "rc20_w11.svg").read_text()
    assert "<dc:date>" not in svg
    assert any("budget" in n for n in first[-1]["notes"])


def test_figures_appear_in_the_report(report_dir, cli):
    _synthetic_data(report_dir / "figures" / "data")
    code, out, err = cli("report", report_dir)
    assert code == 0 and "with 5 figures" in out
    html = (report_dir / "report.html").read_text()
    check_html(html)
    assert '<img src="figures/rc20_w11.svg"' in html
    assert "![rc20\\_w11](figures/rc20_w11.png)" in (report_dir / "report.md").read_text()
    assert read_summary(report_dir)["totals"]["claims"] == 7


def test_report_without_redrawing_keeps_the_drawn_figures(report_dir, cli, monkeypatch):
    from reports import figures

    _synthetic_data(report_dir / "figures" / "data")
    data = json.loads((report_dir / "figures" / "data" / "cp_norms.json").read_text())
    figures.render_figure(figures.FIGURES[-1], data, report_dir / "figures")  # only cp_norms is drawn
    monkeypatch.setattr(figures, "render_figure", lambda *a: (_ for _ in ()).throw(AssertionError("redrawn")))
    code, out, err = cli("report", report_dir, "--no-figures")
    assert code == 0, err
    html = (report_dir / "report.html").read_text()
    assert html.count("<figure>") == 1 and '<img src="figures/cp_norms.svg"' in html


@pytest.mark.parametrize("source, paper", [
    ("Arora, Cohen & Hazan 2018 (ICML), conservation lemma", "Arora, Cohen & Hazan 2018 (ICML)"),
    ("Razin & Cohen 2020 (NeurIPS), arXiv 2005.06398, Theorem 1", "Razin & Cohen 2020 (NeurIPS)"),
    ("Gunasekar et al. 2017, Conjecture 1", "Gunasekar et al. 2017"),
    ("My notes, claim 3", "My notes"),
    ("", "x"),
])
def test_claims_are_grouped_by_the_paper_their_source_names(source, paper):
    from reports.render import paper_of

    assert paper_of({"source": source, "claim": "x.y"}) == paper


def test_run_writes_figure_data_from_the_engines_and_draws_it(cli, tmp_path, monkeypatch):
    """The runner computes the figure trajectories (a reduced spec here, to stay fast) and the report draws them."""
    from verify import figure_data

    small = {
        "rc20_depths": {"runs": [{**r, "until_loss": 1e-3, "per_decade": 2}
                                 for r in figure_data.FIGURES["rc20_depths"]["runs"][:2]]},
        "cp_norms": {"runs": [{**figure_data.FIGURES["cp_norms"]["runs"][0], "steps": 40, "record_every": 20}]},
    }
    monkeypatch.setattr(figure_data, "FIGURES", small)
    monkeypatch.setattr(figure_data, "FIGURE_CLAIMS", {})   # the reduced specs illustrate no claim: any run draws them
    d = tmp_path / "out"
    code, out, err = cli("run", "toy.holds", "--claims", TOY, "--out", d)
    assert code == 0, out + err
    depths = json.loads((d / "figures" / "data" / "rc20_depths.json").read_text())
    assert [r["status"] for r in depths["runs"]] == ["completed", "completed"]
    last = depths["runs"][0]["points"][-1]
    assert last["loss"] <= 1e-3 * (1 + 1e-9) and last["w11"] >= last["bound"] > 0
    cp = json.loads((d / "figures" / "data" / "cp_norms.json").read_text())
    assert [p["t"] for p in cp["runs"][0]["points"]] == [0, 20, 40] and len(cp["runs"][0]["points"][1]["norms"]) == 4
    assert {p.name for p in (d / "figures").glob("*.svg")} == {"rc20_w11.svg", "rc20_sigma_erank.svg",
                                                                 "cp_norms.svg"}
    html = (d / "report.html").read_text()
    check_html(html)
    assert html.count("<figure>") == 3
    # recomputed elsewhere: the same data (timings aside), hence byte-identical figures (test above)
    again = figure_data.ensure(tmp_path / "again")
    for name in small:
        a = without_timings(json.loads((d / "figures" / "data" / f"{name}.json").read_text()))
        b = without_timings(json.loads((again / f"{name}.json").read_text()))
        assert a == b, name
    # cached: a second run does not recompute the trajectories
    monkeypatch.setattr(figure_data, "compute", lambda name: (_ for _ in ()).throw(AssertionError(name)))
    code, out, err = cli("run", "toy.holds", "--claims", TOY, "--out", d, "--resume")
    assert code == 0, out + err


def test_a_traceback_is_summarized_by_its_last_line():
    from reports.render import last_line
    tb = "Traceback (most recent call last):\n  File \"x.py\", line 1, in <module>\n    f()\nValueError: bad z\n\n"
    assert last_line(tb) == "ValueError: bad z"
    assert last_line("  one line  ") == "one line" and last_line("") == "" and last_line(None) == "" \
        and last_line("\n \n") == ""
