"""The evidence chain of a verdict (issue 11): which part is exact, which dynamic, which statistical.

The driver stores, with each verdict, ``extra["chain"]`` (:func:`build`): what the claim declares it rests on
(``Claim.rests_on``), its kind, the engines that produced its outcomes, and, from the outcome the verdict rests
on (the one :mod:`models.stored.evidence` picks), the parts a combined check reports (``detail["rests_on"]``), the
gradient-flow check of its trajectory (``detail["gradient_flow_check"]``, :mod:`properties.flow_check`) and the
statistical test with its level and power where the check states them. The report renders it from the stored
record alone (:func:`rows`), so ``verify report DIR`` redraws it without running anything.

Each part is one line of the form ``what: how it is known``:

- **exact**: checked symbolically (sympy), certified (ball arithmetic, certificates), in exact arithmetic
  (rationals), or in floating point with the error the check bounds, by the engines named; the claim's own ``rests_on`` items that say "exact";
- **dynamic** (trajectory claims): the engines with their precision (``gf rtol=1e-10`` is float64 at that
  tolerance, ``gf-mp digits=40`` mpmath at 40 digits: the driver stores it under ``arithmetic`` from what each
  engine declares, :func:`verify.engine_facts.arithmetic`), how the path was validated (the gradient-flow check:
  points, largest defect against its tolerance, status; or that no check was recorded), and the smallest margin
  against its error (:func:`models.stored.evidence.sentence`, of the example :func:`models.stored.evidence.pick` chose: the
  smallest normalized margin, or the shrunk counterexample);
- **statistical**: the test, its level and its power, as the claim states them (or that it does not state them).
"""

from __future__ import annotations

from models.stored import evidence
from models.stored.jsonio import strict
from models.stored.verdicts import VerdictStatus, verdict_of

#: Outcome detail keys that describe a statistical test.
STAT_KEYS = ("test", "level", "alpha", "delta", "n", "successes", "p_value", "alternative")


def build(claim, outcome, engines: dict, arithmetic: dict | None = None) -> dict:
    """The chain stored with a verdict (``outcome``: the one its evidence comes from, or None; ``engines``: example
    counts per engine label; ``arithmetic``: per label, the arithmetic it stands for, as the engine declares it)."""
    detail = getattr(outcome, "detail", None) or {}
    chain: dict = {"kind": claim.kind.value, "rests_on": list(getattr(claim, "rests_on", ()) or ()),
                   "engines": {str(k or "?"): int(v) for k, v in (engines or {}).items()}}
    arith = {str(k or "?"): str(v) for k, v in (arithmetic or {}).items() if v}
    if arith:
        chain["arithmetic"] = arith
    if isinstance(detail.get("rests_on"), dict):
        chain["parts"] = {str(k): str(v) for k, v in detail["rests_on"].items()}
    if isinstance(detail.get("gradient_flow_check"), dict):
        chain["flow_check"] = strict(detail["gradient_flow_check"])
    stat = {k: strict(v) for k, v in detail.items()
            if k in STAT_KEYS or (k.startswith("power") and isinstance(v, (str, int, float)))}
    if stat:
        chain["statistical"] = stat
    return chain


def how_exact(engine: str) -> str:
    e = engine.lower()
    if "sympy" in e or "symbolic" in e:
        return "symbolic"
    if any(w in e for w in ("arb", "flint", "ball", "certif")):
        return "certified"
    if any(w in e for w in ("rational", "fraction", "exact", "integer")):
        return "exact arithmetic"
    return "floating point, error as the check bounds it"


def _engines(chain: dict, *, how: bool = False) -> str:
    eng = chain.get("engines") or {}
    out = []
    for k, v in eng.items():
        what = how_exact(k) if how else str((chain.get("arithmetic") or {}).get(k, ""))
        out.append(f"{k} ({what + ', ' if what else ''}{evidence.plural(v, 'example')})")
    return ", ".join(out) or "none recorded"


