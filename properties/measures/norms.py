"""Norm-like measures on matrices (see :mod:`properties.measures` for the constants each carries): Schatten-p,
entrywise l_p, induced p->q, a linear-map l_2 norm, weighted sums, and the rank surrogates that are *not* norms
(:class:`ERank`, :class:`SmoothRank`); :func:`from_spec` rebuilds one from its plain-dict :meth:`spec`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize_scalar

from models.errors import InvalidInput, require

from .rank import erank, erank_of_singular_values, svals

INF = math.inf
E11 = np.array([[1.0, 0.0], [0.0, 0.0]])
J = np.array([[0.0, 1.0], [1.0, 0.0]])
_EPS = float(np.finfo(float).eps)


def _pstr(p: float) -> str:
    if p == INF:
        return "inf"
    return f"{p:g}"


def _check_p(name: str, p: float, *, min_value: float = 0.0) -> float:
    p = float(p)
    require(p == INF or (math.isfinite(p) and p > min_value), f"{name} must be in ({min_value:g}, inf], got {p!r}")
    return p


def lp(v: np.ndarray, p: float) -> float:
    """The l_p (quasi-)norm of a vector (absolute values taken), p in (0, inf], scaled to avoid overflow."""
    v = np.abs(np.asarray(v, dtype=float)).ravel()
    m = float(np.max(v)) if v.size else 0.0
    if m == 0.0:
        return 0.0
    if p == INF:
        return m
    return m * float(np.sum((v / m) ** p)) ** (1.0 / p)


def _lp_cols(A: np.ndarray, p: float) -> np.ndarray:
    """Column-wise l_p of a 2-D array (scaled by the column max)."""
    A = np.abs(A)
    m = np.max(A, axis=0)
    safe = np.where(m > 0, m, 1.0)
    if p == INF:
        return m
    return np.where(m > 0, m * np.sum((A / safe) ** p, axis=0) ** (1.0 / p), 0.0)


# ----------------------------------------------------------------------------------------------------------------
# Norm-like measures
# ----------------------------------------------------------------------------------------------------------------
class Measure:
    """Shared behaviour of the norm-like measures (every one here and :class:`properties.norm_minimizers.LinearLp`):
    ``at_x`` on the RC20 completions, ``e11``, ``j_value``, RC20's ``minimizer_bound``."""

    is_norm: bool = True          # positive definite, absolutely homogeneous, quasi-triangle with quasi_constant
    c_kind: str = "closed form"

    def at_x(self, x: float) -> float:
        """``||x E_11 + J||``: the measure on the completion ``[[x, 1], [1, 0]]``."""
        return self(np.array([[x, 1.0], [1.0, 0.0]]))

    @property
    def e11(self) -> float:
        return self(E11)

    @property
    def j_value(self) -> float:
        return self(J)

    def minimizer_bound(self) -> float:
        """RC20's bound on any minimizer over the completions: ``2 K ||J|| / ||E_11||``."""
        e = self.e11
        return math.inf if e == 0 else 2.0 * self.quasi_constant * self.j_value / e


@dataclass(frozen=True, slots=True)
class Schatten(Measure):
    """Schatten-p (quasi-)norm ``(sum_i sigma_i^p)^(1/p)``, p in (0, inf] (p = 1 nuclear, 2 Frobenius, inf spectral)."""

    p: float

    def __post_init__(self):
        object.__setattr__(self, "p", _check_p("Schatten p", self.p))

    def __call__(self, W) -> float:
        return lp(svals(W), self.p)

    def __repr__(self) -> str:
        return f"S_{_pstr(self.p)}"

    @property
    def quasi_constant(self) -> float:
        return 1.0 if self.p >= 1 else 2.0 ** (1.0 / self.p - 1.0)

    c = property(lambda self: 1.0)

    def error(self, W, delta: float) -> float:
        s = svals(W)
        d = 2.0 * delta * math.sqrt(np.size(W))  # |d sigma_i| <= ||dW||_2 <= ||dW||_F <= sqrt(n) * 2 delta (safe)
        v = lp(s, self.p)
        return max(lp(s + d, self.p) - v, v - lp(np.maximum(s - d, 0.0), self.p)) + 4 * _EPS * v

    def dual_value(self, Y) -> float:
        """The dual norm (Schatten-q, 1/p + 1/q = 1); defined for p >= 1."""
        require(self.p >= 1, f"the dual of S_{self.p} (a quasi-norm) is not a norm")
        q = INF if self.p == 1 else (1.0 if self.p == INF else self.p / (self.p - 1.0))
        return lp(svals(Y), q)

    def spec(self) -> dict:
        return {"kind": "schatten", "p": _json_p(self.p)}


