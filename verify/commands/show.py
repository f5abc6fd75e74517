"""``verify show ID``: statement, hypotheses, source, how it is checked, last stored verdict."""

from __future__ import annotations

import textwrap
from pathlib import Path

from verify import discovery, store
from verify.commands import _common

HELP = "show one claim: statement, hypotheses, source, how it is checked, and its last stored verdict"


def add_arguments(parser) -> None:
    parser.add_argument("id", metavar="ID", help="claim id")
    _common.add_claims(parser)
    _common.add_out(parser, "where to look for its last stored verdict")


def last_record(out: Path, claim_id: str) -> dict | None:
    """The last record of ``claim_id`` in ``out/results.jsonl`` (or ``summary.json``), if any."""
    found = None
    try:
        for r in store.read_records(out / store.RESULTS):
            if r.get("claim") == claim_id:
                found = r
        if found is None and (out / store.SUMMARY).exists():
            for r in store.load_summary(out / store.SUMMARY, "summary").get("claims", []):
                if r.get("claim") == claim_id:
                    found = r
    except Exception:  # noqa: BLE001 -- an unreadable store only hides the last verdict
        return None
    return found


def run(args) -> int:
    claim = discovery.load(args.claims).get(args.id)
    d = claim.describe()
    wrap = lambda text: textwrap.fill(text, 100, initial_indent="  ", subsequent_indent="  ")  # noqa: E731
    print(f"{d['id']}: {d['title']}")
    print(f"source:      {d['source']}")
    print(f"kind:        {d['kind']}")
    print(f"expectation: {d['expectation']}")
    if d["parent"]:
        print(f"derived from {d['parent']} by dropping {', '.join(sorted(claim.dropped))}")
    print("statement:")
    print(wrap(d["statement"]))
    print("hypotheses:" if d["hypotheses"] else "hypotheses: none named")
    for h in d["hypotheses"]:
        print(f"  - {h['name']}{' (dropped)' if h['dropped'] else ''}: {h['text']}")
    print("how it is checked:")
    print(wrap(d["how"] or "(not described)"))
    if d.get("rests_on"):
        print("rests on:")
        for part in d["rests_on"]:
            print(wrap("- " + part))
    rec = last_record(Path(args.out), claim.id)
    if rec is None:
        print(f"last stored verdict: none in {args.out}")
    else:
        margin = rec.get("smallest_margin")
        print(f"last stored verdict: {rec.get('verdict')} ({'met' if rec.get('met') else 'NOT met'}; "
              f"{rec.get('examples')} examples, smallest margin {margin if margin is not None else '-'}, "
              f"{rec.get('seconds')} s; profile {rec.get('profile')}, seed {rec.get('seed')}, "
              f"commit {str(rec.get('git_commit'))[:12]})")
        if rec.get("counterexample_file"):
            print(f"  counterexample: {Path(args.out) / rec['counterexample_file']}")
    return 0
