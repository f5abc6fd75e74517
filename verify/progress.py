"""Progress reporters, injected into the runner (style lesson 11).

- :class:`LineProgress`: one line per finished claim (``id  verdict  examples  seconds``): CI logs, pipes, files.
- :class:`BarProgress`: a tqdm bar on a terminal, with the finished claims printed above it when they did not
  meet their expectation.
- :class:`NoProgress`: nothing.

:func:`make_progress` picks the bar when the stream is a terminal and lines otherwise (CI logs keep one line per
claim, with no carriage returns). All three have the same methods (``start``, ``done``, ``note``, ``finish``).
"""

from __future__ import annotations

import sys
from typing import TextIO

from models.stored import evidence
from models.stored.verdicts import verdict_of


ID_WIDTH = 56  # the longest built-in id, an ablation (claim.without_hypothesis), is 55 characters
VERDICT_WIDTH = 27  # "refuted, as expected", "error (timeout after 600 s)"


def describe(record: dict) -> str:
    """``id  verdict  N examples  S s`` for one finished claim record; the verdict in the words of the report
    (:func:`models.stored.evidence.verdict_phrase`: "refuted, as expected", "error (timeout after N s)")."""
    if record.get("ablation"):
        flag = "  (hypothesis necessary)" if verdict_of(record) == "violated" else ""
    else:
        flag = "" if record.get("met") else "  (expectation not met)"
    n = int(record.get("examples") or 0)
    word = evidence.verdict_phrase(record) if verdict_of(record) else "?"
    return (f"{record.get('claim', '?'):<{ID_WIDTH}} {word:<{VERDICT_WIDTH}} "
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
    """A tqdm bar on a terminal (count, elapsed time, rate, ETA, verdict counts and the last claim), with the
    claims that did not meet their expectation, and notes, printed above it."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream if stream is not None else sys.stderr
        self.bar = None
        self.counts: dict[str, int] = {}

    def start(self, total: int, *, skipped: int = 0, title: str = "") -> None:
        from tqdm import tqdm

        self.finish()
        self.counts = {}
        self.bar = tqdm(total=total, file=self.stream, desc=title.rstrip().rstrip(":") or None, unit="claim",
                        dynamic_ncols=True, leave=True, mininterval=0.2)
        if skipped:
            self.note(f"{skipped} claim{'s' if skipped != 1 else ''} already in results.jsonl")

    def done(self, record: dict) -> None:
        if self.bar is None:
            self.start(0)
        v = evidence.verdict_word(verdict_of(record), record.get("expectation"))
        self.counts[v] = self.counts.get(v, 0) + 1
        if not record.get("met") and not record.get("ablation"):
            self.bar.write(describe(record), file=self.stream)
        counts = " ".join(f"{k}={n}" for k, n in sorted(self.counts.items()))
        self.bar.set_postfix_str(f"{counts} {record.get('claim', '?')} {v}", refresh=False)
        self.bar.update(1)

    def note(self, message: str) -> None:
        if self.bar is not None:
            self.bar.write(message, file=self.stream)
        else:
            print(message, file=self.stream, flush=True)

    def finish(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def make_progress(stream: TextIO | None = None, *, quiet: bool = False):
    """A bar on a terminal, one line per claim otherwise, nothing with ``quiet``."""
    stream = stream if stream is not None else sys.stderr
    if quiet:
        return NoProgress()
    isatty = getattr(stream, "isatty", None)
    return BarProgress(stream) if isatty is not None and isatty() else LineProgress(stream)