@dataclass(frozen=True, slots=True)
class Entrywise(Measure):
    """Entrywise l_p (quasi-)norm of the entries, p in (0, inf] (p = inf: the max-norm)."""

    p: float

    def __post_init__(self):
        object.__setattr__(self, "p", _check_p("entrywise p", self.p))

    def __call__(self, W) -> float:
        return lp(np.asarray(W, dtype=float), self.p)

    def __repr__(self) -> str:
        return f"l_{_pstr(self.p)}"

    @property
    def quasi_constant(self) -> float:
        return 1.0 if self.p >= 1 else 2.0 ** (1.0 / self.p - 1.0)

    c = property(lambda self: 1.0)

    def error(self, W, delta: float) -> float:
        a = np.abs(np.asarray(W, dtype=float))
        v = lp(a, self.p)
        return max(lp(a + delta, self.p) - v, v - lp(np.maximum(a - delta, 0.0), self.p)) + 4 * _EPS * v

    def dual_value(self, Y) -> float:
        require(self.p >= 1, f"the dual of l_{self.p} (a quasi-norm) is not a norm")
        q = INF if self.p == 1 else (1.0 if self.p == INF else self.p / (self.p - 1.0))
        return lp(np.asarray(Y, dtype=float), q)

    def spec(self) -> dict:
        return {"kind": "entrywise", "p": _json_p(self.p)}


@dataclass(frozen=True, slots=True)
class Induced(Measure):
    """Induced (operator) norm ``max_{||v||_p = 1} ||W v||_q`` for 2-column matrices, p, q in [1, inf].

    Closed forms for (1,1) (max column l_1), (inf,inf) (max row l_1), (2,2) (spectral), (1,q) (max column l_q);
    otherwise maximised over the unit l_p circle: a grid of 181 directions refined by a bounded scalar search.
    The result is always a value attained (a lower bound of the maximum, exact to the optimiser's tolerance) and
    never below ``||W e_1||_q >= |W_11|``, since e_1 is among the directions tried.
    """

    p: float
    q: float

    def __post_init__(self):
        object.__setattr__(self, "p", _check_p("induced p", self.p, min_value=1.0 - 1e-12))
        object.__setattr__(self, "q", _check_p("induced q", self.q, min_value=1.0 - 1e-12))
        require(self.p >= 1 and self.q >= 1, f"induced norms need p, q >= 1, got {self.p!r}, {self.q!r}")

    def __call__(self, W) -> float:
        W = np.asarray(W, dtype=float)
        p, q = self.p, self.q
        if p == 1:
            return max(lp(W[:, j], q) for j in range(W.shape[1]))
        if p == q == INF:
            return max(lp(W[i, :], 1.0) for i in range(W.shape[0]))
        if p == q == 2:
            return float(svals(W)[0])
        require(W.shape[1] == 2, "induced p->q norms by search are implemented for 2-column matrices")

        def val(th: float) -> float:
            v = np.array([math.cos(th), math.sin(th)])
            return lp(W @ v, q) / lp(v, p)

        grid = np.linspace(0.0, math.pi, 181)
        V = np.stack([np.cos(grid), np.sin(grid)])            # 2 x n directions
        vals = _lp_cols(W @ V, q) / _lp_cols(V, p)
        k = int(np.argmax(vals))
        best = float(vals[k])
        lo, hi = grid[max(k - 1, 0)], grid[min(k + 1, len(grid) - 1)]
        res = minimize_scalar(lambda t: -val(t), bounds=(lo, hi), method="bounded", options={"xatol": 1e-12})
        return max(best, float(-res.fun), val(0.0))

    def __repr__(self) -> str:
        return f"||.||_{{{_pstr(self.p)}->{_pstr(self.q)}}}"

    quasi_constant = property(lambda self: 1.0)
    c = property(lambda self: 1.0)

    def error(self, W, delta: float) -> float:
        # A norm: |f(W+D) - f(W)| <= f(D) <= sum_ij |D_ij| f(E_ij), and f(E_ij) = 1 for every p, q.
        closed = self.p == 1 or self.p == self.q == INF or self.p == self.q == 2
        return delta * np.size(W) + (4 * _EPS if closed else 1e-9) * self(W)

    def spec(self) -> dict:
        return {"kind": "induced", "p": _json_p(self.p), "q": _json_p(self.q)}


