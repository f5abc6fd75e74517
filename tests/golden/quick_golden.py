"""The behaviour-unchanged golden: a compact summary of every built-in claim under the ``quick`` profile at seed 0.

``python tests/golden/quick_golden.py [--jobs N] [--out FILE] [CLAIM ...]`` runs the claims (all built-in ones by
default) and writes, per claim: the verdict, whether it met its expectation, the example counts, the smallest
normalized margin, the evidence (the margin, its error and which example they come from) and the counterexample
inputs (floats exact, as ``float.hex``). ``tests/golden/test_quick_golden.py`` reruns a subset and compares.

The ``quick`` profile is used as it is (examples, phases, seeds) except for its two wall-clock safety limits
(``hard_limit``, ``shrink_budget``), widened here to an hour: within budget they never act, and where they do act
the result depends on the machine's load, not on the code, so a golden taken under them could not be compared.
``skipped`` records inputs that a limit skipped anyway (always 0 with the widened limits).

Regenerate only for claims an issue deliberately changes:
``python tests/golden/quick_golden.py --update CLAIM ...`` rewrites those claims' entries and keeps the rest.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

GOLDEN = Path(__file__).with_name("quick_summary.json")
PROFILE = "quick"
SEED = 0
WIDE = 3600.0


def golden_profile():
    """The ``quick`` profile with its wall-clock safety limits widened (see the module docstring)."""
    from verify.profiles import get_profile
    quick = get_profile(PROFILE)
    return dataclasses.replace(quick, hard_limit=WIDE, shrink_budget=WIDE, claim_timeout=3 * WIDE)


def _num(x: Any) -> Any:
    """A stored number as JSON: finite floats as they are, non-finite ones as strings, None as None."""
    if x is None or isinstance(x, str):
        return x
    x = float(x)
    return x if math.isfinite(x) else ("nan" if math.isnan(x) else ("inf" if x > 0 else "-inf"))


def summarize(v: dict) -> dict:
    """The compact summary of one verdict dict (``Verdict.to_json()`` or a ``results.jsonl`` record)."""
    extra = v.get("extra") or {}
    ev = extra.get("evidence") or {}
    cx = v.get("counterexample") or {}
    return {
        "verdict": v.get("verdict") or v.get("status"),
        "met": bool(v.get("met")),
        "examples": int(v.get("examples") or 0),
        "inconclusive": int(v.get("inconclusive") or 0),
        "holds": extra.get("holds"),
        "violations": extra.get("violations"),
        "errors": extra.get("errors"),
        "skipped": extra.get("skipped"),
        "engines": extra.get("engines") or {},
        "smallest_margin": _num(v.get("smallest_margin")),
        "evidence": {"which": ev.get("which"), "margin": _num(ev.get("margin")), "error": _num(ev.get("error"))},
        "counterexample_kind": cx.get("kind", "violation") if cx else None,
        "counterexample_inputs": cx.get("inputs") if cx else None,
    }


def run_one(claim_id: str) -> tuple[str, dict, float]:
    """Run one claim as a ``verify run`` worker does (stable Hypothesis generation, same seed derivation)."""
    import time

    from verify import driver, runner, store
    t0 = time.perf_counter()
    with runner.stable_generation():
        verdict = driver.run_claim(claim_id, profile=golden_profile(), seed=SEED)
    return claim_id, summarize(store.strict(verdict.to_json())), time.perf_counter() - t0


def all_claims() -> list[str]:
    import importlib

    importlib.import_module("properties")  # registers the built-in claims
    from properties.api import CLAIMS
    # other tests in the same process register their own toy claims: keep the suite's own
    return sorted(k for k, c in CLAIMS.items() if getattr(c.check, "__module__", "").split(".")[0] == "properties")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("claims", nargs="*", help="claim ids (default: every built-in claim)")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--out", type=Path, default=GOLDEN)
    ap.add_argument("--update", action="store_true", help="keep the other claims' entries of --out")
    args = ap.parse_args(argv)
    ids = args.claims or all_claims()
    doc = json.loads(args.out.read_text()) if args.update and args.out.exists() else {}
    claims = dict(doc.get("claims") or {})
    if args.jobs > 1:
        import multiprocessing
        with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as ex:
            results = list(ex.map(run_one, ids))
    else:
        results = [run_one(c) for c in ids]
    for cid, summary, seconds in results:
        claims[cid] = summary
        print(f"{cid:45s} {summary['verdict']:12s} {seconds:7.1f} s", file=sys.stderr)
    out = {"profile": PROFILE, "seed": SEED, "limits": f"hard_limit = shrink_budget = {WIDE:g} s",
           "claims": {k: claims[k] for k in sorted(claims)}}
    args.out.write_text(json.dumps(out, indent=1, sort_keys=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
