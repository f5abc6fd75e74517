"""RC20's bound on the minimizers of a norm or quasi-norm over the completions, at full strength (issue 11).

The claim ``rc20.prop.norm_minimizers_bounded`` says: for every norm or quasi-norm with
``||A + B|| <= K (||A|| + ||B||)``, every minimizer x* of ``g(x) = ||x E11 + J||`` has ``|x*| <= B :=
2 K ||J|| / ||E11||`` (catalog RC20-Prop-AnyNorm). Drawn among the suite's usual norms (Schatten, entrywise,
induced, weighted) the largest minimizer stays below half of B and every quasi-norm is minimized at x = 0, so a
bound cut in half, or one without K, would still hold there. This module supplies what makes the check sharp:

- :class:`LinearLp`: ``||M vec(W)||_p`` for an invertible 4x4 ``M`` (vec row-major) and p in (0, inf]; a norm for
  p >= 1, a quasi-norm with K = 2^(1/p - 1) for p < 1 (M is a bijection, so K is that of l_p on R^4).
- Two families that approach the bound (:func:`tight_families`), written in the coordinates
  ``a = w11, b = (w12 + w21)/2`` of the completions' plane (the other two coordinates, ``(w12 - w21)/2`` and
  ``w22``, pass through unchanged):

  * ``tight_lp``: ``(|a + X b|^p + |gamma a|^p)^(1/p)`` with p in [0.3, 1], gamma = 1 - eta < 1. On the
    completions g(x) = (|x + X|^p + gamma^p |x|^p)^(1/p): a concave function of |x + X|^p-type pieces, so its
    minimum over x is at a kink, x = -X (value gamma X, the unique minimizer since gamma < 1) or x = 0 (value
    X). ||J|| = X, ||E11|| = (1 + gamma^p)^(1/p), so B = X (2/(1 + gamma^p))^(1/p) and |x*|/B =
    ((1 + gamma^p)/2)^(1/p) -> 1 as eta -> 0 (about 1 - eta/2). For p < 1 the bound without K,
    2 ||J||/||E11||, is *below* |x*| = X once 2^(1/p - 1) ((1 + gamma^p)/2)^(1/p) > 1: K is needed, and these
    quasi-norms have a nonzero minimizer.
  * ``tight_max``: ``max(|b|, |a - c b|)`` with c = 1 - eta: g(x) = max(1, |x - c|) is minimized exactly on
    [c - 1, c + 1]; ||J|| = 1, ||E11|| = 1, B = 2, so the largest minimizer is 2 - eta: |x*|/B = 1 - eta/2.

  (At eta = 0 both attain the bound exactly; the strategy keeps eta >= 1e-2 so that the margin is resolved.)

- :func:`largest_minimizer`: the numerical search the claim uses (see its docstring for the error bound), and
  :func:`minimizer_outcome`, the claim's check with the bound's factor and K as parameters, so that wrong versions
  (the bound halved, K dropped) can be run against the same draws (tests/unit/test_norm_minimizers.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from hypothesis import strategies as st

from models.errors import require

from . import strategies as S
from ._common import point_outcome
from .api import Outcome
from .measures import Measure, lp

INF = math.inf
_EPS = float(np.finfo(float).eps)


@dataclass(frozen=True, slots=True)
class LinearLp(Measure):
    """``||M vec(W)||_p`` for an invertible square ``M`` (vec row-major), p in (0, inf].

    A norm for p >= 1; for p < 1 a quasi-norm with the p-triangle inequality, hence K = 2^(1/p - 1). ``c`` (the
    infimum of ``||X||`` over X_11 = 1) is the lower bound ``sigma_min(M) / sqrt(n)`` (``||v||_p >= ||v||_inf >=
    ||v||_2 / sqrt(n)``)."""

    p: float
    M: tuple = field(default=())
    label: str = ""

    def __post_init__(self):
        p = INF if self.p in ("inf", INF) else float(self.p)
        require(p == INF or (math.isfinite(p) and p > 0), f"linear_lp p must be in (0, inf], got {self.p!r}")
        M = np.asarray(self.M, dtype=float)
        require(M.ndim == 2 and M.shape[0] == M.shape[1] and M.size > 0, f"M must be square, got shape {M.shape}")
        require(bool(np.all(np.isfinite(M))), "M must be finite")
        require(np.linalg.cond(M) < 1e12, f"M must be invertible (condition number {np.linalg.cond(M):.3g})")
        object.__setattr__(self, "p", p)
        object.__setattr__(self, "M", tuple(tuple(float(v) for v in row) for row in M))

    is_norm = True
    c_kind = "lower bound"

    @property
    def matrix(self) -> np.ndarray:
        return np.array(self.M)

    def __call__(self, W) -> float:
        return lp(self.matrix @ np.asarray(W, dtype=float).reshape(-1), self.p)

    def __repr__(self) -> str:
        p = "inf" if self.p == INF else f"{self.p:g}"
        return f"||M vec(.)||_{p} ({self.label or f'{len(self.M)}x{len(self.M)}'})"

    @property
    def quasi_constant(self) -> float:
        return 1.0 if self.p >= 1 else 2.0 ** (1.0 / self.p - 1.0)

    @property
    def c(self) -> float:
        return float(np.linalg.svd(self.matrix, compute_uv=False)[-1]) / math.sqrt(len(self.M))

    def error(self, W, delta: float) -> float:
        """Bound on ``|f(W + D) - f(W)|`` over ``max|D| <= delta``: f(D) <= (sum_j (delta ||M e_j||_p)^min(p,1))^(1/min(p,1)),
        then the triangle inequality (p >= 1) or the p-triangle inequality (p < 1)."""
        v = self(W)
        cols = [lp(col, self.p) for col in self.matrix.T]
        q = min(self.p, 1.0)
        fd = delta * float(sum(c ** q for c in cols)) ** (1.0 / q)
        if q == 1.0:
            return fd + 4 * _EPS * v
        return (v ** q + fd ** q) ** (1.0 / q) - v + 4 * _EPS * v

    def spec(self) -> dict:
        d = {"kind": "linear_lp", "p": "inf" if self.p == INF else float(self.p), "M": [list(r) for r in self.M]}
        if self.label:
            d["label"] = self.label
        return d


def _plane_matrix(alpha: float, beta: float, gamma: float, delta: float) -> list[list[float]]:
    """The 4x4 map sending vec(W) (row-major) to (alpha a + beta b, gamma a + delta b, (w12 - w21)/2, w22) with
    a = w11, b = (w12 + w21)/2."""
    return [[alpha, beta / 2, beta / 2, 0.0], [gamma, delta / 2, delta / 2, 0.0], [0.0, 0.5, -0.5, 0.0],
            [0.0, 0.0, 0.0, 1.0]]


def tight_lp(p: float, X: float, eta: float) -> dict:
    """The ``tight_lp`` family's spec (module docstring): largest minimizer -X, |x*|/B = ((1 + gamma^p)/2)^(1/p)."""
    gamma = 1.0 - eta
    return {"kind": "linear_lp", "p": float(p), "M": _plane_matrix(1.0, X, gamma, 0.0),
            "label": f"tight_lp X={X:.6g} gamma={gamma:.6g}"}


