"""The public claim API: :class:`Claim`, :class:`Outcome`, :class:`Hyp`, the registry and :func:`claim`.

A claim is data plus two callables:

- ``strategy(dropped)`` returns a Hypothesis strategy of *settings* (a dict of plain values: depth, scale, seed,
  z, z', eps, ...). ``dropped`` is the frozenset of hypothesis names the strategy must no longer enforce (empty
  for the theorem itself). Strategies never integrate anything.
- ``check(inputs, dropped)`` computes (runs engines, measures) and returns an :class:`Outcome`: the margin by
  which the claim holds on these inputs, and a bound on the numerical error of that margin. The check escalates
  (tighter tolerance, then more digits) before returning an outcome whose margin is within its error.

Negative controls are the same claim with one named hypothesis dropped (:meth:`Claim.drop`): the strategy is
asked to stop enforcing it, the check is unchanged.

Users write their own claims in their own module with :func:`claim` (or by building :class:`Claim` and calling
:func:`register`) and run them with ``verify run --claims MODULE``.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any, Callable

from models.errors import InvalidInput, require
from models.stored.verdicts import VerdictStatus


class Kind(Enum):
    """What kind of evidence a claim rests on."""

    EXACT = "exact"
    TRAJECTORY = "trajectory"
    STATISTICAL = "statistical"


class Expectation(Enum):
    """What the suite expects of a claim: that it holds, or that it is refuted (conjectures, negative controls)."""

    HOLDS = "holds"
    REFUTED = "refuted"


@dataclass(frozen=True, slots=True)
class Hyp:
    """A named hypothesis of a claim (``name`` is stable; ``text`` is printed in reports)."""

    name: str
    text: str


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of one check on one input.

    ``margin`` > 0 means the claim holds on this input with that slack, < 0 that it is violated (units are the
    check's own; say them in ``detail``). ``error`` >= 0 bounds the numerical error of ``margin``; the verdict is
    ``holds`` only when ``margin > error``, ``violated`` only when ``margin < -error``, else ``inconclusive``.
    ``scale`` (optional, > 0) normalizes the margin for Hypothesis targeting and reports. ``detail`` is JSON-ready.
    ``engine`` names what produced the evidence ("gf", "gf-mp", "sympy", ...).
    """

    margin: float
    error: float = 0.0
    detail: dict = field(default_factory=dict)
    engine: str = ""
    scale: float = 1.0

    def __post_init__(self) -> None:
        require(not math.isnan(self.margin), "an outcome's margin is NaN")
        require(self.error >= 0 and not math.isnan(self.error), f"an outcome's error must be >= 0, got {self.error!r}")
        require(self.scale > 0, f"an outcome's scale must be > 0, got {self.scale!r}")

    @property
    def status(self) -> VerdictStatus:
        """``holds``, ``violated`` or ``inconclusive`` (:meth:`models.stored.verdicts.VerdictStatus.decide`)."""
        return VerdictStatus.decide(self.margin, self.error)

    @property
    def normalized_margin(self) -> float:
        return self.margin / self.scale


@dataclass(frozen=True, eq=False)
class Claim:
    """One executable claim (see the module docstring)."""

    id: str
    title: str
    source: str
    statement: str
    kind: Kind
    expectation: Expectation
    strategy: Callable[[frozenset], Any]
    check: Callable[[dict, frozenset], Outcome]
    hypotheses: tuple[Hyp, ...] = ()
    dropped: frozenset = frozenset()
    parent: str | None = None
    how: str = ""
    cost: float = 1.0
    timeout: float | None = None  # seconds before the run stops the claim (None: the profile's claim_timeout)
    rests_on: tuple[str, ...] = ()
    #: ``(profile name, number of examples)`` pairs that replace the profile's ``budget / cost`` rule under those
    #: profiles (see :meth:`examples_under`)
    examples: tuple[tuple[str, int], ...] = ()

    def __post_init__(self) -> None:
        require(bool(self.id) and all(part.isidentifier() or part.replace("_", "").isalnum()
                                      for part in self.id.split(".")),
                f"claim id must be dotted identifiers, got {self.id!r}")
        require(isinstance(self.kind, Kind), f"kind must be a Kind, got {self.kind!r}")
        require(isinstance(self.expectation, Expectation), f"expectation must be an Expectation, got {self.expectation!r}")
        names = [h.name for h in self.hypotheses]
        require(len(set(names)) == len(names), f"claim {self.id}: hypothesis names repeat: {names}")
        unknown = set(self.dropped) - set(names)
        require(not unknown, f"claim {self.id}: cannot drop unknown hypotheses {sorted(unknown)}")
        require(self.cost > 0, f"claim {self.id}: cost must be > 0, got {self.cost!r}")
        ok = self.timeout is None or (isinstance(self.timeout, (int, float)) and 0 < self.timeout < math.inf)
        require(ok, f"claim {self.id}: timeout must be None or a number of seconds > 0, got {self.timeout!r}")
        for name, n in self.examples:
            require(isinstance(name, str) and isinstance(n, int) and not isinstance(n, bool) and n >= 1,
                    f"claim {self.id}: examples must map profile names to counts >= 1, got {name!r}: {n!r}")

    def examples_under(self, profile: str) -> int | None:
        """The number of examples the claim declares for the profile named ``profile`` (``None``: the profile's
        own rule, ``budget / cost`` clamped to its range, applies)."""
        return dict(self.examples).get(profile)

    @property
    def active_hypotheses(self) -> tuple[Hyp, ...]:
        return tuple(h for h in self.hypotheses if h.name not in self.dropped)

    def drop(self, *names: str, id: str | None = None, expectation: Expectation = Expectation.REFUTED,
             title: str | None = None, statement: str | None = None) -> "Claim":
        """The same claim with the named hypotheses dropped (a negative control or an ablation).

        ``statement`` says what is tested without them; by default the parent's statement, prefixed by the
        hypotheses dropped (so that it never reads as if they were still assumed)."""
        new_id = id or f"{self.id}.without_{'_'.join(names)}"
        texts = {h.name: h.text for h in self.hypotheses}
        dropped_text = "; ".join(f"{n} ({texts.get(n, n)})" for n in names)
        return replace(self, id=new_id, dropped=self.dropped | frozenset(names), expectation=expectation,
                       parent=self.id, title=title or f"{self.title} (without {', '.join(names)})",
                       statement=statement or f"WITHOUT the hypothesis {dropped_text}, the conclusion of: "
                                              f"{self.statement}")

    def inputs_strategy(self):
        return self.strategy(self.dropped)

    def run_check(self, inputs: dict) -> Outcome:
        return self.check(inputs, self.dropped)

    def describe(self) -> dict:
        return {
            "id": self.id, "title": self.title, "source": self.source, "statement": self.statement,
            "kind": self.kind.value, "expectation": self.expectation.value,
            "hypotheses": [{"name": h.name, "text": h.text, "dropped": h.name in self.dropped}
                           for h in self.hypotheses],
            "parent": self.parent, "how": self.how, "rests_on": list(self.rests_on),
        }


