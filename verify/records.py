"""Records the runner writes: :class:`Verdict` and its :class:`VerdictStatus`."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from enum import Enum

SCHEMA_VERSION = 1


class VerdictStatus(Enum):
    """A claim's verdict; ``message`` is the sentence used in reports."""

    HOLDS = "holds"
    VIOLATED = "violated"
    INCONCLUSIVE = "inconclusive"
    ERROR = "error"

    @property
    def message(self) -> str:
        return {
            VerdictStatus.HOLDS: "held on every example, each margin clearing its error estimate",
            VerdictStatus.VIOLATED: "a counterexample was found whose violation clears its error estimate",
            VerdictStatus.INCONCLUSIVE: "no violation, but some margins stayed within the error estimate after "
                                        "escalation",
            VerdictStatus.ERROR: "the check raised, an engine failed (diverged, NaN, lost precision), or the claim "
                                 "ran past its time limit (the record's reason is then 'timeout')",
        }[self]


@dataclass(frozen=True)
class Verdict:
    """The outcome of running one claim under one profile and seed.

    ``met`` is whether the verdict matches the claim's expectation (``holds`` for a claim expected to hold;
    ``violated`` for one expected to be refuted). ``counterexample`` holds the shrunk inputs and everything needed
    to reproduce them (JSON-ready, floats exact), ``traceback`` the error when ``status`` is ``error``.
    """

    claim_id: str
    expectation: str
    status: VerdictStatus
    met: bool
    examples: int
    smallest_margin: float | None
    seconds: float
    seed: int
    profile: str
    engine: str = ""
    inconclusive: int = 0
    counterexample: dict | None = None
    traceback: str | None = None
    notes: list = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        d = asdict(self)
        d["status"] = self.status.value
        d["verdict"] = self.status.value
        m = self.smallest_margin
        d["smallest_margin"] = None if m is None or not math.isfinite(m) else float(m)
        d["schema_version"] = SCHEMA_VERSION
        return d