def tight_max(eta: float) -> dict:
    """The ``tight_max`` family's spec (module docstring): minimizers [c - 1, c + 1], c = 1 - eta, B = 2."""
    c = 1.0 - eta
    return {"kind": "linear_lp", "p": "inf", "M": _plane_matrix(0.0, 1.0, 1.0, -c), "label": f"tight_max c={c:.6g}"}


def tight_families():
    """Specs of the two families that approach the bound (eta in [1e-2, 0.5], log-scaled; X in [0.1, 100])."""
    eta = S.log_scale(-2.0, math.log10(0.5))
    lp = st.tuples(st.floats(0.3, 1.0, allow_nan=False), S.log_scale(-1.0, 2.0), eta).map(lambda t: tight_lp(*t))
    return st.one_of(lp, eta.map(tight_max))


def expected_ratio(spec: dict) -> float | None:
    """The closed-form |x*|/B of a tight family's spec (None for other measures); used by the tests only."""
    label = spec.get("label", "")
    if label.startswith("tight_lp"):
        p = float(spec["p"])
        gamma = float(label.split("gamma=")[1])
        return ((1.0 + gamma ** p) / 2.0) ** (1.0 / p)
    if label.startswith("tight_max"):
        c = float(label.split("c=")[1])
        return (c + 1.0) / 2.0
    return None


# ----------------------------------------------------------------------------------------------------------------
# The search
# ----------------------------------------------------------------------------------------------------------------
#: relative value tolerance that defines "a minimizer" numerically, and the finer one used to measure how much the
#: largest near-minimizer depends on it (that dependence is the search's error)
TOL, TOL_FINE = 1e-9, 1e-12
_MAX_REFINED = 6


def _edge(g, inside: float, outside: float, level: float) -> float:
    """Bisect between ``inside`` (g <= level) and ``outside`` (g > level) for the edge of the sublevel set."""
    for _ in range(200):
        mid = 0.5 * (inside + outside)
        if mid in (inside, outside):
            break
        if g(mid) <= level:
            inside = mid
        else:
            outside = mid
    return inside


def _golden(g, lo: float, hi: float) -> tuple[float, float]:
    """Golden-section search of [lo, hi] down to float64 resolution (a local minimizer of a unimodal g; robust at
    kinks and cusps where parabolic interpolation is not)."""
    r = (math.sqrt(5.0) - 1.0) / 2.0
    a, b = lo, hi
    c, d = b - r * (b - a), a + r * (b - a)
    gc, gd = g(c), g(d)
    for _ in range(200):
        if not (a < c < d < b):
            break
        if gc <= gd:
            b, d, gd = d, c, gc
            c = b - r * (b - a)
            gc = g(c)
        else:
            a, c, gc = c, d, gd
            d = a + r * (b - a)
            gd = g(d)
    return (c, gc) if gc <= gd else (d, gd)


