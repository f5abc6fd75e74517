"""Output locations: checked writable before any work starts, and one run at a time per output directory.

- :func:`writable_dir` (``verify run --out``, ``verify ablate --out``) and :func:`writable_file` (``--json``)
  raise :class:`~models.errors.InvalidInput` with a one-line reason (a file where a directory is needed, a
  directory below a file, a read-only filesystem, no permission) *before* a command computes anything.
- :class:`DirLock`: an exclusive ``fcntl.flock`` on ``DIR/.verify.lock`` held for the whole run. A second
  ``verify run`` (or ``verify ablate``) into the same directory fails at once with a line naming the owner (pid,
  host, command, start time). The kernel releases a ``flock`` when its holder exits, however it exits, so the
  lock file a killed run leaves behind is no obstacle; the file itself is never deleted (deleting it would let
  two runs lock two different files).
- :func:`set_aside` moves what an earlier run left in the directory (results, summary, report, counterexamples,
  ablations) into ``DIR/previous/`` so that nothing of it is mixed into the new run's report; an older
  ``previous/`` is replaced. ``--resume`` keeps everything instead. The figure data under ``figures/`` is a cache
  keyed by each figure's spec (:mod:`verify.figure_data`) and stays.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path

from models.errors import InvalidInput
from models.stored.jsonio import atomic_write

LOCK = ".verify.lock"
PREVIOUS = "previous"
#: what a run writes into its directory and a later fresh run sets aside (the figure cache stays)
RUN_OUTPUTS = ("results.jsonl", "summary.json", "report.md", "report.html", "counterexamples", "ablations")

try:  # POSIX; elsewhere the lock is a no-op (documented in the README)
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None


def _why(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def writable_dir(path: str | Path, option: str = "--out") -> Path:
    """Create ``path`` as a directory if needed and check that a file can be written in it."""
    path = Path(path)
    for p in (path, *path.parents):
        if p.exists() or p.is_symlink():
            if not p.is_dir():
                where = "is" if p == path else f"is below {str(p)!r}, which is"
                raise InvalidInput(f"{option} {str(path)!r} {where} a file, not a directory")
            break
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".verify-probe-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise InvalidInput(f"{option} {str(path)!r} is not writable: {_why(exc)}") from None
    return path


def writable_file(path: str | Path, option: str = "--json") -> Path:
    """Check (before any work) that ``path`` can be written: its directory is made and probed, and ``path`` is
    not a directory. ``-`` (stdout) is always fine."""
    if str(path) == "-":
        return Path("-")
    path = Path(path)
    if path.is_dir():
        raise InvalidInput(f"{option} {str(path)!r} is a directory, not a file")
    writable_dir(path.parent if str(path.parent) else Path("."), option=f"{option} {str(path)!r}: directory")
    if path.exists() and not os.access(path, os.W_OK):
        raise InvalidInput(f"{option} {str(path)!r} is not writable: permission denied")
    return path


def write_text(path: str | Path, text: str, option: str = "--json") -> Path:
    """Write ``text`` to ``path`` atomically (:func:`models.stored.jsonio.atomic_write`); a failure is bad input."""
    path = Path(path)
    try:
        atomic_write(path, text)
    except OSError as exc:
        raise InvalidInput(f"cannot write {option} {str(path)!r}: {_why(exc)}") from None
    return path


class DirLock:
    """Exclusive ownership of an output directory for the life of a command (see the module docstring)."""

    def __init__(self, out: str | Path, command: str = "verify run"):
        self.dir = Path(out)
        self.path = self.dir / LOCK
        self.command = command
        self._fh = None

    def acquire(self) -> "DirLock":
        if fcntl is None:  # pragma: no cover
            return self
        try:
            fh = open(self.path, "a+", encoding="utf-8")
        except OSError as exc:
            raise InvalidInput(f"--out {str(self.dir)!r}: cannot create the lock file: {_why(exc)}") from None
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            owner = _describe_owner(fh.read())
            fh.close()
            raise InvalidInput(f"--out {str(self.dir)!r} is in use by another run ({owner}); wait for it or "
                               f"choose another --out") from None
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "command": self.command,
                             "argv": sys.argv[1:],
                             "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}) + "\n")
        fh.flush()
        self._fh = fh
        return self

    def release(self) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None

    def __enter__(self) -> "DirLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _describe_owner(text: str) -> str:
    try:
        info = json.loads(text)
        return f"{info['command']}, pid {info['pid']} on {info['host']}, started {info['started']}"
    except (ValueError, KeyError, TypeError):
        return "owner still starting"


def set_aside(out: str | Path) -> list[str]:
    """Move an earlier run's outputs (:data:`RUN_OUTPUTS`) into ``out/previous/``; returns the names moved."""
    out = Path(out)
    present = [name for name in RUN_OUTPUTS if (out / name).exists()]
    if not present:
        return []
    prev = out / PREVIOUS
    try:
        if prev.exists():
            shutil.rmtree(prev) if prev.is_dir() else prev.unlink()
        prev.mkdir()
        for name in present:
            os.replace(out / name, prev / name)
    except OSError as exc:
        raise InvalidInput(f"--out {str(out)!r}: cannot set the previous run's outputs aside in "
                           f"{str(prev)!r}: {_why(exc)}") from None
    return present


__all__ = ["DirLock", "LOCK", "PREVIOUS", "RUN_OUTPUTS", "set_aside", "writable_dir", "writable_file",
           "write_text"]
