"""``verify list``: every claim with its kind, expectation, source and hypotheses."""

from __future__ import annotations

import json

from verify import discovery
from verify.commands import _common

HELP = "list the claims: id, kind, expectation, source, hypotheses"


def add_arguments(parser) -> None:
    parser.add_argument("--json", action="store_true", help="one JSON array of claim descriptions")
    _common.add_claims(parser)


def run(args) -> int:
    catalog = discovery.load(args.claims)
    claims = list(catalog.claims.values())
    if args.json:
        print(json.dumps([c.describe() for c in claims], indent=2, ensure_ascii=False))
        return 0
    if not claims:
        print(f"no claims registered by {', '.join(catalog.modules)}")
        return 0
    width = max(len(c.id) for c in claims)
    for c in claims:
        hyps = ", ".join(h.name for h in c.active_hypotheses) or "-"
        print(f"{c.id:<{width}}  {c.kind.value:<11}  {c.expectation.value:<7}  {c.source}  [hypotheses: {hyps}]")
    return 0
