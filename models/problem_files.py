"""Problem files: a researcher's own problem as JSON (or NPZ for large ones), validated on load.

JSON forms (indices 0-based; ``"reduction"`` is optional, ``"half_sum"`` by default, or ``"mean"``; ``"name"``
(a string) and ``"params"`` (an object, provenance only) are optional too; any other key is an error)::

    {"kind": "completion", "shape": [d, dp], "observed": [[i, j], ...], "values": [...]}
    {"kind": "sensing", "measurements": [A_1, ...], "targets": [...]}        # each A_i a d x dp list of rows
    {"kind": "tensor_completion", "dims": [d_1, ...], "indices": [[i_1, ..., i_N], ...], "values": [...]}

NPZ (``numpy.savez``): the same keys as arrays (``kind``, ``reduction`` and ``name`` as 0-d string arrays;
``measurements`` an ``m x d x dp`` array); ``params`` is not stored. Pickled objects are refused.

Loading checks everything a run would otherwise trip over later: unknown keys or kind, missing keys, shapes that
do not fit (a ragged list, an index of the wrong length, values and indices of different lengths), non-numeric,
NaN or infinite numbers, an index out of range, an entry observed twice. Every failure raises
:class:`ProblemFileError` (an :class:`~models.errors.InvalidInput`, so a :class:`~models.errors.SuiteError`)
with one line naming the file and the fault; the command line prints it and exits 2.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from .errors import InvalidInput
from .problems import REDUCTIONS, MatrixProblem, TensorProblem, completion, sensing, tensor_completion

KINDS = {
    "completion": ("shape", "observed", "values"),
    "sensing": ("measurements", "targets"),
    "tensor_completion": ("dims", "indices", "values"),
}
OPTIONAL = ("reduction", "name", "params")


class ProblemFileError(InvalidInput):
    """A problem file (or problem data) that cannot be loaded; the message is one line."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


def _fail(source: str, message: str):
    raise ProblemFileError(f"{source}: {message}")


def _array(source: str, key: str, value, *, integer: bool, ndim: int) -> np.ndarray:
    """``value`` as an array of ``ndim`` dimensions of integers or finite floats, or a one-line error."""
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError):
        _fail(source, f"{key!r} is not a rectangular array (rows of different lengths?)")
    if arr.dtype == object:
        _fail(source, f"{key!r} is not a rectangular array of numbers (rows of different lengths?)")
    if arr.ndim != ndim:
        what = {1: "a list", 2: "a list of lists", 3: "a list of matrices"}[ndim]
        _fail(source, f"{key!r} must be {what} ({ndim}-dimensional), got {arr.ndim} dimension(s) with shape "
                      f"{list(arr.shape)}")
    if arr.size and arr.dtype.kind not in ("iu" if integer else "iuf"):
        want = "integers" if integer else "numbers"
        _fail(source, f"{key!r} must hold {want}, got {arr.dtype.name} entries")
    if not integer:
        arr = arr.astype(float)
        bad = ~np.isfinite(arr)
        if np.any(bad):
            where = [int(k) for k in np.argwhere(bad)[0]]
            _fail(source, f"{key!r} has a non-finite entry ({arr[tuple(where)]!r}) at index {where}")
    return arr.astype(np.int64) if integer else arr


def _positive_dims(source: str, key: str, value, count: int | None) -> tuple[int, ...]:
    dims = _array(source, key, value, integer=True, ndim=1)
    if count is not None and dims.shape[0] != count:
        _fail(source, f"{key!r} must have {count} entries, got {dims.shape[0]}")
    if count is None and dims.shape[0] < 2:
        _fail(source, f"{key!r} must have at least 2 entries (tensor order >= 2), got {dims.shape[0]}")
    if np.any(dims < 1):
        _fail(source, f"{key!r} entries must be >= 1, got {dims.tolist()}")
    return tuple(int(d) for d in dims)


