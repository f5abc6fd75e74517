"""One statistical rule for every statistical claim: ``holds`` or ``violated`` only when a test at the stated level
decides, ``inconclusive`` when it does not, and a stated power against a named alternative.

A statistical claim is checked once per Hypothesis example, and a run of a profile draws up to
:data:`MAX_TESTS_PER_RUN` examples (the largest ``max_examples`` of any profile; ``tests/unit/test_stats.py`` keeps
the two in step). A run turns red when one example is ``violated`` or ``inconclusive``. So each test here spends
``run_level / MAX_TESTS_PER_RUN`` on a wrong ``violated`` and is sized so that ``inconclusive`` is at least as
rare under the claimed alternative: by the union bound, no profile turns red by chance (while the claim holds at
its stated strength) with probability above ``run_level``. A wrong ``holds`` needs every example of a run to hold,
so its level ``alpha`` is a per-test level.

Two tests, both exact (no normal approximation), with their operating characteristic computed exactly:

- :class:`ProportionAtLeast`: the claim "P(success) >= p1" against the alternative it rules out "P(success) <=
  p0" (p0 < p1), by Wald's sequential probability ratio test with Ville's inequality. The likelihood ratio
  ``L_n = prod (p1/p0)^x ((1-p1)/(1-p0))^(1-x)`` is a non-negative supermartingale under every p <= p0 and ``1/L_n``
  under every p >= p1, so ``P(sup_n L_n >= 1/alpha) <= alpha`` and ``P(inf_n L_n <= beta) <= beta`` at any stopping
  time: the test stops as soon as it decides (anytime-valid), after at most ``n_max`` trials (then inconclusive).
- :class:`ProportionEquals`: the claim "P(success) = p*", fixed n: ``violated`` when the exact two-sided binomial
  test rejects p = p* at the per-test level; ``holds`` only when an equivalence test (two one-sided exact binomial
  tests, TOST) rejects |p - p*| >= delta at level ``alpha``. Not rejecting p = p* is never taken as evidence.

Outcomes are in decades of evidence: ``margin = log10`` of the likelihood ratio (SPRT) or of the inverse p-value
(fixed n), ``error = log10`` of the threshold on the margin's side, so ``|margin| > error`` is exactly "the test
decided" and the report's margin/error ratio reads as in every other claim. Usage (a claim's check)::

    TEST = ProportionAtLeast(p0=0.5, p1=0.9, alpha=1e-3, run_level=1e-3, n_max=200)
    dec = TEST.run(lambda i: trial(seed * TEST.n_max + i))   # trial -> (success: bool, detail: dict)
    return TEST.outcome(dec, engine="gd")
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable, Iterable

import numpy as np
from scipy.stats import binom

from models.errors import require
from models.stored.verdicts import VerdictStatus

from ._common import jsonable
from .api import Outcome

#: The most tests (Hypothesis examples) one run of any profile evaluates: the thorough profile's max_examples.
MAX_TESTS_PER_RUN = 10_000
#: The default chance that a run of any profile turns red although the claim holds at its stated strength.
RUN_LEVEL = 1e-3


@dataclass(frozen=True)
class Decision:
    """What a test concluded: ``status`` ("holds", "violated", "inconclusive"), the evidence ``margin`` and the
    ``error`` (threshold) it must clear, both in decades, the trials used and the per-trial details kept."""

    status: str
    margin: float
    error: float
    n: int
    successes: int
    trials: list = field(default_factory=list)


@dataclass(frozen=True)
class Operating:
    """The exact operating characteristic of a test at one success probability ``p``."""

    p: float
    holds: float
    violated: float
    inconclusive: float
    mean_n: float


def _status(margin: float, error: float) -> VerdictStatus:
    # the same comparison as properties.api.Outcome.status, so a Decision and its Outcome always agree
    return VerdictStatus.decide(margin, error)


# ----------------------------------------------------------------------------------------------------------------
# Sequential: P(success) >= p1 against P(success) <= p0
# ----------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProportionAtLeast:
    """Sequential probability ratio test of "P(success) >= p1" against "P(success) <= p0" (see the module docs).

    ``alpha``: P(holds) when P(success) <= p0 (per test). ``run_level``: the chance that a whole run turns red
    (violated or inconclusive) when P(success) >= p1; a wrong ``violated`` is spent ``run_level /
    tests_per_run`` per test, and ``n_max`` must make ``inconclusive`` at p1 no likelier (checked by
    :meth:`red_by_chance`, which a unit test asserts for every claim's test)."""

    p0: float
    p1: float
    alpha: float = 1e-3
    run_level: float = RUN_LEVEL
    n_max: int = 200
    tests_per_run: int = MAX_TESTS_PER_RUN

    def __post_init__(self) -> None:
        require(0.0 < self.p0 < self.p1 < 1.0, f"need 0 < p0 < p1 < 1, got p0={self.p0}, p1={self.p1}")
        require(0.0 < self.alpha < 1.0 and 0.0 < self.run_level < 1.0, "levels must lie in (0, 1)")
        require(self.n_max >= 1 and self.tests_per_run >= 1, "n_max and tests_per_run must be >= 1")

    @property
    def beta(self) -> float:
        """The per-test level of a wrong ``violated``."""
        return self.run_level / self.tests_per_run

    @property
    def up(self) -> float:
        """log10 of the likelihood ratio factor of a success."""
        return math.log10(self.p1 / self.p0)

    @property
    def down(self) -> float:
        """log10 of the likelihood ratio factor of a failure (negative)."""
        return math.log10((1.0 - self.p1) / (1.0 - self.p0))

    def _margin(self, s: int, f: int) -> tuple[float, float]:
        m = s * self.up + f * self.down
        return m, (-math.log10(self.alpha) if m >= 0 else -math.log10(self.beta))

    def decide(self, outcomes: Iterable) -> Decision:
        """Consume ``outcomes`` (bools, or ``(bool, detail)`` pairs) one at a time until the test decides or
        ``n_max`` trials were used; nothing past the decision is drawn."""
        s = f = 0
        kept = []
        margin, error = self._margin(0, 0)
        for item in outcomes:
            ok, detail = (item if isinstance(item, tuple) else (item, None))
            s, f = s + bool(ok), f + (not bool(ok))
            if detail is not None:
                kept.append(detail)
            margin, error = self._margin(s, f)
            if _status(margin, error) != "inconclusive" or s + f >= self.n_max:
                break
        return Decision(_status(margin, error), margin, error, s + f, s, kept)

    def run(self, trial: Callable[[int], object]) -> Decision:
        """Call ``trial(i)`` for i = 0, 1, ... (each a bool or ``(bool, detail)``) until the test decides."""
        return self.decide(trial(i) for i in range(self.n_max))

    def operating(self, p: float) -> Operating:
        """Exact P(holds), P(violated), P(inconclusive) and E[trials] when each trial succeeds with probability p
        (dynamic programming over the number of successes)."""
        alive = np.zeros(self.n_max + 1)
        alive[0] = 1.0
        holds = violated = mean_n = 0.0
        for n in range(1, self.n_max + 1):
            nxt = np.zeros_like(alive)
            nxt[1:] += p * alive[:-1]
            nxt[:] += (1.0 - p) * alive
            for s in range(n + 1):
                if nxt[s] == 0.0:
                    continue
                st = _status(*self._margin(s, n - s))
                if st == "holds":
                    holds += nxt[s]
                elif st == "violated":
                    violated += nxt[s]
                else:
                    continue
                mean_n += n * nxt[s]
                nxt[s] = 0.0
            alive = nxt
        rest = float(alive.sum())
        return Operating(p, float(holds), float(violated), rest, float(mean_n + self.n_max * rest))

    def red_by_chance(self) -> float:
        """Union bound on the chance that a run of ``tests_per_run`` tests turns red when P(success) >= p1 (the
        decision regions are monotone in the successes, so p = p1 is the worst case)."""
        op = self.operating(self.p1)
        return self.tests_per_run * (op.violated + op.inconclusive)

    def describe(self) -> str:
        op0, op1 = self.operating(self.p0), self.operating(self.p1)
        return (f"sequential probability ratio test of P(success) >= {self.p1:g} against P(success) <= {self.p0:g}: "
                f"holds when the likelihood ratio exceeds 1/alpha = {1 / self.alpha:.3g} (P(holds) <= "
                f"{op0.holds:.2g} at p = {self.p0:g}), violated when it falls below {self.beta:.3g} (= {self.run_level:g} "
                f"/ {self.tests_per_run} tests per run), at most {self.n_max} trials; power P(holds) = {op1.holds:.8f} "
                f"at p = {self.p1:g} (mean {op1.mean_n:.1f} trials); a run turns red by chance with probability <= "
                f"{self.red_by_chance():.2g}")

    def outcome(self, dec: Decision, engine: str = "", **detail) -> Outcome:
        """The :class:`~properties.api.Outcome` of a decision (margin and error in decades of evidence)."""
        d = {"test": "SPRT", "p0": self.p0, "p1": self.p1, "alpha": self.alpha, "beta": self.beta,
             "run_level": self.run_level, "n_max": self.n_max, "trials": dec.n, "successes": dec.successes,
             "log10_likelihood_ratio": dec.margin, "decision": dec.status,
             "power": {"alternative": f"P(success) = {self.p1:g}", "P(holds)": _holds_at(self, self.p1)},
             **detail}
        return Outcome(dec.margin, dec.error, jsonable(d), engine, max(dec.error, 1e-12))


# ----------------------------------------------------------------------------------------------------------------
# Fixed n: P(success) = p*
# ----------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProportionEquals:
    """Fixed-n test of "P(success) = p_star" (see the module docs): violated when the exact two-sided binomial
    test rejects p = p_star at ``run_level / tests_per_run``; holds when the TOST equivalence test rejects
    |p - p_star| >= delta at ``alpha``; else inconclusive."""

    p_star: float
    delta: float
    n: int
    alpha: float = 1e-3
    run_level: float = RUN_LEVEL
    tests_per_run: int = MAX_TESTS_PER_RUN

    def __post_init__(self) -> None:
        require(0.0 < self.p_star < 1.0 and 0.0 < self.delta, "need 0 < p_star < 1 and delta > 0")
        require(0.0 < self.alpha < 1.0 and 0.0 < self.run_level < 1.0 and self.n >= 1, "bad levels or n")

    @property
    def beta(self) -> float:
        return self.run_level / self.tests_per_run

    def evidence(self, k: int) -> tuple[float, float]:
        """``(against, for)``: -log10 of the two-sided p-value of p = p_star and of the TOST p-value."""
        n, p = self.n, self.p_star
        lo, hi = binom.sf(k - 1, n, p), binom.cdf(k, n, p)
        two = min(1.0, 2.0 * min(lo, hi))
        p_lo, p_hi = max(p - self.delta, 0.0), min(p + self.delta, 1.0)
        tost = max(binom.sf(k - 1, n, p_lo) if p_lo > 0 else 0.0, binom.cdf(k, n, p_hi) if p_hi < 1 else 0.0)
        return -math.log10(max(two, 1e-300)), -math.log10(max(tost, 1e-300))

    def decide(self, k: int) -> Decision:
        against, for_ = self.evidence(int(k))
        if against > -math.log10(self.beta):
            margin, error = -against, -math.log10(self.beta)
        else:
            margin, error = for_, -math.log10(self.alpha)
        return Decision(_status(margin, error), margin, error, self.n, int(k))

    def operating(self, p: float) -> Operating:
        """Exact P(holds), P(violated), P(inconclusive) at success probability p (the decisions of :meth:`decide`,
        vectorized over every count k)."""
        n, ps = self.n, self.p_star
        ks = np.arange(n + 1)
        two = np.minimum(1.0, 2.0 * np.minimum(binom.sf(ks - 1, n, ps), binom.cdf(ks, n, ps)))
        p_lo, p_hi = max(ps - self.delta, 0.0), min(ps + self.delta, 1.0)
        t_lo = binom.sf(ks - 1, n, p_lo) if p_lo > 0 else np.zeros(n + 1)
        t_hi = binom.cdf(ks, n, p_hi) if p_hi < 1 else np.zeros(n + 1)
        against = -np.log10(np.maximum(two, 1e-300))
        for_ = -np.log10(np.maximum(np.maximum(t_lo, t_hi), 1e-300))
        violated = against > -math.log10(self.beta)
        holds = ~violated & (for_ > -math.log10(self.alpha))
        pmf = binom.pmf(ks, n, p)
        h, v = float(pmf[holds].sum()), float(pmf[violated].sum())
        return Operating(p, h, v, max(0.0, 1.0 - h - v), float(n))

    def red_by_chance(self) -> float:
        """Union bound on a red run when p = p_star exactly."""
        op = self.operating(self.p_star)
        return self.tests_per_run * (op.violated + op.inconclusive)

    def outcome(self, dec: Decision, engine: str = "", **detail) -> Outcome:
        d = {"test": "exact binomial: two-sided (violated) and TOST (holds)", "p_star": self.p_star,
             "delta": self.delta, "alpha": self.alpha, "beta": self.beta, "n": self.n, "successes": dec.successes,
             "frequency": dec.successes / self.n, "decision": dec.status,
             "power": {"alternative": f"P(success) = {self.p_star:g}", "P(holds)": _holds_at(self, self.p_star)},
             **detail}
        return Outcome(dec.margin, dec.error, jsonable(d), engine, max(dec.error, 1e-12))


@lru_cache(maxsize=64)
def _holds_at(test, p: float) -> float:
    return test.operating(p).holds


__all__ = ["Decision", "MAX_TESTS_PER_RUN", "Operating", "ProportionAtLeast", "ProportionEquals", "RUN_LEVEL"]
