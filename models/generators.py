"""Built-in, seeded problem generators, and the registry that names them.

Every generator is a pure function of its parameters (and ``seed``): the same call gives the same problem.

- :func:`models.problems.rc20`: the 2x2 problem ``[[*, z], [z', eps]]`` of Razin & Cohen 2020 with the unobserved
  entry at any of the four positions (re-exported here under the name ``rc20``).
- :func:`rc20_larger`: the ``d x d'`` family of the RC20 code generator (catalog RC20-Ext-Larger): target ``T``
  with ``T[0,1] = T[1,0] = 1``, ``T[i,i] = 1`` for ``2 <= i < min(d, d')`` (0-based), zeros elsewhere; every
  entry except ``(0, 0)`` observed.
- :func:`random_completion` / :func:`random_sensing`: the generator of Arora, Cohen, Hu & Luo 2019 (their code's
  ``gen_gt.py`` / ``gen_obs.py``, generalized to ``d x d'``): ``W* = U V^T / sqrt(r)`` with ``U, V`` standard
  Gaussian, rescaled to Frobenius norm ``sqrt(d d')`` (root-mean-square entry 1; ``n`` for ``n x n`` as in their
  code); completion observes ``m`` entries drawn uniformly without replacement, sensing draws ``m`` measurement
  matrices with i.i.d. ``N(0, 1/(d d'))`` entries (``N(0, 1/n^2)`` for ``n x n``) and ``y_i = <A_i, W*>``.
- :func:`models.problems.random_tensor_completion`: a random CP-rank-``r`` tensor and ``m`` uniformly drawn
  observed entries (re-exported as ``random_tensor``).

:data:`GENERATORS` maps the names accepted by ``verify simulate --problem NAME[:key=value,...]`` to these
functions; :func:`generate` builds a problem from a name and string parameters (the command-line form).
"""

from __future__ import annotations

import inspect

import numpy as np

from .errors import InvalidInput, require
from .problems import MatrixProblem, TensorProblem, completion, random_tensor_completion, rc20, sensing


def _low_rank_target(shape, rank: int, rng: np.random.Generator) -> np.ndarray:
    d, dp = shape
    U = rng.standard_normal((d, rank))
    V = rng.standard_normal((dp, rank))
    W = U @ V.T / np.sqrt(rank)
    return W * (np.sqrt(d * dp) / np.linalg.norm(W))


def _check_shape(shape) -> tuple[int, int]:
    require(len(shape) == 2, f"shape must have two entries d x d', got {shape!r}")
    d, dp = (int(s) for s in shape)
    require(d >= 1 and dp >= 1, f"shape must be positive, got {shape!r}")
    return d, dp


def rc20_larger(shape=(5, 5), *, reduction: str = "half_sum") -> MatrixProblem:
    """The RC20 ``d x d'`` completion family (catalog RC20-Ext-Larger); ``(2, 2)`` is ``[[*, 1], [1, 0]]``."""
    d, dp = _check_shape(shape)
    require(d >= 2 and dp >= 2, f"rc20_larger needs d, d' >= 2, got {shape!r}")
    T = np.zeros((d, dp))
    T[0, 1] = T[1, 0] = 1.0
    for i in range(2, min(d, dp)):
        T[i, i] = 1.0
    observed = [(i, j) for i in range(d) for j in range(dp) if (i, j) != (0, 0)]
    return completion((d, dp), observed, [T[i, j] for i, j in observed], reduction=reduction, name="rc20_larger",
                      params={"shape": [d, dp]})


