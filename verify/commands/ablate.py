"""``verify ablate ID``: rerun a theorem once per named hypothesis dropped and tabulate which are necessary."""

from __future__ import annotations

import sys
from pathlib import Path

from models.stored import evidence
from verify import runner
from verify.commands import _common
from verify.progress import make_progress

HELP = ("rerun a theorem claim once per named hypothesis dropped; a counterexample shows the hypothesis "
        "necessary. Writes DIR/ablations/ID.json and adds the table to DIR's report if it has one; exit 0, or 1 "
        "when a rerun raised")


def add_arguments(parser) -> None:
    parser.add_argument("id", metavar="ID", help="theorem claim id")
    _common.add_search(parser)
    _common.add_claims(parser)
    _common.add_out(parser, "where ablations/ID.json and counterexamples go")
    _common.add_claim_timeout(parser)


def run(args) -> int:
    doc = runner.ablate(args.id, profile=args.profile, seed=args.seed, modules=tuple(args.claims), out=args.out,
                        jobs=args.jobs, executor=args.executor, progress=make_progress(sys.stdout, quiet=args.quiet),
                        claim_timeout=args.claim_timeout)
    rows = doc["hypotheses"]
    width = max(len(h["hypothesis"]) for h in rows)
    print(f"ablation of {doc['claim']} ({doc['title']}), profile {doc['profile']}, seed {doc['seed']}:")
    for h in rows:
        if h["necessary"]:
            result = "NECESSARY: counterexample"
            if h["counterexample_file"]:
                result += f" in {Path(args.out) / h['counterexample_file']}"
        elif h["verdict"] == "error":
            result = f"error: {h['record'].get('error') or 'see the record'}"
        else:
            result = f"not shown necessary: {h['verdict']} on {evidence.plural(h['examples'], 'example')}"
        print(f"  without {h['hypothesis']:<{width}}  {result}")
    print(f"written to {doc['file']}")
    return 1 if any(h["verdict"] == "error" for h in rows) else 0
