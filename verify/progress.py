"""Progress reporters, injected into the runner (style lesson 11).

- :class:`LineProgress`: one line per finished claim (``id  verdict  examples  seconds``): CI logs, pipes, files.
- :class:`BarProgress`: a one-line bar redrawn in place on a terminal, with the finished claims printed above it
  when they did not meet their expectation.
- :class:`NoProgress`: nothing.

:func:`make_progress` picks the bar when the stream is a terminal and lines otherwise. No dependency (tqdm is not
one of the suite's).
"""

from __future__ import annotations

import shutil
import sys
import time
from typing import TextIO


ID_WIDTH = 56  # the longest built-in id, an ablation (claim.without_hypothesis), is 55 characters


def describe(record: dict) -> str:
    """``id  verdict  N examples  S s`` for one finished claim record."""
    if record.get("ablation"):
        flag = "  (hypothesis necessary)" if record.get("verdict") == "violated" else ""
    else:
        flag = "" if record.get("met") else "  (expectation not met)"
    n = int(record.get("examples") or 0)
    return (f"{record.get('claim', '?'):<{ID_WIDTH}} {record.get('verdict', '?'):<12} "
            f"{n:>6} {'example' if n == 1 else 'examples':<8} {float(record.get('seconds') or 0.0):>8.2f} s{flag}")


class NoProgress:
    """Reports nothing."""

    def start(self, total: int, *, skipped: int = 0, title: str = "") -> None:
        pass

    def done(self, record: dict) -> None:
        pass

    def note(self, message: str) -> None:
        pass

    def finish(self) -> None:
        pass


class LineProgress(NoProgress):
    """One line per finished claim; never redraws."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream if stream is not None else sys.stderr
        self.total = self.count = 0

    def start(self, total: int, *, skipped: int = 0, title: str = "") -> None:
        self.total, self.count = total, 0
        extra = f" ({skipped} already in results.jsonl)" if skipped else ""
        self._write(f"{title}{total} claim{'s' if total != 1 else ''} to run{extra}")

    def done(self, record: dict) -> None:
        self.count += 1
        width = len(str(self.total))
        self._write(f"[{self.count:>{width}}/{self.total}] {describe(record)}")

    def note(self, message: str) -> None:
        self._write(message)

    def _write(self, line: str) -> None:
        print(line, file=self.stream, flush=True)


class BarProgress(NoProgress):
    """A progress bar redrawn in place (``\\r``) on a terminal."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream if stream is not None else sys.stderr
        self.total = self.count = 0
        self.start_time = time.monotonic()
        self.last = ""
        self.counts: dict[str, int] = {}

    def start(self, total: int, *, skipped: int = 0, title: str = "") -> None:
        self.total, self.count, self.start_time = total, 0, time.monotonic()
        self.counts = {}
        self._draw()

    def done(self, record: dict) -> None:
        self.count += 1
        self.last = f"{record.get('claim', '?')} {record.get('verdict', '?')}"
        v = str(record.get("verdict"))
        self.counts[v] = self.counts.get(v, 0) + 1
        if not record.get("met") and not record.get("ablation"):
            self._clear()
            print(describe(record), file=self.stream)
        self._draw()

    def note(self, message: str) -> None:
        self._clear()
        print(message, file=self.stream)
        self._draw()

    def finish(self) -> None:
        self._draw()
        print(file=self.stream, flush=True)

    def _clear(self) -> None:
        self.stream.write("\r\033[K")

    def _draw(self) -> None:
        cols = shutil.get_terminal_size((80, 24)).columns
        frac = self.count / self.total if self.total else 1.0
        elapsed = time.monotonic() - self.start_time
        counts = " ".join(f"{k}={v}" for k, v in sorted(self.counts.items()))
        head = f"{self.count}/{self.total} {elapsed:6.1f}s {counts} "
        width = max(10, min(40, cols - len(head) - 4))
        fill = int(round(frac * width))
        line = f"[{'#' * fill}{'.' * (width - fill)}] {head}{self.last}"
        self.stream.write("\r\033[K" + line[: max(cols - 1, 20)])
        self.stream.flush()


def make_progress(stream: TextIO | None = None, *, quiet: bool = False):
    """A bar on a terminal, one line per claim otherwise, nothing with ``quiet``."""
    stream = stream if stream is not None else sys.stderr
    if quiet:
        return NoProgress()
    isatty = getattr(stream, "isatty", None)
    return BarProgress(stream) if isatty is not None and isatty() else LineProgress(stream)