CLAIMS: dict[str, Claim] = {}

#: The search profile a claim's strategy is being built for ("quick", "ci", "thorough", ...): experiment claims
#: draw a stated reduction of the papers' setting under the fast profiles and the setting itself under
#: "thorough". The driver sets it around ``Claim.inputs_strategy()``; the inputs drawn name the setting, so a
#: replay needs no profile.
_PROFILE: contextvars.ContextVar = contextvars.ContextVar("verify_profile", default="quick")


def current_profile() -> str:
    """The name of the profile the strategy being built is for (default "quick")."""
    return _PROFILE.get()


@contextlib.contextmanager
def profile_scope(name: str):
    """Build strategies for profile ``name`` inside this block."""
    token = _PROFILE.set(str(name))
    try:
        yield
    finally:
        _PROFILE.reset(token)


def _same_definition(a: Claim, b: Claim) -> bool:
    """Whether ``b`` re-executes the definition of ``a`` (a notebook cell run again, a module reloaded)."""
    fa, fb = a.check, b.check
    return (getattr(fa, "__module__", None) == getattr(fb, "__module__", None)
            and getattr(fa, "__qualname__", None) == getattr(fb, "__qualname__", None))


def register(c: Claim, *, replace_existing: bool = False) -> Claim:
    """Add a claim to the registry (ids are unique; re-executing the same definition replaces the claim)."""
    if c.id in CLAIMS and not replace_existing and CLAIMS[c.id] is not c and not _same_definition(CLAIMS[c.id], c):
        raise InvalidInput(f"claim id {c.id!r} is already registered")
    CLAIMS[c.id] = c
    return c


def claim(id: str, *, title: str, source: str, statement: str, kind: str | Kind, strategy,
          expectation: str | Expectation = "holds", hypotheses=(), how: str = "", cost: float = 1.0,
          timeout: float | None = None, rests_on=(), examples=None):
    """Decorator registering ``check(inputs, dropped) -> Outcome`` as a claim; returns the :class:`Claim`.

    ``hypotheses`` is a sequence of ``(name, text)`` pairs or :class:`Hyp`. ``rests_on`` names the parts the
    verdict rests on (exact, dynamic, statistical evidence), for ``verify show`` and the report. ``strategy`` is a function of the
    dropped set returning a Hypothesis strategy of input dicts (or a strategy, used whatever is dropped).
    ``timeout`` (seconds) overrides the profile's per-claim time limit (``verify run --claim-timeout`` overrides
    both); a claim past it is stopped and reported ``error`` with reason ``timeout``. ``examples`` maps profile
    names to the exact number of examples under them, replacing the profile's ``budget / cost`` rule (and its
    minimum): for claims whose inputs change with the profile, e.g. an experiment that runs the paper's setting
    (minutes per example) only under ``thorough`` while ``cost`` describes the reduced setting of the others.
    """
    try:
        k = kind if isinstance(kind, Kind) else Kind(kind)
        e = expectation if isinstance(expectation, Expectation) else Expectation(expectation)
    except ValueError as exc:
        raise InvalidInput(f"claim {id}: {exc}") from None
    hyps = tuple(h if isinstance(h, Hyp) else Hyp(*h) for h in hypotheses)
    strat = strategy if callable(strategy) and not hasattr(strategy, "example") else (lambda dropped, s=strategy: s)

    def wrap(check: Callable[[dict, frozenset], Outcome]) -> Claim:
        c = Claim(id, title, source, statement, k, e, strat, check, hyps, how=how or (check.__doc__ or "").strip(),
                  cost=cost, timeout=timeout, rests_on=tuple(rests_on),
                  examples=tuple(sorted((examples or {}).items())))
        return register(c)

    return wrap
