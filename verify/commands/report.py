"""``verify report DIR``: rebuild report.md and report.html from the stored JSON, without rerunning."""

from __future__ import annotations

from pathlib import Path

from models.errors import InvalidInput
from verify import store
from verify.runner import DEFAULT_OUT

HELP = "rebuild report.md, report.html and the figures of DIR from its stored JSON (nothing is rerun)"


def add_arguments(parser) -> None:
    parser.add_argument("dir", metavar="DIR", nargs="?", type=Path, default=DEFAULT_OUT,
                        help=f"a verify run's output directory (default {DEFAULT_OUT})")
    parser.add_argument("--no-figures", dest="figures", action="store_false", help="do not redraw the figures (those already drawn in DIR/figures stay in the report)")


def run(args) -> int:
    from reports import render
    if not Path(args.dir).is_dir():
        raise InvalidInput(f"{str(args.dir)!r} is not a directory")
    summary = None
    if not (Path(args.dir) / store.SUMMARY).exists():  # an interrupted run: build its summary from the records
        if not (Path(args.dir) / store.RESULTS).exists():
            raise InvalidInput(f"cannot render {str(args.dir)!r}: it holds no summary.json or results.jsonl")
        records = store.read_records(Path(args.dir) / store.RESULTS)
        summary = store.build_summary(records, [r["claim"] for r in records], {})
    try:
        files = render.render_dir(args.dir, figures=args.figures, summary=summary)
    except (render.ReportError, ValueError, KeyError) as exc:
        raise InvalidInput(f"cannot render {str(args.dir)!r}: {exc}") from None
    print(f"wrote {files['report_md']} and {files['report_html']}"
          + (f" with {len(files['figures'])} figures" if files["figures"] else ""))
    return 0
