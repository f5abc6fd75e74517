"""Initializations. Every one is reproducible from a seed and can also be given explicitly.

- :func:`balanced`: exactly balanced factors from a sampled end-to-end matrix ``A`` (the procedure of Arora,
  Cohen, Golowich & Hu 2019): ``A = U S V^T``, ``W_1 = S^{1/L} V^T``, ``W_j = S^{1/L}`` (1 < j < L),
  ``W_L = U S^{1/L}``, zero-padded to the layer shapes. ``A`` has i.i.d. ``N(0, scale^2)`` entries; for square
  ``A`` the det sign is chosen by negating the first row of ``A`` (which preserves the Gaussian law).
- :func:`identity`: ``W_j = scale^{1/L} I`` (zero-padded), so the end-to-end matrix is ``scale * I``. Balanced.
- :func:`gaussian`: each layer i.i.d. ``N(0, std^2)`` (unbalanced); the det sign is chosen by negating the first
  row of ``W_L``.
- :func:`cp_gaussian`: CP factor entries i.i.d. ``N(0, std^2)``.
- :func:`cp_balanced`: every component balanced (``||w_r^n||`` equal across n), component norm
  ``scale * c_r`` with ``c_r`` drawn from ``U[0.5, 1]``, directions uniform on spheres.
- :func:`from_json`: factors from a JSON file ``{"factors": [W_1, ..., W_L]}`` (first layer first).

:func:`by_name` is the one dispatch from a name (``balanced``, ``identity``, ``gaussian`` or a ``.json`` path) to
these, for either model kind.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import InvalidInput, require
from .factorizations import CP, DeepMatrix, balancedness

DET_CHOICES = ("positive", "negative", "any")


@dataclass(frozen=True, eq=False)
class Init:
    """Initial factors (first layer first, or CP factor matrices) and how they were made."""

    factors: tuple[np.ndarray, ...]
    kind: str
    params: dict = field(default_factory=dict)

    def describe(self) -> dict:
        return {"kind": self.kind, "params": dict(self.params)}


def _check_scale(name: str, value: float) -> float:
    v = float(value)
    if not math.isfinite(v) or v <= 0:
        raise InvalidInput(f"{name} must be a positive finite number, got {value!r}")
    return v


def _check_det(det: str) -> str:
    require(det in DET_CHOICES, f"det must be one of {DET_CHOICES}, got {det!r}")
    return det


def _fix_det(M: np.ndarray, det: str) -> np.ndarray:
    """Negate the first row of square ``M`` when its det sign differs from the requested one."""
    if det == "any" or M.shape[0] != M.shape[1]:
        return M
    want = 1.0 if det == "positive" else -1.0
    if np.sign(np.linalg.det(M)) != want:
        M = M.copy()
        M[0] = -M[0]
    return M


def _pad(M: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    out = np.zeros(shape)
    out[: M.shape[0], : M.shape[1]] = M
    return out


def balanced_from_product(model: DeepMatrix, A: np.ndarray) -> list[np.ndarray]:
    """Exactly balanced factors whose product is ``A`` (ACGH19 procedure, zero-padded)."""
    A = np.asarray(A, dtype=float)
    require(A.shape == model.shape, f"end-to-end matrix must have shape {model.shape}, got {A.shape}")
    require(model.full_width, f"balanced init needs hidden widths >= {min(model.shape)}, got {model.widths}")
    L = model.depth
    if L == 1:
        return [A.copy()]
    U, s, Vt = np.linalg.svd(A, full_matrices=False)
    root = np.diag(s ** (1.0 / L))
    shapes = model.layer_shapes
    factors = [_pad(root @ Vt, shapes[0])]
    factors += [_pad(root, shapes[j]) for j in range(1, L - 1)]
    factors.append(_pad(U @ root, shapes[-1]))
    return factors


def balanced(model: DeepMatrix, scale: float, seed: int = 0, det: str = "positive") -> Init:
    """Balanced init from a Gaussian end-to-end matrix with entry std ``scale`` and the chosen det sign."""
    scale, det = _check_scale("scale", scale), _check_det(det)
    rng = np.random.default_rng(seed)
    A = _fix_det(scale * rng.standard_normal(model.shape), det)
    return Init(tuple(balanced_from_product(model, A)), "balanced", {"scale": scale, "seed": int(seed), "det": det})


def identity(model: DeepMatrix, scale: float) -> Init:
    """``W_j = scale^{1/L} I`` (zero-padded): end-to-end ``scale * I``."""
    scale = _check_scale("scale", scale)
    root = scale ** (1.0 / model.depth)
    factors = tuple(_pad(root * np.eye(min(shp)), shp) for shp in model.layer_shapes)
    return Init(factors, "identity", {"scale": scale})


def gaussian(model: DeepMatrix, std: float, seed: int = 0, det: str = "any") -> Init:
    """Per-layer i.i.d. Gaussian init with standard deviation ``std`` (unbalanced)."""
    std, det = _check_scale("std", std), _check_det(det)
    rng = np.random.default_rng(seed)
    factors = [std * rng.standard_normal(shp) for shp in model.layer_shapes]
    if det != "any" and model.shape[0] == model.shape[1] and all(a == b for a, b in model.layer_shapes):
        sign = np.prod([np.sign(np.linalg.det(W)) for W in factors])
        if sign != (1.0 if det == "positive" else -1.0):
            factors[-1] = factors[-1].copy()
            factors[-1][0] = -factors[-1][0]
    return Init(tuple(factors), "gaussian", {"scale": std, "seed": int(seed), "det": det})


def cp_gaussian(model: CP, std: float, seed: int = 0) -> Init:
    """CP factor entries i.i.d. ``N(0, std^2)``."""
    std = _check_scale("std", std)
    rng = np.random.default_rng(seed)
    return Init(tuple(std * rng.standard_normal((d, model.rank)) for d in model.dims), "cp_gaussian",
                {"scale": std, "seed": int(seed)})


def cp_balanced(model: CP, scale: float, seed: int = 0) -> Init:
    """Balanced CP init: component r has norm ``scale * c_r`` (``c_r ~ U[0.5, 1]``), equal vector norms."""
    scale = _check_scale("scale", scale)
    rng = np.random.default_rng(seed)
    norms = scale * rng.uniform(0.5, 1.0, size=model.rank)
    per_vector = norms ** (1.0 / model.order)
    factors = []
    for d in model.dims:
        U = rng.standard_normal((d, model.rank))
        U /= np.linalg.norm(U, axis=0)
        factors.append(U * per_vector)
    return Init(tuple(factors), "cp_balanced", {"scale": scale, "seed": int(seed)})


def explicit(model, factors, kind: str = "explicit", params: dict | None = None) -> Init:
    """An init from given factors (validated against ``model``)."""
    return Init(tuple(model.check(list(factors))), kind, dict(params or {}))


def from_json(model, path: str | Path) -> Init:
    """Factors from a JSON file: ``{"factors": [W_1, ..., W_L]}`` (first layer first) or a bare list."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise InvalidInput(f"init file {str(path)!r} does not exist") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise InvalidInput(f"init file {str(path)!r} is not readable JSON: {exc}") from None
    factors = data.get("factors") if isinstance(data, dict) else data
    require(isinstance(factors, list) and len(factors) > 0,
            f"init file {str(path)!r} must hold a list 'factors' of matrices, first layer first")
    try:
        arrays = [np.asarray(W, dtype=float) for W in factors]
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"init file {str(path)!r}: factors are not numeric matrices ({exc})") from None
    return explicit(model, arrays, "file", {"path": str(path)})


