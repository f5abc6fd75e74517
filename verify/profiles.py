"""Search profiles as data: how many examples each claim gets, which Hypothesis phases run, which database.

A claim declares ``cost`` (about the seconds one example takes on one core); a profile gives each claim a time
``budget`` and turns it into ``max_examples = clamp(round(budget / cost), min_examples, max_examples)``. The
driver also stops *evaluating* new examples after ``hard_limit`` seconds and, once a violation is found, after
``shrink_budget`` more seconds of shrinking (skipped inputs are counted and reported, never counted as passes).
Those limits are checked between examples; ``claim_timeout`` is the hard one: the runner kills a claim still
running after it (a check that hangs) and records the verdict ``error`` with reason ``timeout``. A claim may set
its own (``@claim(..., timeout=S)``), and ``verify run --claim-timeout S`` overrides both.

| profile  | budget/claim | examples    | limit | seeds        | database           | use                          |
|----------|--------------|-------------|-------|--------------|--------------------|------------------------------|
| quick    | 7 s          | 2 .. 25     | 300 s | per claim id | in memory          | default ``verify``; < 3 min  |
| ci       | 30 s         | 3 .. 100    | 600 s | per claim id | in memory          | the CI gate; < 15 min        |
| thorough | 1200 s       | 50 .. 10000 | 6 h   | per claim id | .hypothesis/verify | the papers' settings; ~12 h  |

A claim may declare its own number of examples under a profile (``@claim(..., examples={"thorough": n})``), which
replaces ``budget / cost`` and the profile's range there: the experiment claims run the papers' settings only under
``thorough``, at 100-130 s of CPU per example where ``cost`` describes the reduced setting of the other profiles, so
the rule (at least 50 examples) would keep each of them at the 4 h hard limit; they declare about 1,200 s of CPU
worth instead.

The thorough profile's database is one directory per claim (``.hypothesis/verify/CLAIM_ID``); Hypothesis (6.170)
neither reads nor writes the database of a test with an explicit ``@seed``, which every claim has, so it stays
empty and the run's ``counterexamples/ID.json`` are what is kept.

Every profile is deterministic for a given ``--seed``: the Hypothesis seed of a claim is derived from
(seed, claim id), so the same seed gives the same examples, verdicts and counterexamples (up to the wall-clock
safety limits above, which a run that stays within budget never reaches).
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import Phase

from models.errors import InvalidInput, require

_NO_EXPLAIN = (Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink)
_ALL = _NO_EXPLAIN + (Phase.explain,)


@dataclass(frozen=True, slots=True)
class Profile:
    """One search profile (see the module docstring for the table)."""

    name: str
    budget: float
    min_examples: int
    max_examples: int
    shrink_budget: float
    hard_limit: float
    claim_timeout: float
    phases: tuple = _NO_EXPLAIN
    database: str | None = None
    #: how long a run of every claim takes under this profile (``verify run --help``)
    takes: str = ""
    #: printed when a run under this profile starts (empty: nothing)
    notice: str = ""

    def __post_init__(self) -> None:
        require(self.budget > 0, f"profile {self.name}: budget must be > 0, got {self.budget!r}")
        require(1 <= self.min_examples <= self.max_examples,
                f"profile {self.name}: need 1 <= min_examples <= max_examples, got {self.min_examples}, "
                f"{self.max_examples}")
        require(self.shrink_budget >= 0 and self.hard_limit > 0, f"profile {self.name}: bad time limits")
        require(self.claim_timeout > self.hard_limit + self.shrink_budget,
                f"profile {self.name}: claim_timeout must exceed hard_limit + shrink_budget")

    def examples_for(self, cost: float) -> int:
        """``max_examples`` for a claim whose examples cost about ``cost`` seconds."""
        n = int(round(self.budget / max(float(cost), 1e-6)))
        return max(self.min_examples, min(self.max_examples, n))

    def examples_of(self, claim) -> int:
        """``max_examples`` for ``claim`` (a :class:`properties.api.Claim`): the count it declares for this
        profile (``@claim(..., examples={name: n})``) if any, else :meth:`examples_for` its ``cost``."""
        n = claim.examples_under(self.name)
        return int(n) if n is not None else self.examples_for(claim.cost)


#: a whole ``thorough`` run, every built-in claim with ``--jobs 1``, in hours of CPU: the sum over the claims of
#: their examples times the CPU seconds one takes, measured for the experiment claims at the papers' settings
#: (2026-11-30, one example each on a loaded 2-core machine: ACHL19 completion 124-129 s, ACHL19 dynamics 100 s,
#: RMC21 incremental 24 s paper / 5 s order 3, RC20 tensor 42 s order 4 / 1.2 s order 3, RC20 GD 6 s) and the claims' declared costs otherwise
THOROUGH_HOURS = 12

PROFILES: dict[str, Profile] = {
    "quick": Profile("quick", budget=7.0, min_examples=2, max_examples=25, shrink_budget=8.0, hard_limit=40.0,
                     claim_timeout=300.0, takes="the default; every claim in a few minutes on 2 cores"),
    "ci": Profile("ci", budget=30.0, min_examples=3, max_examples=100, shrink_budget=30.0, hard_limit=120.0,
                  claim_timeout=600.0, phases=_ALL, takes="the CI gate; every claim in under 15 min on 2 cores"),
    "thorough": Profile("thorough", budget=1200.0, min_examples=50, max_examples=10_000, shrink_budget=600.0,
                        hard_limit=4 * 3600.0, claim_timeout=6 * 3600.0, phases=_ALL, database=".hypothesis/verify",
                        takes=f"HOURS: the papers' experiment settings and about 1,200 s of CPU per claim, about "
                              f"{THOROUGH_HOURS} h for every claim on one core",
                        notice=f"thorough takes hours: about 1,200 s of CPU per claim (an experiment at the paper's "
                               f"setting 20-25 min), about {THOROUGH_HOURS} h of CPU for every claim; --jobs N "
                               f"divides the wall time by up to N, a loaded machine multiplies it (2-2.5x measured "
                               f"on a shared 2-core machine); stop with Ctrl-C and finish with --resume"),
}


def get_profile(profile: str | Profile) -> Profile:
    """A profile by name (or the profile itself)."""
    if isinstance(profile, Profile):
        return profile
    try:
        return PROFILES[profile]
    except KeyError:
        raise InvalidInput(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}") from None


__all__ = ["PROFILES", "Profile", "get_profile"]
