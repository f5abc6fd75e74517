"""The result store: ``results.jsonl`` (one strict-JSON line per finished claim) and ``summary.json``.

Rules:

1. Only the parent process writes. :meth:`ResultStore.append` writes one line, flushes and fsyncs it, so a run
   that is interrupted or killed keeps every claim that finished.
2. Everything written is strict JSON (``allow_nan=False``): non-finite floats are encoded as the strings
   ``"nan"``, ``"inf"`` and ``"-inf"`` by :func:`strict`, numpy scalars and arrays become plain numbers and lists.
3. A line cut short by a kill is not an error: :func:`read_records` drops a torn *last* line (and
   :meth:`ResultStore.open` removes it before appending); a malformed line elsewhere is bad input.
4. ``summary.json`` is a pure function of the records and the run settings (:func:`build_summary`): the records
   are ordered by the run's claim order, not by completion, so an interrupted-and-resumed run and an uninterrupted
   one give the same summary (timings aside).
"""

from __future__ import annotations

import os
import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Sequence

from models.errors import InvalidInput
from models.stored import jsonio
from models.stored.verdicts import VERDICTS, verdict_of
from verify.records import SCHEMA_VERSION

RESULTS = "results.jsonl"
SUMMARY = "summary.json"
PACKAGES = ("hypothesis", "numpy", "scipy", "mpmath", "gmpy2", "python-flint", "sympy", "torch")


# ----- strict JSON (stored.jsonio, re-exported) ---------------------------------------------------------------
strict, dumps, loads = jsonio.strict, jsonio.dumps, jsonio.loads


def write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented strict JSON, atomically (:func:`models.stored.jsonio.write_json`)."""
    return jsonio.write_json(path, obj, indent=2)


def read_json(path: str | Path, what: str = "file") -> Any:
    """Parse a JSON file, raising :class:`InvalidInput` with a one-line reason when it is missing or invalid."""
    path = Path(path)
    try:
        return loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidInput(f"{what} {str(path)!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{what} {str(path)!r} is not readable: {exc}") from None
    except ValueError as exc:
        raise InvalidInput(f"{what} {str(path)!r} is not valid JSON: {exc}") from None


# ----- results.jsonl -------------------------------------------------------------------------------------------
def _parse_lines(data: bytes, path: Path) -> tuple[list[dict], int]:
    """Records in ``data`` and the byte length of its intact prefix (a torn last line is dropped)."""
    records, good = [], 0
    pos = 0
    while pos < len(data):
        nl = data.find(b"\n", pos)
        end = len(data) if nl < 0 else nl + 1
        line = data[pos:end]
        try:
            rec = loads(line.decode("utf-8")) if line.strip() else None
        except (UnicodeDecodeError, ValueError):
            if nl < 0 or not data[end:].strip():  # the torn last line of a killed run
                break
            raise InvalidInput(f"{str(path)!r} line {len(records) + 1} is not valid JSON") from None
        if rec is not None:
            if not isinstance(rec, dict) or "claim" not in rec:
                raise InvalidInput(f"{str(path)!r} line {len(records) + 1} is not a result record")
            records.append(rec)
        pos = good = end
    return records, good


def read_records(path: str | Path) -> list[dict]:
    """Every intact record of a ``results.jsonl`` (empty when the file does not exist)."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise InvalidInput(f"{str(path)!r} is not readable: {exc}") from None
    return _parse_lines(data, path)[0]


class ResultStore:
    """The single writer of ``DIR/results.jsonl`` (see the module docstring)."""

    def __init__(self, out: str | Path):
        self.dir = Path(out)
        self.path = self.dir / RESULTS
        self._fh = None

    def open(self, *, resume: bool) -> list[dict]:
        """Open for appending; returns the records kept (all intact ones with ``resume``, none otherwise)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        kept: list[dict] = []
        if resume and self.path.exists():
            data = self.path.read_bytes()
            kept, good = _parse_lines(data, self.path)
            if good < len(data):  # drop the torn tail of a killed run
                with open(self.path, "r+b") as fh:
                    fh.truncate(good)
            elif data and not data.endswith(b"\n"):  # an intact last line that lost its newline
                with open(self.path, "ab") as fh:
                    fh.write(b"\n")
        self._fh = open(self.path, "a" if resume else "w", encoding="utf-8")
        return kept

    def append(self, record: dict) -> None:
        """Append one record as one strict-JSON line, flushed and fsynced."""
        line = dumps(record)
        assert "\n" not in line
        self._fh.write(line + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __enter__(self) -> "ResultStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ----- environment ---------------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def package_versions() -> dict[str, str]:
    """Installed versions of the numeric stack (from package metadata; torch is not imported)."""
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


@lru_cache(maxsize=1)
def git_commit() -> str:
    """``git rev-parse HEAD`` of the suite's checkout, or ``"unknown"``."""
    root = Path(__file__).resolve().parent.parent
    try:
        res = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    sha = res.stdout.strip()
    return sha if res.returncode == 0 and sha else "unknown"


# ----- summary -------------------------------------------------------------------------------------------------
def totals(records: Sequence[dict]) -> dict:
    """Counts by verdict, claims met / not met, examples and seconds."""
    out: dict[str, Any] = {"claims": len(records), "met": 0, "not_met": 0}
    out.update({v: 0 for v in VERDICTS})
    examples, seconds = 0, 0.0
    for r in records:
        out["met" if r.get("met") else "not_met"] += 1
        v = verdict_of(r)
        if v in VERDICTS:
            out[v] += 1
        examples += int(r.get("examples") or 0)
        seconds += float(r.get("seconds") or 0.0)
    out["examples"] = examples
    out["seconds"] = round(seconds, 3)
    return out


def build_summary(records: Iterable[dict], order: Sequence[str], settings: dict, *,
                  regressions: Sequence[dict] = (), baseline: str | None = None) -> dict:
    """``summary.json``: run settings, the per-claim records in ``order``, totals and baseline regressions."""
    by_id = {r["claim"]: r for r in records}
    rows = [by_id[c] for c in order if c in by_id]
    missing = [c for c in order if c not in by_id]
    return {
        "schema_version": SCHEMA_VERSION,
        **settings,
        "complete": not missing,
        "missing": missing,
        "totals": totals(rows),
        "baseline": baseline,
        "regressions": list(regressions),
        "claims": rows,
    }


def load_summary(path: str | Path, what: str = "baseline") -> dict:
    """A ``summary.json`` (or a ``results.jsonl``), validated; :class:`InvalidInput` when unusable."""
    path = Path(path)
    if path.is_dir():
        path = path / SUMMARY
    if path.suffix == ".jsonl":
        return {"claims": read_records(path)} if path.exists() else read_json(path, what)
    data = read_json(path, what)
    if not isinstance(data, dict) or not isinstance(data.get("claims"), list) \
            or not all(isinstance(r, dict) and isinstance(r.get("claim"), str) for r in data["claims"]):
        raise InvalidInput(f"{what} {str(path)!r} is not a verify summary (no 'claims' list of records)")
    return data


def regressions(baseline: dict, records: Iterable[dict]) -> list[dict]:
    """Claims that met their expectation in ``baseline`` and do not now (claims not run now are ignored)."""
    before = {r["claim"]: r for r in baseline.get("claims", [])}
    out = []
    for r in records:
        b = before.get(r["claim"])
        if b is not None and b.get("met") and not r.get("met"):
            out.append({"claim": r["claim"], "baseline": verdict_of(b), "now": verdict_of(r)})
    return out
