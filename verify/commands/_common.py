"""Arguments shared by several ``verify`` subcommands."""

from __future__ import annotations

import argparse
from pathlib import Path

from verify.profiles import PROFILES as _PROFILES
from verify.runner import DEFAULT_OUT, PROFILES


def seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"seed must be an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"seed must be an integer >= 0, got {text!r}")
    return value


def jobs(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"jobs must be an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"jobs must be an integer >= 1, got {text!r}")
    return value


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0, got {text!r}")
    return value


def add_claim_timeout(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--claim-timeout", type=seconds, default=None, metavar="SECONDS",
                        help="stop a claim still running after SECONDS and record it as error (reason timeout); "
                             "overrides the claim's own limit and the profile's (quick 300, ci 600, thorough "
                             "21600); enforced by killing the worker process (on dask: the claim's child process "
                             "on the dask worker; a worker that stops answering is given up on after the limit + "
                             "330 s)")


def add_claims(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--claims", metavar="MODULE", action="append", default=[],
                        help="import claims from MODULE (dotted name or .py path) instead of the built-in ones; "
                             "repeatable; name 'properties' to add the built-in ones")


def add_out(parser: argparse.ArgumentParser, help: str = "output directory") -> None:
    parser.add_argument("--out", metavar="DIR", type=Path, default=DEFAULT_OUT, help=f"{help} (default {DEFAULT_OUT})")


def add_search(parser: argparse.ArgumentParser) -> None:
    """--profile, --seed, --jobs, --executor."""
    parser.add_argument("--profile", choices=PROFILES, default="quick",
                        help="search budget: " + "; ".join(f"{p.name} ({p.takes})" for p in _PROFILES.values()))
    parser.add_argument("--seed", type=seed, default=0, help="run seed (default 0); the same seed gives the same "
                                                             "verdicts and counterexamples")
    parser.add_argument("--jobs", type=jobs, default=1, metavar="N",
                        help="with --executor local, run claims in a pool of N worker processes (default 1; each "
                             "claim runs in a worker that its time limit can stop); a dask cluster uses all its "
                             "worker threads")
    parser.add_argument("--executor", default="local", metavar="local|dask://HOST:PORT",
                        help="where tasks run: local (default) or a dask.distributed scheduler (optional extra)")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
