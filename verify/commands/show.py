"""``verify show ID``: statement, hypotheses, source, how it is checked, the catalog notes it rests on (statement,
constants, derivation and sources, shipped in ``properties/catalog``), last stored verdict."""

from __future__ import annotations

import textwrap
from pathlib import Path

from models.stored import evidence
from verify import discovery, store
from verify.commands import _common

HELP = ("show one claim: statement, hypotheses, source, how it is checked, the catalog notes it rests on "
        "(constants, derivation, sources) and its last stored verdict")


def add_arguments(parser) -> None:
    parser.add_argument("id", metavar="ID", help="claim id")
    parser.add_argument("--no-notes", dest="notes", action="store_false",
                        help="leave out the catalog notes (the sections of properties/catalog/claims-catalog.md the "
                             "claim cites)")
    _common.add_claims(parser)
    _common.add_out(parser, "where to look for its last stored verdict")


def _last_record(out: Path, claim_id: str) -> dict | None:
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
    loaded = discovery.load(args.claims)
    claim = loaded.get(args.id)
    d = claim.describe()
    def wrap(text: str) -> str:
        return textwrap.fill(" ".join(text.split()), 100, initial_indent="  ", subsequent_indent="  ")
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
    from properties import catalog
    refs = catalog.for_claim(claim, loaded.claims)
    if not refs:
        print("catalog notes: none cited")
    elif not args.notes:
        print(f"catalog notes: {', '.join(refs)} (shown without --no-notes; all in docs/claims.md)")
    else:
        print(f"catalog notes ({', '.join(refs)}; the suite's notes on the papers, shipped with it):")
        for ref in refs:
            print(textwrap.indent(catalog.section(ref).rstrip(), "  | ", lambda line: True))
    rec = _last_record(Path(args.out), claim.id)
    if rec is None:
        print(f"last stored verdict: none in {args.out}")
    else:
        word = evidence.verdict_phrase(rec)
        print(f"last stored verdict: {word} ({'met' if rec.get('met') else 'NOT met'}; "
              f"{evidence.plural(rec.get('examples'), 'example')}, {rec.get('seconds')} s; "
              f"profile {rec.get('profile')}, "
              f"seed {rec.get('seed')}, commit {str(rec.get('git_commit'))[:12]})")
        ev = evidence.of_record(rec)
        if ev is not None:
            print(f"  evidence ({evidence.WHICH.get(ev.get('which'), 'stored')}): {evidence.sentence(ev)}"
                  + (f", engine {ev['engine']}" if ev.get("engine") else ""))
        if rec.get("counterexample_file"):
            print(f"  counterexample: {Path(args.out) / rec['counterexample_file']}")
    return 0
