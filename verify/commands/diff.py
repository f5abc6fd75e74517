"""``verify diff OLD NEW``: verdict changes and margin drift between two runs, for a person to read.

OLD and NEW are run directories (their ``summary.json``, or ``results.jsonl`` when the run did not finish), or
those files themselves. A row is shown for every claim whose verdict changed, whose smallest normalized margin
moved by more than ``--rtol`` (relative; default 0: any change), or that is in only one run; ``--all`` shows
every claim. The exit status is what ``verify run --baseline OLD`` gates on.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from models.errors import InvalidInput
from verify import store
from models.stored.verdicts import verdict_of

HELP = "compare two runs: verdict changes and margin drift (exit 1 when a claim met in OLD is not met in NEW)"

EPILOG = """\
OLD, NEW: a run directory (verify run --out DIR), its summary.json, or its results.jsonl.
margin: the claim's smallest normalized margin over its examples (positive: held with that slack);
drift = NEW - OLD, rel = drift / |OLD|.

exit status: 0 no claim that met its expectation in OLD fails to meet it in NEW (verdict changes and
drift alone do not fail); 1 some claim regressed (what verify run --baseline OLD exits 1 on);
2 bad usage or an unreadable OLD or NEW."""


def add_arguments(parser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("old", metavar="OLD", type=Path, help="the earlier run (directory, summary.json or "
                                                              "results.jsonl)")
    parser.add_argument("new", metavar="NEW", type=Path, help="the later run")
    parser.add_argument("--rtol", type=_rtol, default=0.0, metavar="R",
                        help="show a margin change only when |drift| > R |OLD| (default 0: any change)")
    parser.add_argument("--all", action="store_true", help="show every claim, changed or not")
    parser.add_argument("--json", action="store_true", help="print the rows and totals as one JSON object")


def _rtol(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"rtol must be a number >= 0, got {text!r}") from None
    if not value >= 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"rtol must be a finite number >= 0, got {text!r}")
    return value


def _margin(rec: dict | None) -> float | None:
    if rec is None:
        return None
    m = rec.get("smallest_margin")
    if isinstance(m, (int, float)) and not isinstance(m, bool):
        return float(m)
    if m in ("inf", "-inf", "nan"):
        return float(m)
    return None


def _drifted(mb: float | None, ma: float | None, rtol: float) -> bool:
    if mb is None or ma is None:
        return (mb is None) != (ma is None)
    if not (math.isfinite(mb) and math.isfinite(ma)):
        return not (mb == ma or (math.isnan(mb) and math.isnan(ma)))
    drift = ma - mb
    return drift != 0 and abs(drift) > rtol * abs(mb)


def _load(path: Path, what: str) -> dict:
    path = Path(path)
    if path.is_dir() and not (path / store.SUMMARY).exists() and (path / store.RESULTS).exists():
        path = path / store.RESULTS
    if not path.exists():
        raise InvalidInput(f"{what} {str(path)!r} does not exist")
    return store.load_summary(path, what)


def compare(old: dict, new: dict, rtol: float = 0.0) -> dict:
    """Rows for every claim of either run and the totals (see the module docstring)."""
    before = {r["claim"]: r for r in old.get("claims", [])}
    after = {r["claim"]: r for r in new.get("claims", [])}
    order = list(before) + [c for c in after if c not in before]
    rows = []
    for cid in order:
        b, a = before.get(cid), after.get(cid)
        mb, ma = _margin(b), _margin(a)
        drift = rel = None
        if mb is not None and ma is not None and math.isfinite(mb) and math.isfinite(ma):
            drift = ma - mb
            rel = drift / abs(mb) if mb != 0 else (0.0 if drift == 0 else math.inf)
        if b is None or a is None:
            change = "added" if b is None else "removed"
        elif verdict_of(b) != verdict_of(a) or bool(b.get("met")) != bool(a.get("met")):
            change = "regressed" if b.get("met") and not a.get("met") else (
                "improved" if a.get("met") and not b.get("met") else "verdict")
        elif _drifted(mb, ma, rtol):
            change = "margin"
        else:
            change = ""
        rows.append({"claim": cid, "change": change,
                     "old_verdict": verdict_of(b) if b else None, "new_verdict": verdict_of(a) if a else None,
                     "old_met": b.get("met") if b else None, "new_met": a.get("met") if a else None,
                     "old_margin": mb, "new_margin": ma, "drift": drift, "rel_drift": rel})
    counts = {k: sum(1 for r in rows if r["change"] == k)
              for k in ("regressed", "improved", "verdict", "margin", "added", "removed")}
    regressions = store.regressions(old, new.get("claims", []))
    return {"old": old.get("profile"), "rows": rows, "totals": {"claims": len(rows), **counts},
            "regressions": regressions}


def _fmt(x) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.6g}"
    return str(x)


def _verdict(v, met) -> str:
    if v is None:
        return "-"
    return f"{v}{'' if met else '!'}"


def render(result: dict, *, show_all: bool = False) -> str:
    rows = [r for r in result["rows"] if show_all or r["change"]]
    t = result["totals"]
    head = (f"{t['claims']} claims: {t['regressed']} regressed, {t['improved']} improved, {t['verdict']} other "
            f"verdict changes, {t['margin']} margins drifted, {t['added']} only in NEW, {t['removed']} only in OLD")
    if not rows:
        return head + "\nno differences" + (" (margins within --rtol)" if t["claims"] else "")
    table = [("claim", "change", "old verdict", "new verdict", "old margin", "new margin", "drift", "rel")]
    for r in rows:
        table.append((r["claim"], r["change"] or "=", _verdict(r["old_verdict"], r["old_met"]),
                      _verdict(r["new_verdict"], r["new_met"]), _fmt(r["old_margin"]), _fmt(r["new_margin"]),
                      _fmt(r["drift"]), _fmt(r["rel_drift"])))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = ["  ".join(cell.ljust(w) if i < 4 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
             .rstrip() for row in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join([head, *lines, "(! marks a verdict that does not meet the claim's expectation)"])


def run(args) -> int:
    old = _load(args.old, "OLD")
    new = _load(args.new, "NEW")
    result = compare(old, new, args.rtol)
    if args.json:
        print(json.dumps(store.strict(result), indent=2, allow_nan=False))
    else:
        print(render(result, show_all=args.all))
    return 1 if result["regressions"] else 0
