"""The Hypothesis driver: run one claim's search outside pytest and turn it into a :class:`~verify.records.Verdict`.

:func:`run_claim` builds, per claim, a ``@given(claim.inputs_strategy())`` property with

- ``@seed`` derived from ``(seed, claim.id)`` (so the same seed gives the same examples, verdict and shrunk
  counterexample, whichever worker runs it), its own database (in memory unless the profile names a directory:
  then ``DIRECTORY/CLAIM_ID``), ``deadline=None``, ``report_multiple_bugs=False`` and the profile's example count and
  phases (:mod:`verify.profiles`);
- a body that calls ``claim.run_check(inputs)``, feeds ``hypothesis.target`` with the (squashed) negated
  normalized margin so the search pushes toward the boundary, counts examples and inconclusive outcomes, tracks
  the smallest margin, and on a violation records the inputs and outcome and raises ``AssertionError``. The last
  failing call is Hypothesis' replay of the shrunk example: that is the counterexample reported.

Checks that raise (an engine that diverged or lost precision, a bug) are recorded with their inputs and traceback
and the search goes on; the verdict is ``violated`` if any violation clears its error, else ``error`` if any
check raised, else ``inconclusive`` if any margin stayed within its error, else ``holds``.

Outcomes are memoized per input (Hypothesis replays inputs while shrinking), and two wall-clock safety limits keep
a profile's time bound: after ``profile.hard_limit`` seconds, and after ``profile.shrink_budget`` seconds of
shrinking past the first violation, new inputs are skipped (counted in ``extra["skipped"]``, never as passes).

Everything is keyed by claim id so it runs the same in a worker process: pass a :class:`~properties.api.Claim`
or its id (built-in claims are imported on demand).

The verdict's ``extra["evidence"]`` is the margin, its error and their ratio of the example the verdict rests on
(:mod:`models.stored.evidence`: the shrunk counterexample when violated), the numbers every command prints; its
``extra["chain"]`` what that verdict rests on, exact, dynamic and statistical (:mod:`models.stored.chain`), for the
report.

Helpers: :func:`replay` (used by ``verify reproduce``), :func:`inputs_to_json` / :func:`inputs_from_json` (exact
round trip of floats through ``float.hex()``, with ``repr`` alongside for people).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hypothesis
from hypothesis import HealthCheck, Verbosity, given, settings
from hypothesis.database import DirectoryBasedExampleDatabase, InMemoryExampleDatabase

from properties.api import CLAIMS, Claim, Expectation, Outcome, profile_scope
from models.stored import chain, evidence
from models.stored.jsonio import number as _num
from verify import engine_facts
from verify.profiles import Profile, get_profile
from verify.records import SCHEMA_VERSION, Verdict, VerdictStatus
from verify.store import package_versions

FLOAT_KEY = "__float__"


# ----------------------------------------------------------------------------------------------------------------
# Exact JSON round trip of inputs
# ----------------------------------------------------------------------------------------------------------------
def inputs_to_json(value: Any) -> Any:
    """``value`` with every float replaced by ``{"__float__": x.hex(), "repr": repr(x)}`` (tuples become lists,
    numpy scalars and arrays plain values); :func:`inputs_from_json` inverts it exactly."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return {FLOAT_KEY: value.hex(), "repr": repr(value)}
    if isinstance(value, dict):
        return {str(k): inputs_to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [inputs_to_json(v) for v in value]
    try:
        import numpy as np
    except ImportError:  # pragma: no cover
        np = None
    if np is not None:
        if isinstance(value, np.ndarray):
            return inputs_to_json(value.tolist())
        if isinstance(value, np.bool_):
            return bool(value)
        if isinstance(value, np.integer):
            return int(value)
        if isinstance(value, np.floating):
            return inputs_to_json(float(value))
    raise TypeError(f"input value {value!r} of type {type(value).__name__} is not JSON-ready")


def inputs_from_json(value: Any) -> Any:
    """Invert :func:`inputs_to_json` (plain JSON numbers are accepted too)."""
    if isinstance(value, dict):
        if FLOAT_KEY in value:
            return float.fromhex(value[FLOAT_KEY])
        return {k: inputs_from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [inputs_from_json(v) for v in value]
    return value


def _key(inputs: Any) -> str:
    return json.dumps(inputs_to_json(inputs), sort_keys=True)


def outcome_to_json(o: Outcome) -> dict:
    return {"status": o.status, "margin": _num(o.margin), "error": _num(o.error), "scale": _num(o.scale),
            "normalized_margin": _num(o.normalized_margin), "engine": o.engine, "detail": o.detail}



# ----------------------------------------------------------------------------------------------------------------
# Claims by id
# ----------------------------------------------------------------------------------------------------------------
def get_claim(claim: Claim | str) -> Claim:
    """A claim, or the registered claim with that id (importing the built-in claims on demand)."""
    if isinstance(claim, Claim):
        return claim
    if claim not in CLAIMS:
        import properties  # noqa: F401  -- registers the built-in claims
    try:
        return CLAIMS[claim]
    except KeyError:
        from models.errors import InvalidInput
        raise InvalidInput(f"unknown claim id {claim!r}") from None


def claim_seed(seed: int, claim_id: str) -> int:
    """The Hypothesis seed of ``claim_id`` under run seed ``seed`` (stable across processes and machines)."""
    digest = hashlib.sha256(f"{int(seed)}:{claim_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % (2**63)


# ----------------------------------------------------------------------------------------------------------------
# The search
# ----------------------------------------------------------------------------------------------------------------
class _Violation(AssertionError):
    """Raised in the property body when an outcome is violated (Hypothesis shrinks it)."""


@dataclass
class _Recorder:
    claim: Claim
    profile: Profile
    start: float = field(default_factory=time.perf_counter)
    cache: dict = field(default_factory=dict)
    examples: int = 0
    calls: int = 0
    skipped: int = 0
    inconclusive: int = 0
    holds: int = 0
    violations: int = 0
    smallest: float | None = None
    smallest_raw: float | None = None
    smallest_outcome: Outcome | None = None
    engines: dict = field(default_factory=dict)
    first_violation_at: float | None = None
    last_fail: tuple | None = None
    first_error: tuple | None = None
    errors: int = 0
    inconclusive_example: tuple | None = None
    check_seconds: float = 0.0

    def over_budget(self) -> bool:
        now = time.perf_counter()
        if now - self.start > self.profile.hard_limit:
            return True
        return self.first_violation_at is not None and now - self.first_violation_at > self.profile.shrink_budget

    def __call__(self, inputs: dict) -> None:
        self.calls += 1
        key = _key(inputs)
        hit = self.cache.get(key)
        if hit is None:
            if self.over_budget():
                self.skipped += 1
                return
            t0 = time.perf_counter()
            try:
                outcome = self.claim.run_check(inputs)
                if not isinstance(outcome, Outcome):
                    raise TypeError(f"check of {self.claim.id} returned {type(outcome).__name__}, not an Outcome")
            except Exception as exc:  # noqa: BLE001 -- recorded as an error verdict with its inputs
                self.check_seconds += time.perf_counter() - t0
                self.errors += 1
                tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
                if self.first_error is None:
                    self.first_error = (inputs, f"{type(exc).__name__}: {exc}", tb)
                self.cache[key] = ("error", None)
                return
            self.check_seconds += time.perf_counter() - t0
            self.cache[key] = ("outcome", outcome)
            self._count(inputs, outcome)
        else:
            kind, outcome = hit
            if kind == "error":
                return
        nm = outcome.normalized_margin
        if math.isfinite(nm):
            hypothesis.target(-math.asinh(nm), label="negated normalized margin")
        if outcome.status == "violated":
            self.last_fail = (inputs, outcome)
            if self.first_violation_at is None:
                self.first_violation_at = time.perf_counter()
            raise _Violation(f"{self.claim.id} violated: margin {outcome.margin:.6g} < -error {outcome.error:.3g}")

    def _count(self, inputs: dict, outcome: Outcome) -> None:
        self.examples += 1
        self.engines[outcome.engine] = self.engines.get(outcome.engine, 0) + 1
        nm = outcome.normalized_margin
        if self.smallest is None or nm < self.smallest:
            self.smallest, self.smallest_raw, self.smallest_outcome = nm, outcome.margin, outcome
        status = outcome.status
        if status == "inconclusive":
            self.inconclusive += 1
            if self.inconclusive_example is None:
                self.inconclusive_example = (inputs, outcome)
        elif status == "holds":
            self.holds += 1
        else:
            self.violations += 1


def _settings(claim: Claim, prof: Profile) -> settings:
    # One database per claim (public API): a directory of its own under the profile's database, or a fresh
    # in-memory one per run. Hypothesis keys examples by a digest of the test function's source, the same for
    # every claim (they share ``prop``), so claims must not share a database. Note: Hypothesis (6.170) neither
    # reads nor writes the database of a test with an explicit @seed, which every claim has, so in practice the
    # directory stays empty; counterexamples are kept by the run itself (counterexamples/ID.json).
    if prof.database:
        db = DirectoryBasedExampleDatabase(str(Path(prof.database) / claim.id))
    else:
        db = InMemoryExampleDatabase()
    return settings(
        max_examples=prof.examples_of(claim),
        deadline=None,
        derandomize=False,  # the seed is fixed per claim by @seed instead (derandomize would ignore --seed)
        database=db,
        phases=prof.phases,
        report_multiple_bugs=False,
        print_blob=False,
        verbosity=Verbosity.quiet,
        suppress_health_check=[HealthCheck.too_slow],
    )


def run_claim(claim: Claim | str, profile: str | Profile = "quick", seed: int = 0) -> Verdict:
    """Search for a counterexample to ``claim`` under ``profile`` and return its :class:`Verdict`."""
    claim = get_claim(claim)
    prof = get_profile(profile)
    hseed = claim_seed(seed, claim.id)
    rec = _Recorder(claim, prof)
    with profile_scope(prof.name):  # experiment claims draw a reduced setting except under "thorough"
        strategy = claim.inputs_strategy()

    def prop(inputs):
        rec(inputs)

    prop.__name__ = "claim_" + claim.id.replace(".", "_")
    prop.__qualname__ = prop.__name__
    test = hypothesis.seed(hseed)(_settings(claim, prof)(given(strategy)(prop)))

    start = time.perf_counter()
    notes: list[str] = []
    hyp_error: tuple | None = None
    try:
        test()
    except _Violation:
        pass
    except Exception as exc:  # noqa: BLE001 -- Unsatisfiable, FailedHealthCheck, Flaky...: an error verdict
        if rec.last_fail is None:
            tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            hyp_error = (f"{type(exc).__name__}: {exc}", tb)
        else:
            notes.append(f"Hypothesis ended with {type(exc).__name__} after the violation was recorded")
    seconds = time.perf_counter() - start

    counterexample = None
    traceback_text = None
    if rec.last_fail is not None:
        status = VerdictStatus.VIOLATED
        inputs, outcome = rec.last_fail
        counterexample = _counterexample(claim, prof, seed, hseed, inputs, outcome)
    elif rec.first_error is not None or hyp_error is not None:
        status = VerdictStatus.ERROR
        if rec.first_error is not None:
            inputs, msg, traceback_text = rec.first_error
            notes.append(f"check raised on {rec.errors} example(s); first: {msg}")
            counterexample = {"claim_id": claim.id, "kind": "error", "inputs": inputs_to_json(inputs),
                              "inputs_repr": repr(inputs), "error": msg}
        else:
            msg, traceback_text = hyp_error
            notes.append(f"the Hypothesis search failed: {msg}")
    elif rec.examples == 0:
        status = VerdictStatus.INCONCLUSIVE
        notes.append("no example was evaluated")
    elif rec.inconclusive:
        status = VerdictStatus.INCONCLUSIVE
        inputs, outcome = rec.inconclusive_example
        notes.append(f"{rec.inconclusive} example(s) stayed within their error estimate after escalation; first: "
                     f"{inputs!r} -> margin {outcome.margin:.3g}, error {outcome.error:.3g}")
    else:
        status = VerdictStatus.HOLDS
    if rec.skipped:
        notes.append(f"{rec.skipped} input(s) were skipped after the profile's time limits "
                     f"(hard limit {prof.hard_limit:g} s, shrink budget {prof.shrink_budget:g} s)")
    if rec.errors and status is VerdictStatus.VIOLATED:
        notes.append(f"{rec.errors} example(s) raised (engine failures) besides the violation")

    ev = evidence.pick(status.value, counterexample=rec.last_fail[1] if rec.last_fail else None,
                       inconclusive=rec.inconclusive_example[1] if rec.inconclusive_example else None,
                       smallest=rec.smallest_outcome)
    basis = {"counterexample": rec.last_fail[1] if rec.last_fail else None,
             "inconclusive": rec.inconclusive_example[1] if rec.inconclusive_example else None,
             "smallest": rec.smallest_outcome}.get((ev or {}).get("which"))
    expected = VerdictStatus.HOLDS if claim.expectation is Expectation.HOLDS else VerdictStatus.VIOLATED
    engine = max(rec.engines, key=rec.engines.get) if rec.engines else ""
    return Verdict(
        claim_id=claim.id, expectation=claim.expectation.value, status=status, met=status is expected,
        examples=rec.examples, smallest_margin=rec.smallest, seconds=seconds, seed=int(seed), profile=prof.name,
        engine=engine, inconclusive=rec.inconclusive, counterexample=counterexample, traceback=traceback_text,
        notes=notes,
        extra={"hypothesis_seed": hseed, "max_examples": prof.examples_of(claim), "calls": rec.calls,
               "skipped": rec.skipped, "errors": rec.errors, "holds": rec.holds, "violations": rec.violations,
               "check_seconds": round(rec.check_seconds, 4), "engines": rec.engines,
               "smallest_raw_margin": rec.smallest_raw, "evidence": ev,
               "chain": chain.build(claim, basis, rec.engines,
                                    {k: engine_facts.arithmetic(str(k or "")) for k in rec.engines}),
               "dropped": sorted(claim.dropped),
               "parent": claim.parent},
    )


def _counterexample(claim: Claim, prof: Profile, seed: int, hseed: int, inputs: dict, outcome: Outcome) -> dict:
    return {
        "schema_version": SCHEMA_VERSION,
        "claim_id": claim.id,
        "parent": claim.parent,
        "dropped": sorted(claim.dropped),
        "modules": [getattr(claim.check, "__module__", "")],
        "inputs": inputs_to_json(inputs),
        "inputs_repr": repr(inputs),
        "outcome": outcome_to_json(outcome),
        "engine": outcome.engine,
        "tolerances": outcome.detail.get("tolerances"),
        "seed": int(seed),
        "hypothesis_seed": hseed,
        "profile": prof.name,
        "versions": package_versions(),
        "reproduce": "verify reproduce FILE",
    }


def replay(claim: Claim | str, inputs: Any) -> Outcome:
    """Re-run ``claim``'s check on stored ``inputs`` (as written by :func:`inputs_to_json`, or plain)."""
    return get_claim(claim).run_check(inputs_from_json(inputs))


__all__ = ["claim_seed", "get_claim", "inputs_from_json", "inputs_to_json", "outcome_to_json", "package_versions",
           "replay", "run_claim"]