def _entries(source: str, key: str, idx: np.ndarray, dims: tuple[int, ...], values: np.ndarray) -> None:
    """Index list ``idx`` (m x N): lengths match ``values``, in range, no repeats."""
    if idx.shape[0] == 0:
        _fail(source, f"{key!r} is empty: a problem needs at least one observation")
    if idx.shape[1] != len(dims):
        _fail(source, f"each entry of {key!r} must have {len(dims)} indices, got {idx.shape[1]}")
    if idx.shape[0] != values.shape[0]:
        _fail(source, f"{idx.shape[0]} entries in {key!r} but {values.shape[0]} values")
    out = np.any((idx < 0) | (idx >= np.asarray(dims)), axis=1)
    if np.any(out):
        k = int(np.flatnonzero(out)[0])
        _fail(source, f"{key!r} entry {k} = {idx[k].tolist()} is out of range for dims {list(dims)} "
                      "(indices are 0-based)")
    flat = np.ravel_multi_index(tuple(idx.T), dims)
    uniq, first, counts = np.unique(flat, return_index=True, return_counts=True)
    if np.any(counts > 1):
        k = int(first[np.flatnonzero(counts > 1)[0]])
        _fail(source, f"{key!r} entry {idx[k].tolist()} appears {int(counts[counts > 1][0])} times")


