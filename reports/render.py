"""The verification report: ``report.md`` and ``report.html`` rendered from the JSON a run stored.

:func:`render_dir` reads ``DIR/summary.json`` (or the summary its caller passes: ``verify report`` builds one
from ``DIR/results.jsonl`` through ``verify.store`` when a run was interrupted before writing it),
``DIR/ablations/*.json`` and the figure data under ``DIR/figures/data/``; it never runs a claim or a dynamics
engine and never imports ``verify``, so ``verify report DIR`` rebuilds a report without rerunning anything. The HTML comes from one Jinja2 template with autoescaping on
(a claim title holding markup is shown, never interpreted); the Markdown from the small helpers below, which
escape the same characters.
"""

from __future__ import annotations

import json
import math
import re
from collections import OrderedDict
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from models.stored import chain as evidence_chain
from models.stored import evidence
from models.stored.verdicts import VerdictStatus, verdict_of

TEMPLATES = Path(__file__).resolve().parent / "templates"
#: What each verdict word means: the sentence each :class:`~models.stored.verdicts.VerdictStatus` carries, and the words of
#: an expected refutation.
VERDICT_WORDS = {**{v.value: v.message for v in VerdictStatus},
                 evidence.REFUTED_AS_EXPECTED: VerdictStatus.VIOLATED.message + ", as expected of a conjecture or "
                                                                               "negative control"}
REFUTED_AS_EXPECTED = evidence.REFUTED_AS_EXPECTED


class ReportError(ValueError):
    """The directory holds nothing a report can be made from."""


