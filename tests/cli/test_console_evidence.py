"""The console of ``verify run`` prints the evidence of the report, ``verify show`` and ``verify reproduce``: the
same margin, error and ratio (through :mod:`models.stored.evidence`), the same verdict words ("refuted, as expected",
"error (timeout after N s)"), and "1 example" rather than "1 examples" (issue 15)."""

from __future__ import annotations

import re

from cli_helpers import TOY, TOY_FAULTS, read_summary

NUMS = r"margin (\S+), error (\S+), margin/error ([^;,\s]+)"


def test_console_margin_and_verdict_words_match_show_report_and_reproduce(run_toy, cli):
    code, stdout, err, out = run_toy("toy.violated", "toy.refuted", "toy.holds")
    assert code == 1, stdout + err
    rec = {r["claim"]: r for r in read_summary(out)["claims"]}["toy.violated"]
    ev = rec["extra"]["evidence"]
    assert ev["margin"] < -ev["error"]          # a real violation: the margin clears its error

    line = next(ln for ln in stdout.splitlines() if ln.startswith("not met: toy.violated"))
    assert line.startswith("not met: toy.violated: violated (expected holds); margin ")
    console = re.search(NUMS, line).groups()

    code, shown, _ = cli("show", "toy.violated", "--claims", TOY, "--out", out, "--no-notes")
    assert code == 0
    assert re.search(NUMS, shown).groups() == console

    report = (out / "report.md").read_text()
    row = next(ln for ln in report.splitlines() if ln.startswith("| `toy.violated`"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert tuple(cells[7:10]) == console           # margin, error, margin/error columns
    html = (out / "report.html").read_text()
    assert f'<td class="num margin" title="the shrunk counterexample">{console[0]}</td>' in html

    code, replayed, _ = cli("reproduce", out / rec["counterexample_file"], "--no-figure")
    assert code == 0
    stored = next(ln for ln in replayed.splitlines() if ln.startswith("stored:"))
    assert re.search(NUMS, stored).groups() == console

    # a negative control reads "refuted, as expected" in progress lines, the summary line and the report
    progress = next(ln for ln in stdout.splitlines() if "toy.refuted" in ln and ln.startswith("["))
    assert " refuted, as expected " in progress and " violated " not in progress
    summary = next(ln for ln in stdout.splitlines() if "claims met their expectation" in ln)
    assert "(holds 1, refuted as expected 1, violated 1, inconclusive 0, error 0)" in summary
    assert "| refuted, as expected |" in report


def test_one_example_is_singular_everywhere(run_toy, cli):
    from models.stored import evidence
    assert [evidence.plural(n, "example") for n in (0, 1, 2, None)] == \
        ["0 examples", "1 example", "2 examples", "0 examples"]
    code, stdout, err, out = run_toy("toy.holds")
    assert code == 0
    rec = read_summary(out)["claims"][0]
    rec1 = {**rec, "examples": 1}
    from reports import render
    from verify import ci_outputs
    from verify.oneclaim import failure_text
    assert render.plural(1, "example") == "1 example"
    junit = ci_outputs.junit_tree([rec1], out, {}).getroot()
    assert "1 example," in junit.find(".//system-out").text
    assert "no counterexample in 1 example;" in failure_text(rec1, out)
    for text in (stdout, (out / "report.md").read_text(), (out / "report.html").read_text(),
                 cli("show", "toy.holds", "--claims", TOY, "--out", out, "--no-notes")[1]):
        assert not re.search(r"\b1 examples\b", text)


def test_a_timeout_reads_error_timeout_after_n_s_on_the_console_in_show_and_the_report(run_toy, cli):
    # toyfault.hang spins for ever and declares timeout=1.0
    code, stdout, err, out = run_toy("toyfault.hang", claims=TOY_FAULTS)
    assert code == 1, stdout + err
    rec = read_summary(out)["claims"][0]
    assert rec["verdict"] == "error" and rec["reason"] == "timeout"
    word = "error (timeout after 1 s)"
    progress = next(ln for ln in stdout.splitlines() if ln.startswith("[1/1]"))
    assert f" {word} " in progress
    assert f"not met: toyfault.hang: {word} (expected holds)" in stdout
    from verify import ci_outputs
    assert ci_outputs.one_line(rec, out).startswith(f"{word} (expected holds)")   # JUnit and annotations
    from verify.oneclaim import failure_text
    assert failure_text(rec, out).startswith(f"claim toyfault.hang: {word} (expected holds)")  # pytest plugin
    code, shown, _ = cli("show", "toyfault.hang", "--claims", TOY_FAULTS, "--out", out, "--no-notes")
    assert f"last stored verdict: {word} (NOT met;" in shown
    md = (out / "report.md").read_text()
    assert f"| {word} |" in md and f"### `toyfault.hang`: {word} (expected holds)" in md
    assert "ran past its time limit of 1 s" in md
    html = (out / "report.html").read_text()
    assert f"<td title=\"the claim ran past its time limit of 1 s and was stopped\">{word}</td>" in html
