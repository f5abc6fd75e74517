"""Parameterizations: deep matrix factorization and CP tensor factorization.

Deep matrix factorization of depth L (:class:`DeepMatrix`): ``W = W_L W_{L-1} ... W_1`` with
``W_j`` of shape ``d_j x d_{j-1}``, ``d_0 = d'`` (columns of the end-to-end matrix), ``d_L = d`` (rows), and
hidden widths ``d_1..d_{L-1}``. The overparameterized objective is ``phi(W_1..W_L) = l(W_{L:1})``, and

    d phi / d W_j = (W_L ... W_{j+1})^T  grad l(W)  (W_{j-1} ... W_1)^T .

CP factorization of order N with R components (:class:`CP`): factor matrices ``U_n`` of shape ``d_n x R``
whose column r is ``w_r^n``; ``T = sum_r w_r^1 (x) ... (x) w_r^N``; component r is ``W_r`` with norm
``prod_n ||w_r^n||``, and ``d phi / d w_r^n = G(w_r^1, .., w_r^{n-1}, ., w_r^{n+1}, .., w_r^N)`` (G contracted
with every other factor of the component).

Both are plain data (depth, widths, order, rank are fields, not subclasses); the arithmetic is in functions
that take a list of factors.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from functools import reduce

import numpy as np

from .errors import require


@dataclass(frozen=True, slots=True)
class DeepMatrix:
    """Depth-``depth`` factorization of a ``shape[0] x shape[1]`` matrix with the given hidden ``widths``."""

    depth: int
    shape: tuple[int, int]
    widths: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        require(isinstance(self.depth, (int, np.integer)) and self.depth >= 1,
                f"depth must be an integer >= 1, got {self.depth!r}")
        d, dp = self.shape
        require(d >= 1 and dp >= 1, f"shape must be positive, got {self.shape!r}")
        widths = self.widths
        if widths is None:
            widths = (min(d, dp),) * (self.depth - 1)
        widths = tuple(int(w) for w in widths)
        require(len(widths) == self.depth - 1,
                f"depth {self.depth} needs {self.depth - 1} hidden widths, got {len(widths)}: {widths!r}")
        require(all(w >= 1 for w in widths), f"hidden widths must be >= 1, got {widths!r}")
        object.__setattr__(self, "depth", int(self.depth))
        object.__setattr__(self, "shape", (int(d), int(dp)))
        object.__setattr__(self, "widths", widths)

    @property
    def dims(self) -> tuple[int, ...]:
        """``(d_0, d_1, ..., d_L)`` with ``d_0 = d'`` and ``d_L = d``."""
        return (self.shape[1],) + self.widths + (self.shape[0],)

    @property
    def layer_shapes(self) -> list[tuple[int, int]]:
        dims = self.dims
        return [(dims[j + 1], dims[j]) for j in range(self.depth)]

    @property
    def full_width(self) -> bool:
        """Whether every hidden width is at least ``min(d, d')`` (no rank constraint)."""
        return all(w >= min(self.shape) for w in self.widths)

    def check(self, factors) -> list[np.ndarray]:
        """Validate a factor list (first layer first) and return it as float64 arrays."""
        require(len(factors) == self.depth, f"expected {self.depth} factors, got {len(factors)}")
        out = []
        for j, (W, shp) in enumerate(zip(factors, self.layer_shapes), start=1):
            W = np.asarray(W, dtype=float)
            require(W.shape == shp, f"factor W_{j} must have shape {shp}, got {W.shape}")
            require(bool(np.all(np.isfinite(W))), f"factor W_{j} has non-finite entries")
            out.append(W)
        return out


def product(factors) -> np.ndarray:
    """End-to-end matrix ``W_L ... W_1`` (factors first layer first; works on batches ``(..., a, b)``)."""
    return reduce(lambda acc, W: W @ acc, factors[1:], factors[0])