# ----- loading -------------------------------------------------------------------------------------------------
def _read(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def load(out: str | Path, summary: dict | None = None) -> dict:
    """Everything the report shows, from the JSON files in ``out`` (``summary``: the run's summary when the caller
    has it; else ``out/summary.json``, which ``verify report`` builds from ``results.jsonl`` when it is missing)."""
    out = Path(out)
    summary_path = out / "summary.json"
    if summary is None:
        if not summary_path.exists():
            raise ReportError(f"{str(out)!r} holds no summary.json")
        summary = _read(summary_path)
    if not isinstance(summary, dict) or not isinstance(summary.get("claims"), list):
        raise ReportError(f"{str(summary_path)!r} is not a verify summary")
    ablations = []
    for path in sorted((out / "ablations").glob("*.json")):
        try:
            ablations.append(_read(path))
        except (OSError, ValueError):
            continue
    return {"summary": summary, "ablations": ablations}


# ----- presentation helpers (shared by Markdown and HTML) ------------------------------------------------------
_PAPER = re.compile(r"^(.*?\b(?:19|20)\d\d[a-z]?\b(?:\s*\([^()]*\))?)")


def paper_of(record: dict) -> str:
    """The paper a claim's ``source`` names: its authors, year and venue (``Arora, Cohen & Hazan 2018 (ICML)``),
    else the text before the first comma, else the first component of the claim id."""
    source = (record.get("source") or "").strip()
    m = _PAPER.match(source)
    if m:
        return m.group(1).strip()
    return source.split(",")[0].strip() or record["claim"].split(".")[0]


def groups(records: list[dict]) -> list[dict]:
    """Claims grouped by paper (first dotted component of the id), in first-seen order."""
    by: "OrderedDict[str, list]" = OrderedDict()
    for r in records:
        by.setdefault(r["claim"].split(".")[0], []).append(r)
    out = []
    for key, rows in by.items():
        papers = [paper_of(r) for r in rows]
        name = max(dict.fromkeys(papers), key=papers.count)
        out.append({"key": key, "paper": name, "rows": rows,
                    "met": sum(bool(r.get("met")) for r in rows), "total": len(rows)})
    return out


def fmt_num(x, digits: int = 3) -> str:
    if x is None:
        return "-"
    if isinstance(x, str):
        return x
    x = float(x)
    if not math.isfinite(x):
        return str(x)
    if x == 0:
        return "0"
    return f"{x:.{digits}g}"


def verdict_text(record: dict) -> str:
    """The verdict as the report shows it: a conjecture or negative control (expectation ``refuted``) that was
    refuted reads "refuted, as expected", in the words of ``verify list``; a claim stopped at its time limit
    reads "error (timeout after N s)" (:func:`models.stored.evidence.verdict_phrase`, as ``verify show`` and the
    console)."""
    return evidence.verdict_phrase(record)


def verdict_meaning(record: dict) -> str:
    """What the verdict means (:data:`VERDICT_WORDS`; a timeout says so)."""
    word = evidence.verdict_word(verdict_of(record), record.get("expectation"))
    limit = evidence.timeout_seconds(record)
    if limit is not None:
        return f"the claim ran past its time limit of {limit:g} s and was stopped"
    return VERDICT_WORDS.get(word, "")


def verdict_class(record: dict) -> str:
    """The CSS class of a claim's row: ``v-holds`` and ``v-refuted`` (a refutation that was expected) in the colour
    of success; ``v-violated``, ``v-inconclusive``, ``v-error`` otherwise; ``v-unexpected`` for a claim expected to
    be refuted that held."""
    v = verdict_of(record) or "error"
    if v == "violated" and record.get("expectation") == "refuted":
        return "v-refuted"
    if v == "holds" and record.get("expectation") == "refuted":
        return "v-unexpected"
    return f"v-{v}"


plural = evidence.plural  # ``1 example``, ``2 examples``: the helper every command uses


def evidence_of(record: dict) -> dict:
    """The row's evidence cells (the same numbers as ``verify show`` and ``verify reproduce``)."""
    ev = evidence.of_record(record)
    m, e, r = evidence.cells(ev)
    return {"margin": m, "error": e, "ratio": r, "which": evidence.WHICH.get((ev or {}).get("which"), ""),
            "engine": (ev or {}).get("engine") or ""}


def counterexamples(records: list[dict], out: Path, *, draw: bool = True) -> list[dict]:
    """One section per stored counterexample (violations, expected or not): the claim, its shrunk inputs, the
    margin against its error, the command that replays it, and the figure of its trajectory against the claimed
    bound (drawn here from the stored outcome when it recorded one; with ``draw=False`` the one already drawn)."""
    from reports import counterexample

    found = []
    for r in records:
        cx = r.get("counterexample")
        if verdict_of(r) != "violated" or not isinstance(cx, dict):
            continue
        ev = evidence.of_record(r)
        base = out / "counterexamples" / r["claim"]
        fig = None
        if draw:
            fig = counterexample.draw(r["claim"], cx.get("outcome"), base)
        elif base.with_suffix(".svg").exists() and base.with_suffix(".png").exists():
            fig = {"svg": base.with_suffix(".svg"), "png": base.with_suffix(".png"),
                   "caption": _cx_caption(base)}
        found.append({"claim": r["claim"], "title": r.get("title"), "verdict": verdict_text(r),
                      "class": verdict_class(r), "met": bool(r.get("met")),
                      "inputs": short_inputs(cx, limit=400), "evidence": evidence_of(r),
                      "sentence": evidence.sentence(ev), "file": r.get("counterexample_file"),
                      "svg": f"counterexamples/{Path(fig['svg']).name}" if fig else None,
                      "png": f"counterexamples/{Path(fig['png']).name}" if fig else None,
                      "caption": fig["caption"] if fig else ""})
    return found


def _cx_caption(base: Path) -> str:
    try:
        return str(json.loads(base.with_name(base.name + ".figure.json").read_text())["caption"])
    except (OSError, ValueError, KeyError, TypeError):
        return ""


def fmt_seconds(x) -> str:
    return "-" if x is None else f"{float(x):.2f}"


def last_line(text) -> str:
    """The last non-blank line of ``text``, stripped (of a traceback: the exception and its message); "" if none."""
    if not text:
        return ""
    lines = [ln for ln in str(text).strip().splitlines() if ln.strip()]
    return lines[-1].strip() if lines else ""


def short_inputs(cx, limit: int = 160) -> str:
    if not cx:
        return ""
    if isinstance(cx, dict) and isinstance(cx.get("inputs_repr"), str):
        text = cx["inputs_repr"]
    else:
        text = json.dumps(cx.get("inputs", cx) if isinstance(cx, dict) else cx, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def figures_for(out: Path, *, draw: bool = True) -> list[dict]:
    """The report's figures: drawn from ``out/figures/data``, or (``draw=False``) those already drawn there."""
    from reports import figures
    data_dir = out / "figures" / "data"
    if not data_dir.is_dir():
        return []
    return figures.render_all(data_dir, out / "figures", draw=draw)


def context(out: str | Path, *, figures: bool = True, summary: dict | None = None) -> dict:
    out = Path(out)
    data = load(out, summary)
    s = data["summary"]
    records = s["claims"]
    refuted = sum(1 for r in records if verdict_class(r) == "v-refuted")
    return {
        "summary": s,
        "totals": s.get("totals", {}),
        "groups": groups(records),
        "not_met": [r for r in records if not r.get("met")],
        "regressions": s.get("regressions", []),
        "missing": s.get("missing", []),
        "ablations": data["ablations"],
        "figures": figures_for(out, draw=figures),
        "verdict_words": VERDICT_WORDS,
        "refuted_as_expected": refuted,
        "counterexamples": counterexamples(records, out, draw=figures),
        "which_words": evidence.WHICH,
        "chains": [{"claim": r["claim"], "verdict": verdict_text(r), "class": verdict_class(r),
                    **evidence_chain.rows(r)} for r in records],
        "chain_note": CHAIN_NOTE,
    }


CHAIN_NOTE = ("What each verdict rests on: the exact part (proven symbolically, certified, or computed in floating "
              "point with the error the check bounds), the dynamic part (the engines and their arithmetic, how the "
              "path was shown to be gradient flow, the margin against its error of the example the verdict rests "
              "on) and the statistical part (the test, its level and its power, where the claim states them). "
              "'declared' lines are the claim's own account (verify show ID).")
NO_CX_FIGURE = "No figure: the check records no trajectory, only its decisive point."
MARGIN_NOTE = ("Each claim's margin is that of the example its verdict rests on (the shrunk counterexample when "
               "violated, else the first example within its error when inconclusive, else the example with the "
               "smallest normalized margin), in the claim's own units; error is the numerical error estimate of "
               "that margin, and margin/error how many estimates it clears (|margin/error| > 1 decides; inf: an "
               "exact check). verify show and verify reproduce print the same numbers.")


# ----- Markdown ------------------------------------------------------------------------------------------------
_MD_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "|": "\\|", "\n": " ", "\r": " ",
                             "`": "\\`", "*": "\\*", "_": "\\_", "[": "\\[", "]": "\\]"})