def largest_minimizer(g, B: float) -> dict:
    """The largest |x| among the global minimizers of ``g`` over [-1e8, 1e8], with an error bound.

    Grid: 401 points on [-3B, 3B] (B the bound; 10 when infinite), 40 log-spaced points out to +-1e8 each side,
    and 0. Every strict local minimum of the grid (at most 6, lowest first) is refined by a golden-section
    search on its two neighbouring cells (so kinks and cusps of quasi-norms are located to ~1e-12 relative). With
    ``gmin`` the smallest value found, the near-minimizers are the points with g <= gmin (1 + TOL); the one of
    largest |x| is pushed outward to the edge of that sublevel set by bisection against the next grid point out
    (a plateau of minimizers, as for max-type norms, is followed to its end). Error: the difference between the
    edges found with TOL and with TOL_FINE (how much "minimizer" depends on the tolerance; for a kink of slope s
    it is ~ TOL gmin / s) plus 1e-12 |x| for the bisection and the float64 evaluation of g. A narrow dip that lies
    wholly between grid points far from [-3B, 3B] is not found (a grid search, not a proof)."""
    span = 3.0 * max(B if math.isfinite(B) else 10.0, 1.0)
    lin = np.linspace(-span, span, 401)
    far = np.logspace(math.log10(span), 8.0, 40)
    xs = np.unique(np.concatenate([lin, far, -far, [0.0]]))
    vals = np.array([g(float(x)) for x in xs])
    n = len(xs)
    local = [k for k in range(n)
             if vals[k] <= vals[max(k - 1, 0)] and vals[k] <= vals[min(k + 1, n - 1)]
             and (vals[k] < vals[max(k - 1, 0)] or vals[k] < vals[min(k + 1, n - 1)] or k in (0, n - 1))]
    local = sorted(local, key=lambda k: vals[k])[:_MAX_REFINED] or [int(np.argmin(vals))]
    extra_x, extra_v = [], []
    for k in local:
        lo, hi = xs[max(k - 1, 0)], xs[min(k + 1, n - 1)]
        if hi > lo:
            xg, vg = _golden(g, lo, hi)   # Brent's parabolic steps stall near cusps; golden section does not
            extra_x.append(xg)
            extra_v.append(vg)
    allx = np.concatenate([xs, extra_x])
    allv = np.concatenate([vals, extra_v])
    order = np.argsort(allx)
    allx, allv = allx[order], allv[order]
    gmin = float(np.min(allv))

    def edge(tol: float) -> float:
        level = gmin + tol * abs(gmin) + 1e-300
        best = 0.0
        for sign in (1.0, -1.0):
            idx = [i for i in range(len(allx)) if allv[i] <= level and sign * allx[i] >= 0]
            if not idx:
                continue
            i = max(idx, key=lambda j: sign * allx[j])
            x_in = float(allx[i])
            nxt = i + (1 if sign > 0 else -1)
            if 0 <= nxt < len(allx):
                x_in = _edge(g, x_in, float(allx[nxt]), level)
            best = max(best, abs(x_in))
        return best

    xfar, xfine = edge(TOL), edge(TOL_FINE)
    err = abs(xfar - xfine) + 1e-12 * max(xfar, 1.0)
    return {"largest": xfar, "largest_fine_tol": xfine, "error": err, "minimum": gmin,
            "grid_spacing": float(lin[1] - lin[0])}


def minimizer_outcome(measure, *, factor: float = 1.0, with_k: bool = True) -> Outcome:
    """The check of ``rc20.prop.norm_minimizers_bounded`` on one measure, with the bound ``factor * 2 K ||J|| /
    ||E11||`` (``with_k=False``: K replaced by 1). factor = 1 with K is the theorem; factor 1/2, or no K, are the
    wrong versions the tests run. Margin ``(bound - |x*|)/bound``, error the search's (:func:`largest_minimizer`)
    plus the relative float64 error of the bound's three values."""
    K = measure.quasi_constant if with_k else 1.0
    B_true = measure.minimizer_bound()
    e = measure.e11
    bound = math.inf if e == 0 else factor * 2.0 * K * measure.j_value / e
    found = largest_minimizer(measure.at_x, B_true)
    xfar = found["largest"]
    if not math.isfinite(bound):
        return point_outcome(1.0, 0.0, 1.0, measure=repr(measure), bound=bound, largest_minimizer=xfar)
    err = found["error"] / bound + 16 * _EPS
    return point_outcome((bound - xfar) / bound, err, 1.0, measure=repr(measure), bound=bound, factor=factor,
                         K=K, largest_minimizer=xfar, ratio=xfar / bound, minimum=found["minimum"],
                         search_error=found["error"])


__all__ = ["LinearLp", "TOL", "TOL_FINE", "expected_ratio", "largest_minimizer", "minimizer_outcome", "tight_families",
           "tight_lp", "tight_max"]