def is_balanced(factors, rtol: float = 1e-10) -> bool:
    """Whether ``W_{j+1}^T W_{j+1} = W_j W_j^T`` for all j, to ``rtol`` relative to ``max ||W_j||^2``."""
    scale = max(float(np.linalg.norm(W)) ** 2 for W in factors)
    return balancedness(list(factors)) <= rtol * max(scale, np.finfo(float).tiny)


#: the init names :func:`by_name` knows, per model kind (besides a ``.json`` path)
NAMES = {"deep": ("balanced", "identity", "gaussian"), "cp": ("balanced", "gaussian")}


def by_name(model, kind: str, scale: float | None = None, *, seed: int = 0, det: str | None = None) -> Init:
    """The init called ``kind`` for ``model``: for a deep factorization :func:`balanced`, :func:`identity` or
    :func:`gaussian`; for CP :func:`cp_balanced` or :func:`cp_gaussian`; a path ending in ``.json``:
    :func:`from_json` (then ``scale`` and ``det`` must be None). ``det`` (deep only; None: the function's
    default) is the det sign asked for; :func:`identity`'s det is positive, so it takes None, "positive" or
    "any". Raises :class:`~models.errors.InvalidInput` for an unknown name."""
    require(isinstance(kind, str), f"an init name must be a string, got {kind!r}")
    if kind.endswith(".json"):
        require(scale is None and det is None, f"init {kind} gives the factors: it takes no scale or det")
        return from_json(model, kind)
    if isinstance(model, CP):
        require(kind in NAMES["cp"], f"unknown init {kind!r} for a CP model; choose one of {', '.join(NAMES['cp'])} "
                                     f"or a .json file")
        require(det is None, "a CP init has no det sign")
        return (cp_balanced if kind == "balanced" else cp_gaussian)(model, scale, seed=seed)
    require(kind in NAMES["deep"], f"unknown init kind {kind!r}; choose one of {', '.join(NAMES['deep'])} or a "
                                   f".json file")
    if kind == "identity":
        require(det in (None, "positive", "any"), f"det {det!r} does not apply to the identity init (its det is > 0)")
        return identity(model, scale)
    fn = balanced if kind == "balanced" else gaussian
    return fn(model, scale, seed=seed) if det is None else fn(model, scale, seed=seed, det=det)
