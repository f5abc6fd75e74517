"""The ``verify`` command line.

Each subcommand lives in ``verify/commands/<name>.py`` with ``HELP``, ``add_arguments(parser)`` and
``run(args) -> int``; :data:`COMMANDS` maps the subcommand name to its module. ``verify`` with no subcommand is
``verify run --profile quick``.

Exit status: 0 every claim met its expectation (or the command succeeded), 1 some claim did not (or regressed
against a baseline), 2 bad usage or bad input, with a one-line reason on stderr, 3 an internal error: any other
exception is a bug of the suite, not an answer; its traceback is saved to a file (``verify-crash-*.txt`` in the
temporary directory) and stderr gets one line naming it. 130: interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
import traceback

from models.errors import SuiteError

COMMANDS: dict[str, str] = {
    "run": "verify.commands.run",
    "list": "verify.commands.list",
    "show": "verify.commands.show",
    "ablate": "verify.commands.ablate",
    "reproduce": "verify.commands.reproduce",
    "report": "verify.commands.report",
    "simulate": "verify.commands.simulate",
    "bench": "verify.commands.bench",
    "diff": "verify.commands.diff",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="verify",
        description="Property-based verification of implicit-regularization theorems (RC20, ACHL19, RMC21). "
                    "With no command: verify run --profile quick. Claims also run as pytest items "
                    "(pytest --verify-claims MODULE, or @claim in a test file) and from Python "
                    "(verify.check(ID)); see the README.",
        epilog="exit status: 0 every claim met its expectation (or the command succeeded); 1 some claim did not "
               "(or a run did not complete); 2 bad usage or bad input, one line on stderr; 3 an internal error, "
               "one line on stderr naming the file that holds the traceback; 130 interrupted.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, modname in COMMANDS.items():
        try:
            mod = importlib.import_module(modname)
        except ModuleNotFoundError as exc:
            if exc.name != modname:
                raise
            continue
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or argv[0].startswith("-") and argv[0] not in ("-h", "--help"):
        argv = ["run", "--profile", "quick"] + argv if not argv else ["run"] + argv
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    if getattr(args, "_run", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args._run(args))
    except SuiteError as exc:
        print(f"verify {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"verify {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 -- a bug: save the traceback, answer with one line
        where = _save_traceback(exc, argv)
        print(f"verify {args.command}: internal error: {type(exc).__name__}: {_one_line(exc)}; "
              f"traceback in {where}", file=sys.stderr)
        return 3


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 200 else text[:197] + "..."


def _save_traceback(exc: BaseException, argv: list[str]) -> str:
    """Write the traceback of ``exc`` (and the command line) to a new file; its path (or why it could not)."""
    text = "verify " + " ".join(argv) + "\n\n" + "".join(
        traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        with tempfile.NamedTemporaryFile("w", prefix="verify-crash-", suffix=".txt", delete=False,
                                         encoding="utf-8") as fh:
            fh.write(text)
        return fh.name
    except OSError as err:
        return f"nowhere (could not write one: {err.strerror or err})"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
