"""The claims catalog, shipped with the package: the statement, constants, derivation notes and sources behind
each built-in claim (``claims-catalog.md`` in this directory, the suite's own notes on the three papers).

Claims cite it by section id, as in ``source="..., catalog RC20-Thm1"``: :func:`refs` finds those ids in any text,
:func:`section` returns a section's text, :func:`for_claim` the sections a claim rests on (its own references,
then its parent's). ``verify show ID`` prints them and ``verify list --markdown`` writes ``docs/claims.md``.
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources

FILE = "claims-catalog.md"
_ID = re.compile(r"\b((?:RC20|ACHL19|ACH18|ACGH19|RMC21|Gunasekar17)-[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*)")
_HEAD3 = re.compile(r"^### ([A-Za-z0-9]+-[A-Za-z0-9-]+)[: ]")
_HEAD2 = re.compile(r"^## (\d+)\. ")


def text() -> str:
    """The whole catalog (Markdown)."""
    return resources.files(__name__).joinpath(FILE).read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def sections() -> dict[str, str]:
    """``{id: markdown}``: every ``### ID: ...`` item, and every numbered part as ``section N``."""
    out: dict[str, list[str]] = {}
    current3 = current2 = None
    for line in text().splitlines():
        m2, m3 = _HEAD2.match(line), _HEAD3.match(line)
        if m2:
            current2, current3 = f"section {m2.group(1)}", None
            out[current2] = [line]
            continue
        if m3:
            current3 = m3.group(1)
            out[current3] = [line]
        elif line.startswith("## ") or line.strip() == "---":
            current3 = None
            if line.startswith("## "):
                current2 = None
            continue
        elif current3 is not None:
            out[current3].append(line)
        if current2 is not None:
            out[current2].append(line)
    return {k: "\n".join(v).strip() + "\n" for k, v in out.items()}


def ids() -> list[str]:
    return list(sections())


def refs(text_: str) -> list[str]:
    """The catalog ids cited in ``text_`` (in order, without repeats; ids the catalog lacks are skipped)."""
    known = sections()
    seen: list[str] = []
    for m in _ID.finditer(text_ or ""):
        i = m.group(1)
        while i not in known and "-" in i:  # "RC20-Thm1-item" -> "RC20-Thm1"
            i = i.rsplit("-", 1)[0]
        if i in known and i not in seen:
            seen.append(i)
    return seen


def unresolved(text_: str) -> list[str]:
    """Ids in ``text_`` that look like catalog ids but name no section (a test keeps this empty)."""
    known = sections()
    return [m.group(1) for m in _ID.finditer(text_ or "") if m.group(1) not in known]


def section(id_: str) -> str:
    return sections()[id_]


def for_claim(claim, claims: dict | None = None) -> list[str]:
    """The catalog ids a claim rests on: those its source, statement and description cite, else its parent's."""
    found = refs(" ".join((claim.source, claim.statement, claim.how)))
    if not found and claim.parent and claims and claim.parent in claims:
        found = for_claim(claims[claim.parent], claims)
    return found


__all__ = ["FILE", "for_claim", "ids", "refs", "section", "sections", "text", "unresolved"]