@dataclass(frozen=True, slots=True)
class LinearL2(Measure):
    """``||M vec(W)||_2`` for an invertible ``M`` (4x4 for 2x2 matrices; vec is row-major). A norm.

    ``c = 1 / ||M^{-T} e_1||_2`` in closed form (the minimum of ``||M x||`` over ``x_1 = 1``).
    """

    M: tuple = field(default=())
    seed: int | None = None

    def __post_init__(self):
        M = np.asarray(self.M, dtype=float)
        require(M.ndim == 2 and M.shape[0] == M.shape[1] and M.size > 0, f"M must be square, got shape {M.shape}")
        require(bool(np.all(np.isfinite(M))), "M must be finite")
        require(np.linalg.cond(M) < 1e12, f"M must be invertible (condition number {np.linalg.cond(M):.3g})")
        object.__setattr__(self, "M", tuple(tuple(float(v) for v in row) for row in M))

    @property
    def matrix(self) -> np.ndarray:
        return np.array(self.M)

    def __call__(self, W) -> float:
        return float(np.linalg.norm(self.matrix @ np.asarray(W, dtype=float).reshape(-1)))

    def __repr__(self) -> str:
        tag = f"seed {self.seed}" if self.seed is not None else f"{len(self.M)}x{len(self.M)}"
        return f"||M vec(.)||_2 (M: {tag})"

    quasi_constant = property(lambda self: 1.0)

    @property
    def c(self) -> float:
        e1 = np.zeros(len(self.M))
        e1[0] = 1.0
        return 1.0 / float(np.linalg.norm(np.linalg.solve(self.matrix.T, e1)))

    def error(self, W, delta: float) -> float:
        return delta * float(np.sum(np.linalg.norm(self.matrix, axis=0))) + 4 * _EPS * self(W)

    def dual_value(self, Y) -> float:
        return float(np.linalg.norm(np.linalg.solve(self.matrix.T, np.asarray(Y, dtype=float).reshape(-1))))

    def spec(self) -> dict:
        if self.seed is not None:
            return {"kind": "linear_l2", "seed": int(self.seed)}
        return {"kind": "linear_l2", "M": [list(r) for r in self.M]}


def random_linear_l2(seed: int, n: int = 4) -> LinearL2:
    """A random well-conditioned invertible linear map followed by l_2 (reproducible from ``seed``)."""
    rng = np.random.default_rng(int(seed))
    A = rng.standard_normal((n, n))
    U, s, Vt = np.linalg.svd(A)
    s = np.clip(s, s[0] / 20.0, None)  # condition number <= 20
    return LinearL2(U @ np.diag(s) @ Vt, seed=int(seed))


@dataclass(frozen=True, slots=True)
class Weighted(Measure):
    """``sum_i w_i ||.||_i`` with weights > 0 (a norm when every term is; K = max K_i)."""

    terms: tuple
    weights: tuple

    def __post_init__(self):
        require(len(self.terms) == len(self.weights) and len(self.terms) >= 1, "weights and terms must match, >= 1")
        require(all(float(w) > 0 and math.isfinite(float(w)) for w in self.weights),
                f"weights must be positive, got {self.weights!r}")
        object.__setattr__(self, "weights", tuple(float(w) for w in self.weights))
        object.__setattr__(self, "terms", tuple(self.terms))

    def __call__(self, W) -> float:
        return float(sum(w * t(W) for w, t in zip(self.weights, self.terms)))

    def __repr__(self) -> str:
        return " + ".join(f"{w:g}*{t!r}" for w, t in zip(self.weights, self.terms))

    @property
    def quasi_constant(self) -> float:
        return max(t.quasi_constant for t in self.terms)

    @property
    def c(self) -> float:
        return float(sum(w * t.c for w, t in zip(self.weights, self.terms)))

    @property
    def c_kind(self) -> str:
        return "lower bound"

    @property
    def is_norm(self) -> bool:
        return all(t.is_norm for t in self.terms)

    def error(self, W, delta: float) -> float:
        return float(sum(w * t.error(W, delta) for w, t in zip(self.weights, self.terms)))

    def spec(self) -> dict:
        return {"kind": "weighted", "weights": list(self.weights), "terms": [t.spec() for t in self.terms]}