def _flow(fc: dict | None) -> str:
    if not fc:
        return "not validated against the gradient-flow field (no check recorded)"
    d = fc.get("largest_defect")
    return (f"gradient-flow check (the engine's tangent against the field computed independently) at "
            f"{fc.get('points', '?')} recorded points: {fc.get('status', '?')}, largest defect "
            f"{evidence.num(d, 3) if d is not None else '-'} against tolerance {evidence.num(fc.get('tolerance'), 3)}")


def _is_exact(text: str) -> bool:
    return "exact" in text.lower() or "proven" in text.lower()


def _is_statistical(text: str) -> bool:
    t = text.lower()
    return "statistic" in t or "binomial" in t or " test" in t


def rows(record: dict) -> dict:
    """``{"exact": [...], "dynamic": [...], "statistical": [...]}``: the lines of a record's chain as the report
    prints them (empty lists where a claim has no such part)."""
    extra = record.get("extra") or {}
    chain = extra.get("chain") if isinstance(extra, dict) else None
    out: dict[str, list[str]] = {"exact": [], "dynamic": [], "statistical": []}
    if not isinstance(chain, dict):
        why = record.get("error") or "the run stored no evidence chain for this claim"
        out["dynamic" if record.get("kind") == "trajectory" else record.get("kind") or "exact"] = \
            [f"none: {evidence.verdict_phrase(record)} ({why})" if verdict_of(record) == VerdictStatus.ERROR else why]
        return out
    kind = chain.get("kind") or record.get("kind")
    ev = evidence.of_record(record)
    which = evidence.WHICH.get((ev or {}).get("which"), "the example the verdict rests on")
    margin = f"margin against its error ({which}): {evidence.sentence(ev)}"
    declared = [str(x) for x in chain.get("rests_on") or []]
    parts = chain.get("parts") or {}
    for item in declared:
        key = "exact" if _is_exact(item) else ("statistical" if _is_statistical(item) else "dynamic")
        out[key].append(f"declared: {item}")
    static = {k: v for k, v in parts.items() if k == "static" or "proven" in v}
    other = {k: v for k, v in parts.items() if k not in static}
    if static:
        out["exact"].append("part of the combined check: " + ", ".join(f"{k} {v}" for k, v in static.items()))
    if other:
        out["dynamic" if kind == "trajectory" else kind].append(
            "parts of the combined check: " + ", ".join(f"{k} {v}" for k, v in other.items()))
    if kind == "exact":
        out["exact"].append(f"checked by {_engines(chain, how=True)}; {margin}")
    elif kind == "trajectory":
        out["dynamic"].append(f"engines: {_engines(chain)}")
        out["dynamic"].append(f"path: {_flow(chain.get('flow_check'))}")
        out["dynamic"].append(margin)
    elif kind == "statistical":
        st = chain.get("statistical") or {}
        test = st.get("test")
        level = st.get("level", st.get("alpha"))
        powers = {k: v for k, v in st.items() if k.startswith("power")}
        out["statistical"].append(f"test: {test}" if test else "test: not stated by the claim")
        out["statistical"].append(f"level: {level}" if level is not None else "level: not stated by the claim")
        stated = [f"{v}" + (f" ({k[len('power'):].strip('_').replace('_', ' ')})" if k != "power" else "")
                  for k, v in powers.items()]
        out["statistical"].append("power: " + ("; ".join(stated) if stated else "not stated by the claim"))
        rest = {k: v for k, v in st.items() if k not in ("test", "level", "alpha") and not k.startswith("power")}
        if rest:
            out["statistical"].append("data: " + ", ".join(f"{k} {v}" for k, v in rest.items()))
        out["statistical"].append(f"engines: {_engines(chain)}; {margin}")
    return out


__all__ = ["STAT_KEYS", "build", "how_exact", "rows"]
