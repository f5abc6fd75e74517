"""``verify reproduce FILE``: rerun a stored counterexample; exit 0 when its stored verdict reproduces, 1 when not."""

from __future__ import annotations

import traceback
from pathlib import Path

from models.errors import InvalidInput
from properties.api import Outcome
from models.stored import evidence
from verify import discovery, store
from verify.commands import _common

HELP = ("rerun the check of a stored counterexample (counterexamples/ID.json); exit 0 when its stored verdict "
        "reproduces, 1 when not, 2 when the file is unusable")


def add_arguments(parser) -> None:
    parser.add_argument("file", metavar="FILE", type=Path, help="a counterexamples/ID.json written by verify run")
    parser.add_argument("--no-figure", dest="figure", action="store_false",
                        help="do not redraw the counterexample's figure (FILE's name with .svg and .png: its "
                             "trajectory against the claimed bound, drawn from the replayed outcome)")
    _common.add_claims(parser)


def load(path: Path) -> dict:
    doc = store.read_json(path, "counterexample file")
    if not isinstance(doc, dict) or not isinstance(doc.get("claim"), str) or "verdict" not in doc \
            or not isinstance(doc.get("inputs"), dict):
        raise InvalidInput(f"{str(path)!r} is not a counterexample file (needs claim, verdict and inputs)")
    return doc


def _claim_of(doc: dict, modules) -> "object":
    """The claim a counterexample file was made for (rebuilding an ablation from its parent)."""
    catalog = discovery.load(modules)
    if doc["claim"] in catalog.claims:
        return catalog.claims[doc["claim"]]
    if doc.get("parent") and doc.get("dropped"):
        return discovery.ablated(catalog.get(doc["parent"]), doc["dropped"])
    return catalog.get(doc["claim"])


def redraw(claim_id: str, outcome, path: Path) -> None:
    """Draw the replayed outcome's trajectory against the claimed bound next to ``path`` (one line either way)."""
    from reports import counterexample
    from verify import driver
    base = path.parent / path.stem
    try:
        fig = counterexample.draw(claim_id, driver.outcome_to_json(outcome), base)
    except OSError as exc:
        print(f"figure: not drawn ({type(exc).__name__}: {exc})")
        return
    print(f"figure: {fig['svg']} and {fig['png']}" if fig else
          "figure: none (the check records no trajectory, only its decisive point)")


def run(args) -> int:
    doc = load(args.file)
    claim = _claim_of(doc, args.claims or doc.get("claims_modules") or ())
    from verify import driver
    try:
        inputs = driver.inputs_from_json(doc["inputs"])
    except Exception as exc:  # noqa: BLE001 -- stored inputs that no longer decode are bad input
        raise InvalidInput(f"{str(args.file)!r}: inputs do not decode: {type(exc).__name__}: {exc}") from None
    expected = doc["verdict"]
    print(f"{claim.id}: replaying the stored counterexample (stored verdict {expected}, profile {doc.get('profile')}, "
          f"seed {doc.get('seed')}, commit {str(doc.get('git_commit'))[:12]})")
    try:
        outcome = driver.replay(claim, inputs)
        if not isinstance(outcome, Outcome):  # as the driver records it: an error verdict
            raise TypeError(f"check of {claim.id} returned {type(outcome).__name__}, not an Outcome")
    except Exception as exc:  # noqa: BLE001 -- an error is a verdict to compare with the stored one
        status = "error"
        print("".join(traceback.format_exception_only(type(exc), exc)).strip())
    else:
        status = outcome.status
        print(f"outcome: {status}, {evidence.sentence(evidence.of_outcome(outcome))}"
              + (f", engine {outcome.engine}" if outcome.engine else ""))
        if args.figure:
            redraw(claim.id, outcome, args.file)
    stored = evidence.of_record(doc)
    if stored is not None:
        print(f"stored:  {stored.get('status') or expected}, {evidence.sentence(stored)}"
              + (f", engine {stored['engine']}" if stored.get("engine") else ""))
    if status == expected:
        word = evidence.verdict_word(status, doc.get("expectation"))
        print(f"reproduced: {status}" + (f" ({word})" if word != status else ""))
        return 0
    print(f"NOT reproduced: stored {expected}, now {status}")
    return 1