def factor_grads(factors, G: np.ndarray) -> list[np.ndarray]:
    """``d phi / d W_j`` for every layer, given ``G = grad l(W_{L:1})``."""
    L = len(factors)
    prefix = [None] * (L + 1)  # prefix[j] = W_j ... W_1 (prefix[0] = identity)
    suffix = [None] * (L + 1)  # suffix[j] = W_L ... W_{j+1} (suffix[L] = identity)
    for j in range(1, L + 1):
        prefix[j] = factors[0] if j == 1 else factors[j - 1] @ prefix[j - 1]
    for j in range(L - 1, -1, -1):
        suffix[j] = factors[L - 1] if j == L - 1 else suffix[j + 1] @ factors[j]
    grads = []
    for j in range(1, L + 1):
        left = G if j == L else np.swapaxes(suffix[j], -1, -2) @ G
        grads.append(left if j == 1 else left @ np.swapaxes(prefix[j - 1], -1, -2))
    return grads


def det_sign_of_product(factors, *, rel_floor: float = 64 * np.finfo(float).eps) -> int | None:
    """Sign of ``det(W_L ... W_1)`` computed as the product of the factors' dets (square factors only).

    Returns ``None`` when any factor's det is not resolvable in float64: ``|det W_j|`` below
    ``rel_floor * ||W_j||_F^n`` (its sign is then rounding noise), or when the factors are not square.
    """
    sign = 1
    for W in factors:
        if W.shape[-1] != W.shape[-2]:
            return None
        dt = float(np.linalg.det(W))
        n = W.shape[-1]
        if not np.isfinite(dt) or abs(dt) <= rel_floor * float(np.linalg.norm(W)) ** n:
            return None
        sign *= 1 if dt > 0 else -1
    return sign


def balancedness(factors) -> float:
    """``max_j ||W_{j+1}^T W_{j+1} - W_j W_j^T||_F`` (0 for exactly balanced factors; 0 for depth 1)."""
    worst = 0.0
    for Wj, Wn in zip(factors[:-1], factors[1:]):
        worst = max(worst, float(np.linalg.norm(Wn.T @ Wn - Wj @ Wj.T)))
    return worst


@dataclass(frozen=True, slots=True)
class CP:
    """CP factorization of an order-``len(dims)`` tensor with ``rank`` components."""

    dims: tuple[int, ...]
    rank: int

    def __post_init__(self) -> None:
        dims = tuple(int(d) for d in self.dims)
        require(len(dims) >= 2 and all(d >= 1 for d in dims), f"dims must be >= 1 with order >= 2, got {self.dims!r}")
        require(isinstance(self.rank, (int, np.integer)) and self.rank >= 1,
                f"rank (number of components) must be >= 1, got {self.rank!r}")
        object.__setattr__(self, "dims", dims)
        object.__setattr__(self, "rank", int(self.rank))

    @property
    def order(self) -> int:
        return len(self.dims)

    def check(self, factors) -> list[np.ndarray]:
        require(len(factors) == self.order, f"expected {self.order} factor matrices, got {len(factors)}")
        out = []
        for n, (U, d) in enumerate(zip(factors, self.dims), start=1):
            U = np.asarray(U, dtype=float)
            require(U.shape == (d, self.rank), f"factor U_{n} must have shape {(d, self.rank)}, got {U.shape}")
            require(bool(np.all(np.isfinite(U))), f"factor U_{n} has non-finite entries")
            out.append(U)
        return out


def _letters(n: int) -> str:
    return string.ascii_lowercase[:n]


def cp_tensor(factors) -> np.ndarray:
    """``sum_r w_r^1 (x) ... (x) w_r^N`` from factor matrices ``U_n`` (``d_n x R``; leading batch dims allowed)."""
    idx = _letters(len(factors))
    return np.einsum(",".join(f"...{c}z" for c in idx) + "->..." + idx, *factors, optimize=True)


def cp_factor_grads(factors, G: np.ndarray) -> list[np.ndarray]:
    """``d phi / d U_n`` for each mode, given ``G = grad l(T)`` (same shape as the tensor)."""
    N = len(factors)
    idx = _letters(N)
    grads = []
    for n in range(N):
        others = [f"...{idx[k]}z" for k in range(N) if k != n]
        spec = "..." + idx + "," + ",".join(others) + f"->...{idx[n]}z"
        grads.append(np.einsum(spec, G, *[factors[k] for k in range(N) if k != n], optimize=True))
    return grads


def component_norms(factors) -> np.ndarray:
    """``||W_r|| = prod_n ||w_r^n||`` for each component r."""
    return np.prod(np.stack([np.linalg.norm(U, axis=-2) for U in factors]), axis=0)