def random_completion(shape=(10, 10), rank: int = 1, m: int | None = None, *, seed: int = 0,
                      reduction: str = "half_sum") -> tuple[MatrixProblem, np.ndarray]:
    """ACHL19 random low-rank completion: ``(problem, W*)``; ``m`` defaults to half the entries."""
    d, dp = _check_shape(shape)
    require(1 <= int(rank) <= min(d, dp), f"rank must be in [1, {min(d, dp)}], got {rank!r}")
    m = (d * dp) // 2 if m is None else int(m)
    require(1 <= m <= d * dp, f"m (observed entries) must be in [1, {d * dp}], got {m!r}")
    rng = np.random.default_rng(seed)
    W = _low_rank_target((d, dp), int(rank), rng)
    flat = np.sort(rng.choice(d * dp, size=m, replace=False))
    observed = [(int(k) // dp, int(k) % dp) for k in flat]
    prob = completion((d, dp), observed, W.reshape(-1)[flat], reduction=reduction, name="random_completion",
                      params={"shape": [d, dp], "rank": int(rank), "m": m, "seed": int(seed)})
    return prob, W


def random_sensing(shape=(10, 10), rank: int = 1, m: int | None = None, *, seed: int = 0,
                   reduction: str = "half_sum") -> tuple[MatrixProblem, np.ndarray]:
    """ACHL19 random low-rank sensing with Gaussian measurements: ``(problem, W*)``; ``m`` defaults to ``d d' / 2``."""
    d, dp = _check_shape(shape)
    require(1 <= int(rank) <= min(d, dp), f"rank must be in [1, {min(d, dp)}], got {rank!r}")
    m = (d * dp) // 2 if m is None else int(m)
    require(m >= 1, f"m (measurements) must be >= 1, got {m!r}")
    rng = np.random.default_rng(seed)
    W = _low_rank_target((d, dp), int(rank), rng)
    A = rng.standard_normal((m, d, dp)) / np.sqrt(d * dp)
    y = np.einsum("kij,ij->k", A, W)
    prob = sensing(A, y, reduction=reduction, name="random_sensing",
                   params={"shape": [d, dp], "rank": int(rank), "m": m, "seed": int(seed)})
    return prob, W


def random_tensor(dims=(3, 3, 3), rank: int = 1, m: int | None = None, *, seed: int = 0, norm: float = 1.0,
                  reduction: str = "half_sum") -> tuple[TensorProblem, np.ndarray]:
    """Random CP-rank-``rank`` tensor completion (see :func:`models.problems.random_tensor_completion`)."""
    dims = tuple(int(d) for d in dims)
    total = int(np.prod(dims))
    m = total // 2 if m is None else int(m)
    return random_tensor_completion(dims, m, rank=int(rank), norm=float(norm), seed=int(seed), reduction=reduction)


def _first(out):
    return out[0] if isinstance(out, tuple) else out


# name -> (function, {parameter: parser}); every generator also takes ``reduction``.
def _tuple_of_ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in text.lower().split("x"))
    except ValueError:
        raise InvalidInput(f"expected integers separated by 'x' (like 5x10), got {text!r}") from None


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise InvalidInput(f"expected a number, got {text!r}") from None


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise InvalidInput(f"expected an integer, got {text!r}") from None


GENERATORS: dict[str, tuple] = {
    "rc20": (rc20, {"z": _float, "z_prime": _float, "eps": _float, "unobserved": _tuple_of_ints}),
    "rc20_larger": (rc20_larger, {"shape": _tuple_of_ints}),
    "random_completion": (random_completion, {"shape": _tuple_of_ints, "rank": _int, "m": _int, "seed": _int}),
    "random_sensing": (random_sensing, {"shape": _tuple_of_ints, "rank": _int, "m": _int, "seed": _int}),
    "random_tensor": (random_tensor, {"dims": _tuple_of_ints, "rank": _int, "m": _int, "seed": _int,
                                      "norm": _float}),
}


def generator_help() -> str:
    """One line per generator: its name and parameters with defaults (for ``--help``)."""
    lines = []
    for name, (fn, parsers) in GENERATORS.items():
        sig = inspect.signature(fn)
        parts = []
        for key in list(parsers) + ["reduction"]:
            default = sig.parameters[key].default
            if isinstance(default, tuple):
                default = "x".join(str(v) for v in default)
            parts.append(f"{key}={default}")
        lines.append(f"{name}:{','.join(parts)}")
    return "\n".join(lines)


def generate(name: str, **params) -> MatrixProblem | TensorProblem:
    """The problem of generator ``name`` with ``params`` (values may be strings in the command-line form)."""
    require(name in GENERATORS, f"unknown problem {name!r}; built-in problems: {', '.join(GENERATORS)} "
                                "(or a .json / .npz problem file)")
    fn, parsers = GENERATORS[name]
    kwargs = {}
    for key, value in params.items():
        if key == "reduction":
            kwargs[key] = str(value)
            continue
        require(key in parsers, f"problem {name} has no parameter {key!r}; it takes {', '.join(parsers)}, reduction")
        kwargs[key] = parsers[key](value) if isinstance(value, str) else value
    return _first(fn(**kwargs))


def parse_problem_spec(spec: str) -> tuple[str, dict[str, str]]:
    """``"NAME:key=value,key=value"`` -> ``(NAME, {key: value})``."""
    name, _, rest = spec.partition(":")
    params: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = item.partition("=")
        require(bool(eq) and key.strip() and value.strip(),
                f"problem parameters must be key=value separated by commas, got {item!r} in {spec!r}")
        require(key.strip() not in params, f"problem parameter {key.strip()!r} is given twice in {spec!r}")
        params[key.strip()] = value.strip()
    return name.strip(), params


__all__ = ["GENERATORS", "generate", "generator_help", "parse_problem_spec", "random_completion", "random_sensing",
           "random_tensor", "rc20", "rc20_larger"]
