"""Records the runner writes: :class:`Verdict`, with its :class:`~models.stored.verdicts.VerdictStatus` (re-exported)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from models.stored.verdicts import KEY, VerdictStatus

SCHEMA_VERSION = 1


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
        del d["status"]
        d[KEY] = self.status.value  # one key: "verdict" (stored.verdicts.verdict_of also reads the old "status")
        m = self.smallest_margin
        d["smallest_margin"] = None if m is None or not math.isfinite(m) else float(m)
        d["schema_version"] = SCHEMA_VERSION
        return d


__all__ = ["SCHEMA_VERSION", "Verdict", "VerdictStatus"]
