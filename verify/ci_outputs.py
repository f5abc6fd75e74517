"""CI-native outputs of ``verify run``: a JUnit XML file and GitHub Actions annotations.

- ``--junit-xml PATH``: one ``<testcase>`` per claim of the run (``classname`` the id's prefix, ``name`` the id,
  ``time`` its seconds). A claim that met its expectation passes; one that did not has a ``<failure>`` (type
  ``violated``, ``holds`` for a conjecture that was not refuted, or ``inconclusive``) or, for an ``error``
  verdict, an ``<error>``; the ``message`` attribute carries the verdict, the counterexample inputs, the margin
  against its error estimate and the ``verify reproduce`` command, the element's text the full report (notes,
  traceback). The ``<testsuite>`` properties give the profile, seed and git commit.
- When the environment variable ``GITHUB_ACTIONS`` is ``true``: one ``::error title=...::message`` workflow
  command per claim that did not meet its expectation (with ``file=`` and ``line=`` of its check when that file
  is under the working directory, so that GitHub shows it on the code) and per baseline regression, printed on
  stdout, which GitHub shows as annotations on the run.
"""

from __future__ import annotations

import os
import shlex
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Iterable, TextIO

from models.stored import evidence
from models.stored.jsonio import atomic_write
from models.stored.verdicts import verdict_of
from verify.oneclaim import failure_text


def add_arguments(parser) -> None:
    parser.add_argument("--junit-xml", metavar="PATH", type=Path, default=None,
                        help="also write a JUnit XML file: one testcase per claim, failures with the "
                             "counterexample, margin and reproduce command (GitHub annotations are printed "
                             "when GITHUB_ACTIONS=true)")


def _reproduce_command(record: dict, out: Path) -> str | None:
    if not record.get("counterexample_file"):
        return None
    return f"verify reproduce {shlex.quote(str(Path(out) / record['counterexample_file']))}"


def one_line(record: dict, out: Path) -> str:
    """The verdict, counterexample inputs, margin against error and reproduce command on one line."""
    expected = "holds" if record.get("expectation") == "holds" else "violated"
    parts = [f"{evidence.verdict_phrase(record)} (expected {expected})"]
    cx = record.get("counterexample") or {}
    if cx.get("inputs_repr"):
        parts.append(f"counterexample {cx['inputs_repr']}")
    outcome = cx.get("outcome") or {}
    if outcome:
        parts.append(f"margin {outcome.get('margin')!r} against error {outcome.get('error')!r}")
    elif record.get("error"):
        parts.append(str(record["error"]))
    elif record.get("notes"):
        parts.append(str(record["notes"][0]))
    command = _reproduce_command(record, out)
    if command:
        parts.append(command)
    return "; ".join(parts)


def _failure_kind(record: dict) -> tuple[str, str]:
    verdict = verdict_of(record) or "error"
    return ("error", "error") if verdict == "error" else ("failure", verdict)


def junit_tree(records: Iterable[dict], out: Path, settings: dict) -> ET.ElementTree:
    """The JUnit XML document of ``records`` (see the module docstring)."""
    records = list(records)
    failures = sum(1 for r in records if not r.get("met") and verdict_of(r) != "error")
    errors = sum(1 for r in records if not r.get("met") and verdict_of(r) == "error")
    total_time = sum(float(r.get("seconds") or 0.0) for r in records)
    suites = ET.Element("testsuites", name="verify", tests=str(len(records)), failures=str(failures),
                        errors=str(errors), time=f"{total_time:.3f}")
    suite = ET.SubElement(suites, "testsuite",
                          name=f"verify run --profile {settings.get('profile')} --seed {settings.get('seed')}",
                          tests=str(len(records)), failures=str(failures), errors=str(errors), skipped="0",
                          time=f"{total_time:.3f}")
    props = ET.SubElement(suite, "properties")
    for key in ("profile", "seed", "git_commit"):
        ET.SubElement(props, "property", name=key, value=str(settings.get(key)))
    for r in records:
        cid = str(r.get("claim"))
        case = ET.SubElement(suite, "testcase", classname=cid.rsplit(".", 1)[0] if "." in cid else cid, name=cid,
                             time=f"{float(r.get('seconds') or 0.0):.3f}")
        if not r.get("met"):
            tag, kind = _failure_kind(r)
            el = ET.SubElement(case, tag, type=kind, message=one_line(r, out))
            el.text = failure_text(r, out)
        out_text = (f"{evidence.verdict_phrase(r)}: {evidence.plural(r.get('examples'), 'example')}, smallest "
                    f"normalized margin {r.get('smallest_margin')!r}, engine {r.get('engine') or '-'}")
        ET.SubElement(case, "system-out").text = out_text
    ET.indent(suites)
    return ET.ElementTree(suites)


def _write_junit(path: Path, records: Iterable[dict], out: Path, settings: dict) -> Path:
    tree = junit_tree(records, out, settings)
    return atomic_write(path, lambda fh: tree.write(fh, encoding="utf-8", xml_declaration=True))


# ----- GitHub Actions ------------------------------------------------------------------------------------------
def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def annotation(title: str, message: str, level: str = "error", where: tuple[str, int] | None = None) -> str:
    """A GitHub Actions workflow command (``::error file=F,line=N,title=...::message``), escaped."""
    props = f"file={_escape_property(where[0])},line={int(where[1])}," if where else ""
    return f"::{level} {props}title={_escape_property(title)}::{_escape_data(message)}"


def _claim_location(claim_id: str, modules) -> tuple[str, int] | None:
    """The file (relative to the working directory, as GitHub wants it) and line of a claim's check, if known."""
    import inspect

    from verify import discovery
    try:
        check = discovery.load(modules).claims[claim_id].check
        path = Path(inspect.getsourcefile(check)).resolve()
        rel = path.relative_to(Path.cwd().resolve())
        return str(rel), check.__code__.co_firstlineno
    except Exception:  # noqa: BLE001 -- not in the workspace, not a plain function: an annotation without a place
        return None


def _github_annotations(summary: dict, out: Path, modules=()) -> list[str]:
    lines = []
    for r in summary.get("claims", []):
        if not r.get("met"):
            lines.append(annotation(f"verify: {r.get('claim')} {r.get('verdict')}", one_line(r, out),
                                    where=_claim_location(r.get("claim"), modules)))
    for reg in summary.get("regressions", []):
        lines.append(annotation(f"verify regression: {reg['claim']}",
                                f"met its expectation in the baseline ({reg['baseline']}), now {reg['now']}"))
    return lines


def after_run(args, result, stream: TextIO) -> None:
    """``verify run``'s CI outputs once the run is over (called by :mod:`verify.commands.run`)."""
    summary = result.summary
    if getattr(args, "junit_xml", None) is not None:
        path = _write_junit(args.junit_xml, summary["claims"], args.out, summary)
        print(f"JUnit XML in {path}", file=stream)
    if os.environ.get("GITHUB_ACTIONS") == "true":
        for line in _github_annotations(summary, args.out, tuple(getattr(args, "claims", ()) or ())):
            print(line, file=stream)