def md(text) -> str:
    """Escape text for a Markdown paragraph or table cell (no HTML, no table breaks, no emphasis)."""
    return str(text if text is not None else "").translate(_MD_ESCAPES)


def code(text) -> str:
    """Text for inside a Markdown code span (table-safe; backslash escapes do not apply in code)."""
    return str(text if text is not None else "").replace("`", "'").replace("|", "\\|").replace("\n", " ")


def md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _code_md(text: str) -> list[str]:
    fence = "```"
    while fence in text:
        fence += "`"
    return [fence + "text", text.rstrip(), fence]


def markdown(ctx: dict) -> str:
    s, t = ctx["summary"], ctx["totals"]
    lines = ["# Verification report", ""]
    lines.append(f"Profile `{code(s.get('profile', '?'))}`, seed {md(s.get('seed', '?'))}, "
                 f"commit `{code(str(s.get('git_commit', 'unknown'))[:12])}`, claims from "
                 f"{md(', '.join(s.get('claims_modules') or []) or '?')}.")
    lines.append("")
    lines.append(f"**{t.get('met', 0)} of {t.get('claims', 0)} claims met their expectation** "
                 f"(holds {t.get('holds', 0)}, refuted as expected {ctx['refuted_as_expected']}, violated "
                 f"{t.get('violated', 0) - ctx['refuted_as_expected']}, inconclusive "
                 f"{t.get('inconclusive', 0)}, error {t.get('error', 0)}; {plural(t.get('examples', 0), 'example')}, "
                 f"{fmt_seconds(t.get('seconds'))} s).")
    lines += ["", MARGIN_NOTE]
    if ctx["missing"]:
        lines += ["", f"Incomplete run: no result yet for {md(', '.join(ctx['missing']))} (rerun with `--resume`)."]
    if ctx["regressions"]:
        lines += ["", f"**Regressions against the baseline** ({md(s.get('baseline'))}):", ""]
        lines += [f"- {md(r['claim'])}: {md(r['baseline'])} before, {md(r['now'])} now" for r in ctx["regressions"]]
    lines += ["", "## Claims by paper", ""]
    for g in ctx["groups"]:
        lines += [f"### {md(g['paper'])} ({g['met']}/{g['total']} met)", ""]
        rows = []
        for r in g["rows"]:
            cx = r.get("counterexample_file")
            ev = evidence_of(r)
            rows.append([
                f"`{code(r['claim'])}`", md(r.get("title")), md(r.get("kind")), md(r.get("expectation")),
                md(verdict_text(r)), "yes" if r.get("met") else "**no**", str(r.get("examples", 0)),
                md(ev["margin"]), md(ev["error"]), md(ev["ratio"]), md(r.get("engine") or "-"),
                fmt_seconds(r.get("seconds")), f"[{md(Path(cx).name)}]({cx})" if cx else "",
            ])
        lines += md_table(["claim", "title", "kind", "expected", "verdict", "met", "examples", "margin",
                           "error", "margin/error", "engine", "seconds", "counterexample"], rows)
        lines.append("")
    lines += ["## What each verdict rests on", "", ctx["chain_note"], ""]
    crows = [[f"`{code(c['claim'])}`", md(c["verdict"])] + ["; ".join(md(x) for x in c[k]) or "-"
                                                          for k in ("exact", "dynamic", "statistical")]
             for c in ctx["chains"]]
    lines += md_table(["claim", "verdict", "exact", "dynamic", "statistical"], crows) + [""]
    if ctx["not_met"]:
        lines += ["## Claims that did not meet their expectation", ""]
        for r in ctx["not_met"]:
            lines += [f"### `{code(r['claim'])}`: {md(verdict_text(r))} (expected {md(r.get('expectation'))})", ""]
            lines += [md(verdict_meaning(r)) + ".", ""]
            if r.get("error"):
                lines += [f"Error: {md(r['error'])}", ""]
            if r.get("counterexample"):
                lines += [f"Counterexample inputs: `{code(short_inputs(r['counterexample']))}`", ""]
            if r.get("counterexample_file"):
                lines += [f"Reproduce: `verify reproduce {code(r['counterexample_file'])}` (from the report directory)",
                          ""]
            if r.get("traceback"):
                lines += _code_md(r["traceback"]) + [""]
    if ctx["counterexamples"]:
        lines += ["## Counterexamples", ""]
        for c in ctx["counterexamples"]:
            lines += [f"### `{code(c['claim'])}`: {md(c['verdict'])}", "", md(c["title"]) + ".", "",
                      f"Shrunk inputs: `{code(c['inputs'])}`", "",
                      f"Margin against its error: {md(c['sentence'])}"
                      + (f" (engine {md(c['evidence']['engine'])})" if c["evidence"]["engine"] else "") + ".", ""]
            if c["file"]:
                lines += [f"Replay and redraw: `verify reproduce {code(c['file'])}` (from the report directory).", ""]
            if c["png"]:
                lines += [f"![{md(c['claim'])}]({c['png']})", "", md(c["caption"]), ""]
            else:
                lines += [NO_CX_FIGURE, ""]
    if ctx["ablations"]:
        lines += ["## Ablations", ""]
        for a in ctx["ablations"]:
            lines += [f"### `{code(a['claim'])}`: {md(a.get('title'))}", "",
                      f"Profile `{code(a.get('profile'))}`, seed {md(a.get('seed'))}.", ""]
            rows = []
            for h in a.get("hypotheses", []):
                if h.get("necessary"):
                    shown = "necessary: counterexample" + (f" [{md(Path(h['counterexample_file']).name)}]"
                                                           f"({h['counterexample_file']})"
                                                           if h.get("counterexample_file") else "")
                elif verdict_of(h) == "error":
                    shown = "error"
                else:
                    shown = f"not shown necessary ({plural(h.get('examples', 0), 'example')} tried)"
                rows.append([f"`{code(h['hypothesis'])}`", md(h.get("text")), md(verdict_of(h)), shown])
            lines += md_table(["dropped hypothesis", "statement", "verdict without it", "result"], rows) + [""]
    if ctx["figures"]:
        lines += ["## Figures", ""]
        for f in ctx["figures"]:
            lines += [f"![{md(f['name'])}](figures/{f['png']})", "", md(f["caption"]), ""]
            lines += [f"- note: {md(n)}" for n in f.get("notes", [])]
            if f.get("notes"):
                lines.append("")
    lines += ["## Versions", "", "| package | version |", "|---|---|"]
    lines += [f"| {md(k)} | {md(v)} |" for k, v in (s.get("versions") or {}).items()]
    return "\n".join(lines).rstrip() + "\n"


