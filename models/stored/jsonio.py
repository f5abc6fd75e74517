"""Strict JSON and atomic writes, defined once for the whole suite.

- :func:`number`: a float as strict JSON (non-finite values as the strings ``"nan"``, ``"inf"``, ``"-inf"``);
- :func:`strict`: any value as plain JSON values (numpy scalars and arrays, enums, dataclasses, paths, sets and
  objects with ``to_json`` or ``tolist`` converted; non-finite floats through :func:`number`); with
  ``keep_unknown=True`` only numbers and containers are converted and everything else is left as it is;
- :func:`dumps` / :func:`loads`: strict JSON text (``allow_nan=False``; ``NaN``/``Infinity`` tokens rejected);
- :func:`atomic_write`: replace a file in one step (a temporary file in the same directory, fsync, rename), so a
  reader never sees half of it; :func:`write_json` writes :func:`dumps` of a value that way.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import asdict, is_dataclass
from enum import Enum
from pathlib import Path
from typing import Any, BinaryIO, Callable


def number(x: Any) -> float | str:
    """``float(x)``, or ``"nan"``, ``"inf"``, ``"-inf"`` when it is not finite."""
    x = float(x)
    if math.isfinite(x):
        return x
    return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")


def _is_numpy(obj: Any) -> bool:
    return type(obj).__module__ == "numpy"


def strict(obj: Any, *, keep_unknown: bool = False) -> Any:
    """``obj`` as plain JSON values (see the module docstring); anything else becomes its ``repr``, or is kept as
    it is with ``keep_unknown``."""
    if obj is None or isinstance(obj, bool):
        return obj
    if isinstance(obj, str):  # a str subclass (a VerdictStatus) as a plain str: picklable by anything
        return obj if type(obj) is str else str.__str__(obj)
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return number(obj)
    if isinstance(obj, dict):
        return {str(k): strict(v, keep_unknown=keep_unknown) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict(v, keep_unknown=keep_unknown) for v in obj]
    if _is_numpy(obj) and hasattr(obj, "tolist"):
        return strict(obj.tolist(), keep_unknown=keep_unknown)
    if keep_unknown:
        return obj
    if isinstance(obj, (set, frozenset)):
        return sorted(strict(v) for v in obj)
    if isinstance(obj, Enum):
        return strict(obj.value)
    if isinstance(obj, Path):
        return str(obj)
    if is_dataclass(obj) and not isinstance(obj, type):
        return strict(asdict(obj))
    if hasattr(obj, "to_json"):
        return strict(obj.to_json())
    if hasattr(obj, "tolist"):  # torch tensors, numpy subclasses
        return strict(obj.tolist())
    if isinstance(obj, complex):
        return {"real": number(obj.real), "imag": number(obj.imag)}
    return repr(obj)


def dumps(obj: Any, *, indent: int | None = None) -> str:
    """Strict JSON text of ``obj`` (see :func:`strict`)."""
    return json.dumps(strict(obj), allow_nan=False, indent=indent, ensure_ascii=False)


def _reject_constant(name: str):
    raise ValueError(f"non-standard JSON constant {name}")


def loads(text: str) -> Any:
    """Parse strict JSON (rejects ``NaN``/``Infinity`` tokens)."""
    return json.loads(text, parse_constant=_reject_constant)


def atomic_write(path: str | Path, data: str | bytes | Callable[[BinaryIO], None]) -> Path:
    """Replace ``path`` by ``data`` (text as UTF-8, bytes, or a function writing to a binary file) in one step:
    a temporary file beside it, flushed and fsynced, then renamed over it. The parent directory is created; on
    any failure the temporary file is removed and the exception propagates (``path`` is left as it was)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            if callable(data):
                data(fh)
            else:
                fh.write(data.encode("utf-8") if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def write_json(path: str | Path, obj: Any, *, indent: int | None = 2) -> Path:
    """Write ``obj`` as strict JSON (indented, newline-terminated) with :func:`atomic_write`."""
    return atomic_write(path, dumps(obj, indent=indent) + "\n")


__all__ = ["atomic_write", "dumps", "loads", "number", "strict", "write_json"]