def problem_from_data(data, source: str = "problem") -> MatrixProblem | TensorProblem:
    """A problem from the JSON-form mapping ``data`` (see the module docstring); ``source`` names it in errors."""
    if not isinstance(data, dict):
        _fail(source, f"must be a JSON object with a 'kind', got {type(data).__name__}")
    kind = data.get("kind")
    if kind is None:
        _fail(source, f"missing 'kind' (one of {', '.join(KINDS)})")
    if not isinstance(kind, str) or kind not in KINDS:
        _fail(source, f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    required = KINDS[kind]
    unknown = sorted(set(data) - {"kind", *required, *OPTIONAL})
    if unknown:
        _fail(source, f"unknown key(s) {', '.join(map(repr, unknown))} for kind {kind!r}; allowed: "
                      f"{', '.join(('kind',) + required + OPTIONAL)}")
    missing = [k for k in required if k not in data]
    if missing:
        _fail(source, f"kind {kind!r} needs key(s) {', '.join(map(repr, missing))}")
    reduction = data.get("reduction", "half_sum")
    if reduction not in REDUCTIONS:
        _fail(source, f"'reduction' must be one of {', '.join(REDUCTIONS)}, got {reduction!r}")
    name = data.get("name", kind)
    if not isinstance(name, str):
        _fail(source, f"'name' must be a string, got {name!r}")
    params = data.get("params", {})
    if not isinstance(params, dict):
        _fail(source, f"'params' must be an object, got {params!r}")
    try:
        if kind == "completion":
            shape = _positive_dims(source, "shape", data["shape"], 2)
            values = _array(source, "values", data["values"], integer=False, ndim=1)
            idx = _array(source, "observed", data["observed"], integer=True, ndim=2) if len(data["observed"]) else \
                np.zeros((0, 2), dtype=np.int64)
            _entries(source, "observed", idx, shape, values)
            return completion(shape, [tuple(r) for r in idx.tolist()], values, reduction=reduction, name=name,
                              params=params)
        if kind == "sensing":
            A = _array(source, "measurements", data["measurements"], integer=False, ndim=3)
            y = _array(source, "targets", data["targets"], integer=False, ndim=1)
            if A.shape[0] == 0 or A.shape[1] == 0 or A.shape[2] == 0:
                _fail(source, f"'measurements' must be a non-empty list of non-empty matrices, got shape {list(A.shape)}")
            if A.shape[0] != y.shape[0]:
                _fail(source, f"{A.shape[0]} measurement matrices but {y.shape[0]} targets")
            return sensing(A, y, reduction=reduction, name=name, params=params)
        dims = _positive_dims(source, "dims", data["dims"], None)
        values = _array(source, "values", data["values"], integer=False, ndim=1)
        idx = _array(source, "indices", data["indices"], integer=True, ndim=2) if len(data["indices"]) else \
            np.zeros((0, len(dims)), dtype=np.int64)
        _entries(source, "indices", idx, dims, values)
        prob = tensor_completion(dims, idx, values, reduction=reduction)
        object.__setattr__(prob, "name", name)
        return prob
    except ProblemFileError:
        raise
    except InvalidInput as exc:  # a constructor's own check
        _fail(source, str(exc))
    except TypeError as exc:  # len() of a scalar and the like
        _fail(source, f"malformed {kind} data ({exc})")


def problem_to_data(problem: MatrixProblem | TensorProblem) -> dict:
    """The JSON form of ``problem`` (the inverse of :func:`problem_from_data`)."""
    if isinstance(problem, TensorProblem):
        return {"kind": "tensor_completion", "name": problem.name, "reduction": problem.reduction,
                "dims": list(problem.dims), "indices": problem.indices.tolist(), "values": problem.targets.tolist()}
    out = {"name": problem.name, "reduction": problem.reduction}
    params = _jsonable(problem.params)
    if params:
        out["params"] = params
    if problem.observed is not None:
        out.update(kind="completion", shape=list(problem.shape), observed=[list(ij) for ij in problem.observed],
                   values=problem.targets.tolist())
    else:
        out.update(kind="sensing", measurements=problem.operator.reshape(-1, *problem.shape).tolist(),
                   targets=problem.targets.tolist())
    return out


def _jsonable(params: dict) -> dict:
    try:
        return json.loads(json.dumps(params, allow_nan=False))
    except (TypeError, ValueError):
        return {}


def _no_duplicate_keys(pairs):
    seen = {}
    for k, v in pairs:
        if k in seen:
            raise ProblemFileError(f"key {k!r} appears twice")
        seen[k] = v
    return seen


def load_problem(path: str | Path) -> MatrixProblem | TensorProblem:
    """Load and validate a problem file (``.json`` or ``.npz``); one-line :class:`ProblemFileError` on any fault."""
    path = Path(path)
    source = f"problem file {str(path)!r}"
    suffix = path.suffix.lower()
    if suffix not in (".json", ".npz"):
        _fail(source, "must end in .json or .npz")
    if not path.is_file():
        _fail(source, "does not exist" if not path.exists() else "is not a regular file")
    if suffix == ".json":
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            _fail(source, f"cannot be read: {exc}")

        def constant(name):
            raise ProblemFileError(f"holds {name}: numbers must be finite")
        try:
            data = json.loads(text, object_pairs_hook=_no_duplicate_keys, parse_constant=constant)
        except ProblemFileError as exc:
            _fail(source, str(exc))
        except json.JSONDecodeError as exc:
            _fail(source, f"is not valid JSON: {exc}")
        return problem_from_data(data, source)
    try:
        with np.load(path, allow_pickle=False) as npz:
            data = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        _fail(source, f"is not a readable .npz archive without pickles: {exc}")
    for key in ("kind", "reduction", "name"):
        if key in data:
            v = data[key]
            if v.ndim != 0 or v.dtype.kind not in "U":
                _fail(source, f"{key!r} must be a 0-d string array")
            data[key] = str(v)
    if "params" in data:
        _fail(source, "'params' is not stored in .npz files")
    return problem_from_data(data, source)


def save_problem(problem: MatrixProblem | TensorProblem, path: str | Path) -> Path:
    """Write ``problem`` as ``.json`` or ``.npz`` (by the suffix); raises :class:`ProblemFileError` on failure."""
    path = Path(path)
    source = f"problem file {str(path)!r}"
    data = problem_to_data(problem)
    suffix = path.suffix.lower()
    if suffix not in (".json", ".npz"):
        _fail(source, "must end in .json or .npz")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if suffix == ".json":
            path.write_text(json.dumps(data, allow_nan=False) + "\n")
        else:
            arrays = {k: np.asarray(v) for k, v in data.items() if k != "params"}
            with open(path, "wb") as fh:
                np.savez_compressed(fh, **arrays)
    except OSError as exc:
        _fail(source, f"cannot be written: {exc.strerror or exc}")
    return path


def is_problem_file(text: str) -> bool:
    """Whether a ``--problem`` argument names a file (by its suffix) rather than a built-in generator."""
    return text.lower().endswith((".json", ".npz"))


__all__ = ["KINDS", "ProblemFileError", "is_problem_file", "load_problem", "problem_from_data", "problem_to_data",
           "save_problem"]
