"""``rc20.prop.det_half`` at full strength: P(det W(0) > 0) = 1/2, decided by a test with stated level and power.

The statement (catalog RC20-Claim-Prob): for an init law invariant under ``W_L -> diag(-1, 1) W_L`` with
``P(det = 0) = 0``, ``P(det W_{L:1}(0) > 0) = 1/2`` at any scale. The old check (n = 2000, "holds" when a test
of p = 1/2 does not reject) let p = 0.52 pass. Now, with ``n = 2^18`` draws per setting and level
``alpha = 1e-6``:

- **violated** when the exact two-sided binomial test rejects ``p = 1/2`` at level ``1e-7`` (the run level 1e-3 of
  :mod:`properties.stats` over at most 10^4 tests a run);
- **holds** when an equivalence test (two one-sided exact binomial tests, TOST) rejects ``|p - 1/2| >= DELTA``
  (``DELTA = 0.01``) at level alpha, i.e. the data show p within 0.01 of 1/2;
- **inconclusive** otherwise.

This is :class:`properties.stats.ProportionEquals`, the rule every statistical claim uses. Level: a true
p = 1/2 is declared violated with probability <= 1e-7 per setting; a p outside [0.49, 0.51] is
declared holds with probability <= 1e-6. Power (normal approximation, stated and tested in
tests/unit/test_det_half.py): against p = 0.52 (the alternative the issue measured) the rejection has power
1 - 1e-40 or more (z = 20.5 against 4.9); under p = 1/2 the equivalence test decides with probability
>= 1 - 1e-7 (z = 10.2 against 4.75), so a true statement is inconclusive at most once in 10^7 settings.

The draws are the suite's init laws, vectorized (numpy, one generator per setting seed): per-layer i.i.d.
``N(0, scale^2)`` 2x2 factors (:func:`models.inits.gaussian`), the balanced construction from an i.i.d.
Gaussian product ``A = U S V^T`` (``W_1 = S^(1/L) V^T``, ``W_j = S^(1/L)``, ``W_L = U S^(1/L)``:
:func:`models.inits.balanced_from_product`), and, for the negative control, a law that is not symmetric
(``scale (I + 0.1 N)`` per layer). The det sign is the product of the factors' det signs (no cancellation).
"""

from __future__ import annotations

import numpy as np

from models.errors import require

from .stats import Decision, Operating, ProportionEquals

N_DRAWS = 2 ** 18
ALPHA = 1e-6
DELTA = 0.01
LAWS = ("gaussian", "balanced", "shifted")


def det_signs(law: str, depth: int, scale: float, seed: int, n: int = N_DRAWS) -> np.ndarray:
    """Det signs (+1, -1, or 0 when not resolvable) of ``n`` draws of the init ``law`` (2x2, ``depth`` layers)."""
    rng = np.random.default_rng([int(seed), depth, LAWS.index(law)])
    if law == "balanced":
        A = scale * rng.standard_normal((n, 2, 2))
        U, s, Vt = np.linalg.svd(A)
        root = s ** (1.0 / depth)
        first = root[:, :, None] * Vt                    # S^(1/L) V^T
        last = U * root[:, None, :]                      # U S^(1/L)
        if depth == 1:
            return np.sign(np.linalg.det(A))
        mids = np.sign(np.prod(root, axis=1)) ** (depth - 2)   # det S^(1/L) > 0
        return np.sign(np.linalg.det(first)) * np.sign(np.linalg.det(last)) * mids
    sign = np.ones(n)
    for _ in range(depth):
        if law == "gaussian":
            F = scale * rng.standard_normal((n, 2, 2))
        else:   # not symmetric under W_L -> diag(-1, 1) W_L
            F = scale * (np.eye(2) + 0.1 * rng.standard_normal((n, 2, 2)))
        sign = sign * np.sign(np.linalg.det(F))
    return sign


#: the test (the suite's one statistical rule, :mod:`properties.stats`): violated when the exact two-sided binomial
#: test rejects p = 1/2 at ``run_level / tests_per_run`` (1e-3 / 10^4 = 1e-7); holds when TOST rejects
#: ``|p - 1/2| >= DELTA`` at ``ALPHA``; else inconclusive
TEST = ProportionEquals(0.5, DELTA, N_DRAWS, alpha=ALPHA)


def decide(k: int, n: int = N_DRAWS) -> Decision:
    """The decision of :data:`TEST` for ``k`` positive signs out of ``n`` (= :data:`N_DRAWS`)."""
    require(n == TEST.n, f"the test is sized for n = {TEST.n} draws, got {n}")
    return TEST.decide(int(k))


def power(p: float) -> Operating:
    """Exact probabilities (binomial) of each decision when the true probability is ``p``."""
    return TEST.operating(p)


__all__ = ["ALPHA", "DELTA", "LAWS", "N_DRAWS", "TEST", "decide", "det_signs", "power"]