# Rank surrogates: not norms (not homogeneous); drawn only when a claim's "is a norm" hypothesis is dropped.
@dataclass(frozen=True, slots=True)
class ERank(Measure):
    """Effective rank as a function on matrices (not a norm; minimised only as |x| -> inf on the completions)."""

    is_norm = False
    quasi_constant = 1.0  # nominal: what the bound would use if this were a norm
    c = 0.0
    c_kind = "not a norm"

    def __call__(self, W) -> float:
        return erank(W)

    def __repr__(self) -> str:
        return "erank"

    def error(self, W, delta: float) -> float:
        s = svals(W)
        d = 2.0 * delta * math.sqrt(np.size(W))
        lo = np.maximum(s - d, 0.0)
        return abs(erank_of_singular_values(s + d) - erank_of_singular_values(s)) + abs(erank_of_singular_values(lo) - erank_of_singular_values(s)) + 1e-12

    def spec(self) -> dict:
        return {"kind": "erank"}


@dataclass(frozen=True, slots=True)
class SmoothRank(Measure):
    """``sum_i sigma_i / (sigma_i + delta)``: a smooth rank surrogate (not a norm)."""

    delta: float = 0.1
    is_norm = False
    quasi_constant = 1.0
    c = 0.0
    c_kind = "not a norm"

    def __post_init__(self):
        require(float(self.delta) > 0, f"delta must be > 0, got {self.delta!r}")

    def __call__(self, W) -> float:
        s = svals(W)
        return float(np.sum(s / (s + self.delta)))

    def __repr__(self) -> str:
        return f"smooth-rank(delta={self.delta:g})"

    def error(self, W, delta: float) -> float:
        return 4.0 * delta / self.delta + 1e-12

    def spec(self) -> dict:
        return {"kind": "smooth_rank", "delta": float(self.delta)}


def _json_p(p: float):
    return "inf" if p == INF else float(p)


def p_from(v) -> float:
    """An exponent as stored in a spec (a number, or ``"inf"``) as a float."""
    return INF if v in ("inf", INF) else float(v)


def from_spec(spec: dict):
    """Rebuild a measure from its :meth:`spec` dict (what strategies draw)."""
    try:
        kind = spec["kind"]
        if kind == "schatten":
            return Schatten(p_from(spec["p"]))
        if kind == "entrywise":
            return Entrywise(p_from(spec["p"]))
        if kind == "induced":
            return Induced(p_from(spec["p"]), p_from(spec["q"]))
        if kind == "linear_l2":
            return random_linear_l2(spec["seed"]) if "seed" in spec else LinearL2(spec["M"])
        if kind == "weighted":
            return Weighted(tuple(from_spec(t) for t in spec["terms"]), tuple(spec["weights"]))
        if kind == "erank":
            return ERank()
        if kind == "smooth_rank":
            return SmoothRank(float(spec.get("delta", 0.1)))
        if kind == "linear_lp":  # defined with the families that approach RC20's minimizer bound
            from ..norm_minimizers import LinearLp
            return LinearLp(spec["p"], spec["M"], spec.get("label", ""))
    except (KeyError, TypeError) as exc:
        raise InvalidInput(f"malformed measure spec {spec!r}: {exc}") from None
    raise InvalidInput(f"unknown measure kind {spec.get('kind')!r} in {spec!r}")


__all__ = ["E11", "ERank", "Entrywise", "INF", "Induced", "J", "LinearL2", "Measure", "Schatten", "SmoothRank",
           "Weighted", "from_spec", "lp", "p_from", "random_linear_l2"]
