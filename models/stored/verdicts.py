"""The one verdict vocabulary: :class:`VerdictStatus`, for one check's outcome and for a claim's verdict.

Each member is its stored word (a ``str``: ``VerdictStatus.HOLDS == "holds"``) and carries its sentence
(:attr:`VerdictStatus.message`), as :class:`models.trajectory.Status` does for a run. A verdict is stored under
one key, :data:`KEY` (``"verdict"``); :func:`verdict_of` reads it, and also the key ``"status"`` that worker
results and verdict dicts of earlier versions carried, so older stored runs still load.
"""

from __future__ import annotations

from enum import StrEnum

#: The key a verdict is stored under, in results.jsonl records and in verdict dicts.
KEY = "verdict"
#: The key earlier versions also wrote (read only).
LEGACY_KEY = "status"


class VerdictStatus(StrEnum):
    """How a check or a claim came out; ``message`` is the sentence used in reports."""

    HOLDS = "holds"
    VIOLATED = "violated"
    INCONCLUSIVE = "inconclusive"
    ERROR = "error"

    @property
    def message(self) -> str:
        return _MESSAGES[self]

    @classmethod
    def decide(cls, margin: float, error: float) -> "VerdictStatus":
        """``holds`` when ``margin > error``, ``violated`` when ``margin < -error``, else ``inconclusive``."""
        if margin > error:
            return cls.HOLDS
        if margin < -error:
            return cls.VIOLATED
        return cls.INCONCLUSIVE


_MESSAGES = {
    VerdictStatus.HOLDS: "held on every example, each margin clearing its error estimate",
    VerdictStatus.VIOLATED: "a counterexample was found whose violation clears its error estimate",
    VerdictStatus.INCONCLUSIVE: "no violation, but some margins stayed within the error estimate after escalation",
    VerdictStatus.ERROR: "the check raised, an engine failed (diverged, NaN, lost precision), or the claim ran past "
                         "its time limit (the record's reason is then 'timeout')",
}

#: Every verdict word, in order.
VERDICTS = tuple(v.value for v in VerdictStatus)


def verdict_of(record: dict, default: str | None = None) -> str | None:
    """The verdict word stored in ``record`` (under :data:`KEY`, or the legacy :data:`LEGACY_KEY`), else
    ``default``."""
    return record.get(KEY) or record.get(LEGACY_KEY) or default


__all__ = ["KEY", "LEGACY_KEY", "VERDICTS", "VerdictStatus", "verdict_of"]
