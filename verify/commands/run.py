"""``verify run``: run claims, store every result, render the report, gate CI."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from models.stored import evidence
from verify import ci_outputs, outdir, runner
from verify.commands import _common
from verify.progress import make_progress
from models.stored.verdicts import verdict_of

HELP = "run claims (ids or globs; all when none) and write results.jsonl, summary.json and the report"


EPILOG = """\
writes into DIR: results.jsonl (one line per finished claim, flushed as it finishes), summary.json,
report.md, report.html, figures/ (plots drawn from the trajectories stored in figures/data/) and
counterexamples/ID.json (each with the command that reproduces it). With --junit-xml PATH, also a
JUnit XML file (one testcase per claim); with GITHUB_ACTIONS=true in the environment, one
::error annotation per claim that did not meet its expectation. Compare two runs with verify diff.
One run at a time owns DIR (a second run into it exits 2 naming the owner); a fresh run first
moves an earlier run's results, report, counterexamples and ablations into DIR/previous/ (--resume
keeps them).

exit status: 0 every claim met its expectation; 1 some claim did not (a claim past its time limit
is an error, reason timeout), or a claim that met its expectation in --baseline no longer does;
2 bad usage or bad input (unknown claim, pattern or profile, a claims module that does not import,
an unreadable baseline, --resume over results of another profile or seed, an --out that is not a
writable directory or is in use by another run); 3 an internal error (the traceback is saved to a
file named on stderr); 130 interrupted (finish with --resume)."""


def add_arguments(parser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("claims_selected", nargs="*", metavar="ID|GLOB", help="claim ids or globs (default: all)")
    _common.add_search(parser)
    _common.add_claims(parser)
    _common.add_out(parser)
    _common.add_claim_timeout(parser)
    parser.add_argument("--baseline", metavar="SUMMARY.json", type=Path,
                        help="exit 1 when a claim that met its expectation there no longer does")
    parser.add_argument("--resume", action="store_true",
                        help="keep the results already in DIR/results.jsonl and run only the missing claims")
    parser.add_argument("--no-figures", dest="figures", action="store_false",
                        help="neither compute the figure trajectories nor draw the plots (plots already in "
                             "DIR stay in the report)")
    ci_outputs.add_arguments(parser)


def _not_met_line(record: dict, out: Path) -> str:
    """``not met: ID: VERDICT (expected E); margin m, error e, margin/error r; verify reproduce FILE``: the verdict
    in the report's words and the margin against its error through :mod:`models.stored.evidence` (the numbers of the
    report, ``verify show`` and ``verify reproduce``)."""
    line = f"not met: {record['claim']}: {evidence.verdict_phrase(record)} (expected {record['expectation']})"
    ev = evidence.of_record(record)
    if ev is not None:
        line += f"; {evidence.sentence(ev)}"
    if record.get("counterexample_file"):
        line += f"; verify reproduce {out / record['counterexample_file']}"
    return line


def run(args) -> int:
    config = runner.RunConfig(
        patterns=tuple(args.claims_selected), profile=args.profile, seed=args.seed, modules=tuple(args.claims),
        out=args.out, baseline=args.baseline, jobs=args.jobs, executor=args.executor, resume=args.resume,
        figures=args.figures, claim_timeout=args.claim_timeout)
    if args.junit_xml is not None:
        outdir.writable_file(args.junit_xml, "--junit-xml")
    progress = make_progress(sys.stdout, quiet=args.quiet)
    result = runner.run(config, progress)
    t = result.summary["totals"]
    records = result.summary["claims"]
    refuted = sum(1 for r in records if evidence.verdict_word(verdict_of(r), r.get("expectation"))
                  == evidence.REFUTED_AS_EXPECTED)
    print(f"{t['met']} of {t['claims']} claims met their expectation (holds {t['holds']}, refuted as expected "
          f"{refuted}, violated {t['violated'] - refuted}, inconclusive {t['inconclusive']}, error {t['error']}); "
          f"ran {result.ran}, kept {result.kept} from results.jsonl")
    for r in result.summary["regressions"]:
        print(f"regression: {r['claim']}: {r['baseline']} in the baseline, {r['now']} now")
    for r in records:
        if not r["met"]:
            print(_not_met_line(r, Path(args.out)))
    report = result.files.get("report_html")
    print(f"results in {args.out}" + (f" (report: {report})" if report else ""))
    ci_outputs.after_run(args, result, sys.stdout)
    return result.exit_code
