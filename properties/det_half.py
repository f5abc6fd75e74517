"""``rc20.prop.det_half`` at full strength: P(det W(0) > 0) = 1/2, decided by a test with stated level and power.

The statement (catalog RC20-Claim-Prob): for an init law invariant under ``W_L -> diag(-1, 1) W_L`` with
``P(det = 0) = 0``, ``P(det W_{L:1}(0) > 0) = 1/2`` at any scale. The old check (n = 2000, "holds" when a test
of p = 1/2 does not reject) let p = 0.52 pass. Now, with ``n = 2^18`` draws per setting and level
``alpha = 1e-6``:

- **violated** when the exact two-sided binomial test rejects ``p = 1/2`` at level alpha;
- **holds** when an equivalence test (two one-sided exact binomial tests, TOST) rejects ``|p - 1/2| >= DELTA``
  (``DELTA = 0.01``) at level alpha, i.e. the data show p within 0.01 of 1/2;
- **inconclusive** otherwise.

Level: a true p = 1/2 is declared violated with probability <= 1e-6 per setting; a p outside [0.49, 0.51] is
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

import math

import numpy as np
from scipy.stats import binom, binomtest

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


def decide(k: int, n: int, alpha: float = ALPHA, delta: float = DELTA) -> dict:
    """The decision of the module docstring for ``k`` positive signs out of ``n``: a dict with ``status``, the
    two-sided p-value of ``p = 1/2``, the TOST p-value of ``|p - 1/2| >= delta``, and a margin (in log10
    p-value units: positive when holds, negative when violated, 0 when inconclusive)."""
    p_eq = binomtest(k, n, 0.5).pvalue
    # TOST: reject p <= 1/2 - delta (large k) and p >= 1/2 + delta (small k)
    p_lo = binom.sf(k - 1, n, 0.5 - delta)     # P(K >= k | p = 1/2 - delta)
    p_hi = binom.cdf(k, n, 0.5 + delta)        # P(K <= k | p = 1/2 + delta)
    p_tost = max(p_lo, p_hi)
    lg = lambda p: math.log10(max(p, 1e-300))  # noqa: E731
    if p_eq <= alpha:
        status, margin = "violated", lg(p_eq) - lg(alpha)
    elif p_tost <= alpha:
        status, margin = "holds", lg(alpha) - lg(p_tost)
    else:
        status, margin = "inconclusive", 0.0
    return {"status": status, "margin": margin, "p_value_half": p_eq, "p_value_equivalence": p_tost,
            "positive": k, "n": n, "frequency": k / n}


def power(p: float, n: int = N_DRAWS, alpha: float = ALPHA, delta: float = DELTA) -> dict:
    """Exact probabilities (binomial) of each decision of :func:`decide` when the true probability is ``p``:
    the decision regions are ``k <= r`` or ``k >= n - r`` (violated) and ``e <= k <= n - e`` minus those (holds), whose
    edges ``r``, ``e`` are found by bisection (the p-values are monotone in k on each side of n/2)."""
    half = n // 2

    def edge(pred, a, b):   # the largest k in [a, b) with pred true, given pred(a) and not pred(b)
        while b - a > 1:
            m = (a + b) // 2
            if pred(m):
                a = m
            else:
                b = m
        return a

    r = edge(lambda k: binomtest(k, n, 0.5).pvalue <= alpha, 0, half)
    e = edge(lambda k: binom.sf(k - 1, n, 0.5 - delta) > alpha, 0, half) + 1
    violated = binom.cdf(r, n, p) + binom.sf(n - r - 1, n, p)
    lo, hi = max(e, r + 1), min(n - e, n - r - 1)      # decide() checks violated first
    holds = max(binom.cdf(hi, n, p) - binom.cdf(lo - 1, n, p), 0.0)
    return {"p": p, "violated": float(violated), "holds": float(holds),
            "inconclusive": float(max(1.0 - violated - holds, 0.0)), "edges": [int(r), int(e)]}


__all__ = ["ALPHA", "DELTA", "LAWS", "N_DRAWS", "decide", "det_signs", "power"]
