"""Problems: the loss on the end-to-end matrix or tensor.

Every matrix problem here is *linear least squares in the end-to-end matrix* ``W`` (``d x d'``):

    residuals  r_i(W) = <A_i, W> - y_i,          i = 1..m
    loss       l(W)   = 1/2 * sum_i r_i(W)^2      (reduction "half_sum", the default: RC20's normalization)
               l(W)   = 1/m * sum_i r_i(W)^2      (reduction "mean": the mean squared error of the ACHL19 code)
    gradient   grad l(W) = c * sum_i r_i(W) A_i   with c = 1 ("half_sum") or 2/m ("mean")

Matrix completion is the case where each ``A_i`` is a matrix unit ``E_{jk}`` (``<A_i, W> = W_jk``); matrix
sensing allows any measurement matrices. One class, :class:`MatrixProblem`, serves both; build it with
:func:`completion`, :func:`sensing` or :func:`rc20`.

Tensor completion (:class:`TensorProblem`) observes entries of an order-N tensor with the same two reductions.

The residuals are formed entry by entry from ``W`` (never as ``l0 - integral``), and they accept any scalar type
that supports ``+`` and ``*`` (floats, Python complex for complex-step Jacobians, mpmath numbers), through
:meth:`MatrixProblem.residuals_flat` and :meth:`MatrixProblem.grad_flat`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .errors import InvalidInput, require

REDUCTIONS = ("half_sum", "mean")


def _finite(name: str, values) -> None:
    arr = np.asarray(values, dtype=float)
    if not np.all(np.isfinite(arr)):
        raise InvalidInput(f"{name} must be finite, got {values!r}")


@dataclass(frozen=True, eq=False)
class MatrixProblem:
    """Linear least squares on a ``d x d'`` end-to-end matrix (see the module docstring for the loss).

    ``operator`` is the ``m x (d*d')`` matrix whose row i is ``vec(A_i)`` (row-major), ``targets`` the ``y_i``.
    ``observed`` lists the observed entries when the problem is a completion problem (else ``None``).

    Completion problems (built by :func:`completion`) store no dense operator: ``operator=None`` is passed and
    every computation here and in the engines uses the observed indices (``obs_flat``: gather and scatter). The
    dense ``operator`` attribute is still there for code that asks for it (built on first access and kept; 400 MB
    for a 100x100 problem with 5,000 entries, so engines never ask). ``sparse_rows``: per measurement, the
    flat indices and weights of its nonzeros (what scalar code, e.g. high-precision engines, iterates over).
    """

    shape: tuple[int, int]
    operator: np.ndarray | None
    targets: np.ndarray
    reduction: str = "half_sum"
    name: str = "matrix"
    observed: tuple[tuple[int, int], ...] | None = None
    params: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        d, dp = self.shape
        require(d >= 1 and dp >= 1, f"shape must be positive, got {self.shape!r}")
        y = np.asarray(self.targets, dtype=float).reshape(-1)
        if self.operator is None:
            require(self.observed is not None, "a problem without an operator must list its observed entries")
            flat = np.array([i * dp + j for i, j in self.observed], dtype=np.int64).reshape(-1)
            require(flat.shape[0] == y.shape[0], f"{flat.shape[0]} observed entries but {y.shape[0]} targets")
            require(flat.shape[0] >= 1, "a problem needs at least one measurement")
            _finite("targets", y)
            require(self.reduction in REDUCTIONS, f"reduction must be one of {REDUCTIONS}, got {self.reduction!r}")
            object.__setattr__(self, "targets", y)
            object.__setattr__(self, "obs_flat", flat)
            object.__setattr__(self, "sparse_rows", tuple(((int(k),), (1.0,)) for k in flat))
            object.__delattr__(self, "operator")     # built on demand by __getattr__
            return
        object.__setattr__(self, "obs_flat", None)
        op = np.asarray(self.operator, dtype=float)
        require(op.ndim == 2 and op.shape[1] == d * dp, f"operator must be m x {d * dp}, got shape {op.shape}")
        require(op.shape[0] == y.shape[0], f"{op.shape[0]} measurements but {y.shape[0]} targets")
        require(op.shape[0] >= 1, "a problem needs at least one measurement")
        _finite("operator", op)
        _finite("targets", y)
        require(self.reduction in REDUCTIONS, f"reduction must be one of {REDUCTIONS}, got {self.reduction!r}")
        object.__setattr__(self, "operator", op)
        object.__setattr__(self, "targets", y)
        # Sparse rows: (indices, weights) per measurement, so scalar code touches only the nonzeros.
        rows = tuple(
            (tuple(int(k) for k in np.flatnonzero(row)), tuple(float(row[k]) for k in np.flatnonzero(row)))
            for row in op
        )
        object.__setattr__(self, "sparse_rows", rows)

    def __getattr__(self, name):
        # only reached for a missing attribute: the dense operator of a completion problem, built on first use
        if name == "operator" and self.__dict__.get("obs_flat") is not None:
            d, dp = self.shape
            op = np.zeros((self.obs_flat.shape[0], d * dp))
            op[np.arange(self.obs_flat.shape[0]), self.obs_flat] = 1.0
            object.__setattr__(self, "operator", op)
            return op
        raise AttributeError(name)

    def measurement_norms(self) -> np.ndarray:
        """The l1 norm of each measurement matrix ``A_i`` (1 for completion)."""
        if self.obs_flat is not None:
            return np.ones(self.m)
        return np.abs(self.operator).sum(axis=1)

    # ----- scale factors -------------------------------------------------------------------------------------
    @property
    def m(self) -> int:
        return int(self.targets.shape[0])

    @property
    def loss_scale(self) -> float:
        """``l = loss_scale * sum r_i^2``."""
        return 0.5 if self.reduction == "half_sum" else 1.0 / self.m

    @property
    def grad_scale(self) -> float:
        """``grad l = grad_scale * sum r_i A_i``."""
        return 1.0 if self.reduction == "half_sum" else 2.0 / self.m

    # ----- numpy float64 -------------------------------------------------------------------------------------
    def residuals(self, W: np.ndarray) -> np.ndarray:
        """``r_i = <A_i, W> - y_i`` for a ``d x d'`` matrix or a batch ``(..., d, d')``."""
        W = np.asarray(W)
        flat = W.reshape(W.shape[:-2] + (-1,))
        if self.obs_flat is not None:
            return flat[..., self.obs_flat] - self.targets
        return flat @ self.operator.T - self.targets

    def loss(self, W: np.ndarray) -> np.ndarray | float:
        r = self.residuals(W)
        out = self.loss_scale * np.sum(r * r, axis=-1)
        return float(out) if np.ndim(out) == 0 else out

    def grad(self, W: np.ndarray) -> np.ndarray:
        """Gradient of the loss with respect to the end-to-end matrix (same shape as ``W``)."""
        W = np.asarray(W)
        r = self.residuals(W)
        if self.obs_flat is not None:
            g = np.zeros(W.shape[:-2] + (self.shape[0] * self.shape[1],), dtype=np.result_type(W, float))
            g[..., self.obs_flat] = self.grad_scale * r
            return g.reshape(W.shape)
        g = self.grad_scale * (r @ self.operator)
        return g.reshape(W.shape)

    # ----- any scalar type (flat row-major lists) ------------------------------------------------------------
    def residuals_flat(self, w: Sequence) -> list:
        """Residuals from a flat row-major list of entries of any numeric type."""
        out = []
        for (idx, wts), y in zip(self.sparse_rows, self.targets):
            acc = -float(y)
            for k, a in zip(idx, wts):
                acc = acc + (w[k] if a == 1.0 else a * w[k])
            out.append(acc)
        return out

    def grad_flat(self, w: Sequence) -> list:
        """Flat row-major gradient from flat entries, any numeric type; returns ``(grad, residuals)``."""
        r = self.residuals_flat(w)
        g = [0.0] * (self.shape[0] * self.shape[1])
        c = self.grad_scale
        for (idx, wts), ri in zip(self.sparse_rows, r):
            for k, a in zip(idx, wts):
                g[k] = g[k] + (c * a) * ri
        return g, r

    def loss_flat(self, w: Sequence):
        r = self.residuals_flat(w)
        acc = 0
        for ri in r:
            acc = acc + ri * ri
        return self.loss_scale * acc

    def describe(self) -> dict:
        """A JSON-ready description (enough to rebuild the problem with :func:`problem_from_dict`)."""
        out = {"name": self.name, "shape": list(self.shape), "reduction": self.reduction, "params": dict(self.params)}
        if self.observed is not None:
            out["observed"] = [list(ij) for ij in self.observed]
            out["values"] = [float(v) for v in self.targets]
        else:
            out["operator"] = self.operator.tolist()
            out["targets"] = self.targets.tolist()
        return out


def completion(shape, observed, values, *, reduction: str = "half_sum", name: str = "completion",
               params: dict | None = None) -> MatrixProblem:
    """Matrix completion: observe ``W[i, j] = values[k]`` for the k-th index pair in ``observed``."""
    d, dp = (int(s) for s in shape)
    observed = tuple((int(i), int(j)) for i, j in observed)
    require(len(observed) == len(values), f"{len(observed)} observed entries but {len(values)} values")
    require(len(set(observed)) == len(observed), f"observed entries repeat: {observed!r}")
    for i, j in observed:
        require(0 <= i < d and 0 <= j < dp, f"observed entry {(i, j)} is outside a {d}x{dp} matrix")
    # no dense operator (m x d d'): the problem works on the observed indices
    return MatrixProblem((d, dp), None, np.asarray(values, dtype=float), reduction, name, observed,
                         dict(params or {}))


def sensing(measurements, targets, *, reduction: str = "half_sum", name: str = "sensing",
            params: dict | None = None) -> MatrixProblem:
    """Matrix sensing with measurement matrices ``A_i`` (array ``m x d x d'``) and targets ``y_i``."""
    A = np.asarray(measurements, dtype=float)
    require(A.ndim == 3, f"measurements must be an m x d x d' array, got shape {A.shape}")
    return MatrixProblem((A.shape[1], A.shape[2]), A.reshape(A.shape[0], -1), np.asarray(targets, dtype=float),
                         reduction, name, None, dict(params or {}))


def rc20(z: float = 1.0, z_prime: float = 1.0, eps: float = 0.0, *, unobserved=(0, 0),
         reduction: str = "half_sum") -> MatrixProblem:
    """The 2x2 completion problem of Razin & Cohen 2020, perturbed as in their Theorem 2.

    With the default unobserved entry (1,1) (index ``(0, 0)``) the observations are ``W12 = z``, ``W21 = z'``,
    ``W22 = eps``: ``[[*, z], [z', eps]]``; ``z = z' = 1, eps = 0`` is the original ``[[*, 1], [1, 0]]``. For
    another unobserved position the same pattern is moved by the row/column swap that carries (1,1) there, so
    ``eps`` always sits opposite the unobserved entry.
    """
    for name, v in (("z", z), ("z_prime", z_prime), ("eps", eps)):
        if not math.isfinite(float(v)):
            raise InvalidInput(f"{name} must be finite, got {v!r}")
    ui, uj = (int(unobserved[0]), int(unobserved[1]))
    require(ui in (0, 1) and uj in (0, 1), f"unobserved must be an index of a 2x2 matrix, got {unobserved!r}")
    base = {(0, 1): float(z), (1, 0): float(z_prime), (1, 1): float(eps)}
    moved = {((i + ui) % 2, (j + uj) % 2): v for (i, j), v in base.items()}
    observed = sorted(moved)
    return completion((2, 2), observed, [moved[ij] for ij in observed], reduction=reduction, name="rc20",
                      params={"z": float(z), "z_prime": float(z_prime), "eps": float(eps),
                              "unobserved": [ui, uj]})


@dataclass(frozen=True, eq=False)
class TensorProblem:
    """Tensor completion: observe entries ``W[idx_k] = values[k]`` of an order-N tensor of shape ``dims``
    (``obs_flat``: the observed entries' flat, row-major indices).

    Loss ``1/2 sum_k (W[idx_k] - y_k)^2`` ("half_sum") or ``1/m sum_k (...)^2`` ("mean", the RMC21 code's).
    """

    dims: tuple[int, ...]
    indices: np.ndarray
    targets: np.ndarray
    reduction: str = "half_sum"
    name: str = "tensor_completion"

    def __post_init__(self) -> None:
        dims = tuple(int(d) for d in self.dims)
        require(len(dims) >= 2 and all(d >= 1 for d in dims), f"dims must be >= 1 and order >= 2, got {self.dims!r}")
        idx = np.asarray(self.indices, dtype=np.int64)
        y = np.asarray(self.targets, dtype=float).reshape(-1)
        require(idx.ndim == 2 and idx.shape[1] == len(dims), f"indices must be m x {len(dims)}, got {idx.shape}")
        require(idx.shape[0] == y.shape[0] and y.shape[0] >= 1, "indices and targets must have the same length >= 1")
        require(bool(np.all((idx >= 0) & (idx < np.asarray(dims)))), "an observed index is outside the tensor")
        _finite("targets", y)
        require(self.reduction in REDUCTIONS, f"reduction must be one of {REDUCTIONS}, got {self.reduction!r}")
        object.__setattr__(self, "dims", dims)
        object.__setattr__(self, "indices", idx)
        object.__setattr__(self, "targets", y)
        object.__setattr__(self, "obs_flat", np.ravel_multi_index(tuple(idx.T), dims))

    @property
    def order(self) -> int:
        return len(self.dims)

    @property
    def m(self) -> int:
        return int(self.targets.shape[0])

    @property
    def loss_scale(self) -> float:
        return 0.5 if self.reduction == "half_sum" else 1.0 / self.m

    @property
    def grad_scale(self) -> float:
        return 1.0 if self.reduction == "half_sum" else 2.0 / self.m

    def residuals(self, T: np.ndarray) -> np.ndarray:
        T = np.asarray(T)
        flat = T.reshape(T.shape[: T.ndim - self.order] + (-1,))
        return flat[..., self.obs_flat] - self.targets

    def loss(self, T: np.ndarray):
        r = self.residuals(T)
        out = self.loss_scale * np.sum(r * r, axis=-1)
        return float(out) if np.ndim(out) == 0 else out

    def grad(self, T: np.ndarray) -> np.ndarray:
        T = np.asarray(T)
        r = self.residuals(T)
        # complex T (complex-step Jacobians) keeps a complex gradient
        g = np.zeros(T.shape[: T.ndim - self.order] + (int(np.prod(self.dims)),), dtype=np.result_type(T.dtype, float))
        g[..., self.obs_flat] = self.grad_scale * r
        return g.reshape(T.shape)

    def describe(self) -> dict:
        return {"name": self.name, "dims": list(self.dims), "reduction": self.reduction,
                "indices": self.indices.tolist(), "values": self.targets.tolist()}


def tensor_completion(dims, indices, values, *, reduction: str = "half_sum") -> TensorProblem:
    """Tensor completion of an order-``len(dims)`` tensor from the entries at ``indices``."""
    return TensorProblem(tuple(dims), np.asarray(indices), np.asarray(values, dtype=float), reduction)


def random_tensor_completion(dims, n_observed: int, *, rank: int = 1, norm: float = 1.0, seed: int = 0,
                             reduction: str = "half_sum") -> tuple[TensorProblem, np.ndarray]:
    """A random CP-rank-``rank`` target of Frobenius norm ``norm`` and ``n_observed`` distinct observed entries.

    Returns ``(problem, target_tensor)``. Reproducible from ``seed``.
    """
    dims = tuple(int(d) for d in dims)
    total = int(np.prod(dims))
    require(1 <= n_observed <= total, f"n_observed must be in [1, {total}], got {n_observed!r}")
    require(rank >= 1, f"rank must be >= 1, got {rank!r}")
    rng = np.random.default_rng(seed)
    T = np.zeros(dims)
    for _ in range(rank):
        comp = rng.standard_normal(dims[0])
        for d in dims[1:]:
            comp = np.multiply.outer(comp, rng.standard_normal(d))
        T = T + comp
    T *= norm / np.linalg.norm(T)
    flat = rng.choice(total, size=n_observed, replace=False)
    idx = np.stack(np.unravel_index(np.sort(flat), dims), axis=1)
    return tensor_completion(dims, idx, T.reshape(-1)[np.sort(flat)], reduction=reduction), T


def problem_from_dict(d: dict):
    """Rebuild a problem from :meth:`describe` output."""
    if "dims" in d:
        return tensor_completion(d["dims"], d["indices"], d["values"], reduction=d.get("reduction", "half_sum"))
    if d.get("name") == "rc20":
        p = d["params"]
        return rc20(p["z"], p["z_prime"], p["eps"], unobserved=tuple(p["unobserved"]),
                    reduction=d.get("reduction", "half_sum"))
    if "observed" in d:
        return completion(d["shape"], d["observed"], d["values"], reduction=d.get("reduction", "half_sum"),
                          name=d.get("name", "completion"))
    A = np.asarray(d["operator"], dtype=float).reshape(-1, *d["shape"])
    return sensing(A, d["targets"], reduction=d.get("reduction", "half_sum"), name=d.get("name", "sensing"))