# ----- HTML ----------------------------------------------------------------------------------------------------
def _environment() -> Environment:
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)),
                      autoescape=select_autoescape(enabled_extensions=("html",), default=True),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters.update(num=fmt_num, seconds=fmt_seconds, last_line=last_line, inputs=short_inputs,
                       basename=lambda p: Path(p).name, verdict=verdict_text, vclass=verdict_class,
                       verdict_meaning=verdict_meaning,
                       evidence=evidence_of)
    env.globals.update(plural=plural, margin_note=MARGIN_NOTE, no_cx_figure=NO_CX_FIGURE)
    return env


def html(ctx: dict) -> str:
    return _environment().get_template("report.html").render(**ctx)


def render_dir(out: str | Path, *, figures: bool = True, summary: dict | None = None) -> dict:
    """Write ``report.md`` and ``report.html`` (and the figures, from stored data) into ``out`` (``summary``: as
    :func:`load`)."""
    out = Path(out)
    ctx = context(out, figures=figures, summary=summary)
    md_path, html_path = out / "report.md", out / "report.html"
    md_path.write_text(markdown(ctx), encoding="utf-8")
    html_path.write_text(html(ctx), encoding="utf-8")
    return {"report_md": md_path, "report_html": html_path,
            "figures": [out / "figures" / f["svg"] for f in ctx["figures"]]}
