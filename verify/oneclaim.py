"""One claim through ``verify run``'s own path, for the pytest plugin and :func:`verify.check`.

:func:`run` builds the runner's :class:`~verify.runner.Task`, hands it to :func:`verify.runner.drive` on an
executor (the plugin's session executor, or :func:`in_process`), and turns the worker's verdict into the
``results.jsonl`` record with :func:`verify.runner.make_record`, writing ``counterexamples/ID.json`` with
:func:`verify.runner.counterexample_doc` first when an output directory is given. So verdicts, counterexamples,
records and (where the runner enforces them) time limits are those of ``verify run`` for the same claim, profile
and seed.
"""

from __future__ import annotations

import shlex
import threading
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import Sequence

from properties.api import CLAIMS, Claim
from models.stored import evidence
from verify import runner, store
from verify.executors import ExecutorHandle, SerialExecutor
from models.stored.verdicts import verdict_of

_REGISTRY_LOCK = threading.RLock()


def in_process() -> ExecutorHandle:
    """An executor that runs the task in this process (claims defined in a notebook or ``__main__`` resolve)."""
    return ExecutorHandle(SerialExecutor(), "in process", 1)


def _task_for(claim: Claim, profile: str, seed: int, modules: Sequence[str]) -> runner.Task:
    """The runner's task for ``claim``; with the claim's time limit when the runner's tasks carry one."""
    extra = {}
    if hasattr(runner, "time_limit") and "timeout" in {f.name for f in fields(runner.Task)}:
        extra["timeout"] = runner.time_limit(claim, profile)
    return runner.Task(claim.id, profile, int(seed), tuple(str(m) for m in modules), **extra)


@contextmanager
def registered(claim: Claim):
    """``claim`` is the registered claim of its id while the block runs (the previous entry comes back after).

    Workers resolve a task's claim by id; this lets a claim object that was never registered (built with
    :class:`~properties.api.Claim`, or redefined in a notebook cell) run in this process as given.
    """
    with _REGISTRY_LOCK:
        before = CLAIMS.get(claim.id)
        if before is claim:
            yield
            return
        CLAIMS[claim.id] = claim
        try:
            yield
        finally:
            if before is None:
                CLAIMS.pop(claim.id, None)
            else:
                CLAIMS[claim.id] = before


def _cx_path(out: Path, claim_id: str) -> Path:
    """Where ``verify run`` keeps the counterexample of ``claim_id`` under ``out``."""
    return Path(out) / runner.CX_DIR / f"{claim_id}.json"


def run(claim: Claim, *, profile: str, seed: int, modules: Sequence[str], handle: ExecutorHandle,
        out: Path | None = None) -> dict:
    """Run ``claim`` as ``verify run`` does and return its record (see the module docstring).

    ``modules`` are the claims modules a worker imports to find the claim (stored in the record and the
    counterexample file for ``verify reproduce``). With ``out``, a stale counterexample file of the claim is
    removed first and a new one written when there is a counterexample.
    """
    task = _task_for(claim, profile, seed, modules)
    if out is not None:
        _cx_path(out, claim.id).unlink(missing_ok=True)
    box: dict = {}

    def on_done(t: runner.Task, v: dict) -> None:
        box["v"] = v

    with registered(claim):
        runner.drive([task], handle, on_done)
    v = box["v"]
    if out is not None and v.get("counterexample"):
        path = _cx_path(out, claim.id)
        rec = runner.make_record(claim, task, v, cx_file=str(path.relative_to(out)))
        store.write_json(path, runner.counterexample_doc(rec, path))
        return rec
    return runner.make_record(claim, task, v)


def failure_text(record: dict, out: Path | None = None) -> str:
    """Why a record did not meet its expectation: verdict, counterexample inputs, margin against its error, notes,
    and the ``verify reproduce`` command (for people: pytest failures, JUnit messages, annotations)."""
    from verify.records import VerdictStatus

    verdict = verdict_of(record) or "error"
    expected = "holds" if record.get("expectation") == "holds" else "violated"
    try:
        why = VerdictStatus(verdict).message
    except ValueError:
        why = ""
    lines = [f"claim {record.get('claim')}: {evidence.verdict_phrase(record)} (expected {expected})"
             + (f": {why}" if why else "")]
    cx = record.get("counterexample") or {}
    if cx.get("inputs_repr"):
        lines.append(f"counterexample inputs: {cx['inputs_repr']}")
    outcome = cx.get("outcome") or {}
    if outcome:
        lines.append(f"margin {outcome.get('margin')!r} against its error estimate {outcome.get('error')!r}"
                     + (f" (engine {outcome['engine']})" if outcome.get("engine") else ""))
        if outcome.get("detail"):
            lines.append(f"detail: {store.dumps(outcome['detail'])[:1000]}")
    elif verdict == "holds":
        lines.append(f"no counterexample in {evidence.plural(record.get('examples'), 'example')}; "
                     f"smallest normalized margin "
                     f"{record.get('smallest_margin')!r}")
    if record.get("error"):
        lines.append(f"error: {record['error']}")
    for note in record.get("notes") or []:
        lines.append(f"note: {note}")
    if record.get("counterexample_file") and out is not None:
        path = Path(out) / record["counterexample_file"]
        lines.append(f"reproduce: verify reproduce {shlex.quote(str(path))}")
    if record.get("traceback"):
        lines.append(str(record["traceback"])[-3000:].rstrip())
    return "\n".join(lines)
