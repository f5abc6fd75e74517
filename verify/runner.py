"""Orchestration of ``verify run`` and ``verify ablate``: tasks, executors, the store, counterexamples, reports.

A run:

1. selects claims (:mod:`verify.discovery`), reads the baseline if one is given, checks that ``DIR`` is (or can
   be made) a writable directory (bad input fails before any work), and locks ``DIR`` for the whole run (:mod:`verify.outdir`: a
   second run into it fails at once, naming this one); a fresh run moves an earlier run's outputs into
   ``DIR/previous/``;
2. opens ``DIR/results.jsonl`` (:class:`~verify.store.ResultStore`): truncated for a fresh run, kept with
   ``--resume`` (whose records must have the same profile and seed), and runs only the claims without a record;
3. sends one :class:`Task` per claim to the executor (:mod:`verify.executors`), keeping a bounded number in
   flight; a worker rebuilds the claim from its id and calls :func:`verify.driver.run_claim`; whatever it raises
   becomes an ``error`` verdict with the traceback, and the other claims still run. Each task has a time limit
   (:func:`time_limit`); a local worker still running past it is killed (:mod:`verify.workers`; on dask the
   claim's child process on the dask worker, :mod:`verify.dask_limits`) and the claim's verdict is ``error``
   with ``reason: "timeout"``;
4. as each claim finishes, writes its counterexample to ``DIR/counterexamples/ID.json`` and *then* appends its
   record to ``results.jsonl`` (flushed), so a record on disk always has its counterexample file beside it;
5. writes ``summary.json`` (records in claim order), the figure data (:mod:`verify.figure_data`), the figures and
   the report (:mod:`reports`), and returns the exit status: 0 every claim met its expectation, 1 otherwise or
   when a claim that met its expectation in the baseline no longer does.

The same seed gives the same verdicts whatever the executor and job count: each task carries the run seed and
the driver derives everything from (seed, claim); nothing depends on which worker ran what, or when.
"""

from __future__ import annotations

import shlex
import threading
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, Future, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

from models.errors import InvalidInput
from properties.api import Claim
from models.stored.verdicts import KEY, VerdictStatus, verdict_of
from verify import discovery, outdir, store
from verify.executors import ExecutorHandle, open_executor
from verify.progress import NoProgress
from verify.profiles import PROFILES as _PROFILES
from verify.profiles import get_profile
from verify.workers import TaskTimeout
from verify.records import SCHEMA_VERSION

PROFILES = tuple(_PROFILES)
DEFAULT_OUT = Path("reports") / "latest"
CX_DIR = "counterexamples"
ERROR = VerdictStatus.ERROR.value
ABLATIONS_DIR = "ablations"


# ----- tasks (what travels to workers) ------------------------------------------------------------------------
@dataclass(frozen=True)
class Task:
    """One claim to run: picklable, rebuilt in the worker from the claims modules."""

    claim: str
    profile: str
    seed: int
    modules: tuple[str, ...]
    dropped: tuple[str, ...] = ()
    timeout: float | None = None  # seconds; past it the worker is killed and the verdict is error (timeout)


def _error(stage: str, exc: BaseException) -> dict:
    if isinstance(exc, TaskTimeout):
        return {KEY: ERROR, "met": False, "traceback": None, "reason": "timeout", "seconds": exc.seconds,
                "error": f"timeout: the claim {exc}; set a longer limit with --claim-timeout SECONDS or "
                         f"@claim(..., timeout=SECONDS)"}
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return {KEY: ERROR, "met": False, "traceback": tb, "error": f"{stage}: {type(exc).__name__}: {exc}"}


def time_limit(claim: Claim, profile: str, override: float | None = None) -> float:
    """The claim's time limit in seconds: ``--claim-timeout``, else the claim's own, else the profile's."""
    if override is not None:
        return float(override)
    if getattr(claim, "timeout", None) is not None:
        return float(claim.timeout)
    return float(get_profile(profile).claim_timeout)


_CONSTANTS_LOCK = threading.Lock()
_CONSTANTS_USERS = 0
_CONSTANTS_SAVED: list = []


@contextmanager
def stable_generation():
    """Make Hypothesis' generation a function of the seed alone while the block runs.

    Hypothesis (>= 6.131) mixes into generation a pool of literals that it collects from every *local* module in
    ``sys.modules`` (``hypothesis.internal.conjecture.providers._get_local_constants``). That pool depends on what
    the process happened to import before (a pool worker, a dask worker, the parent after it drew a report), so
    the same seed could give different examples, verdicts and counterexamples on different executors. Inside this
    block the local pool is empty (Hypothesis' global constants still apply). Reference-counted so that threads of
    one dask worker can overlap; the pool and its cache are restored when the last one leaves.

    This is the one patch of a private Hypothesis name left in the suite: Hypothesis has no public setting that
    turns the local-constants pool off or fixes it (``settings``, ``@seed``, ``derandomize`` and a database per
    run, all used by :mod:`verify.driver`, leave it on). pyproject.toml pins the Hypothesis versions it is tested
    on, and ``tests/unit/test_hypothesis_patch.py`` fails loudly if the names it replaces disappear or stop
    taking effect. A Hypothesis without them is left alone at run time.
    """
    global _CONSTANTS_USERS
    try:
        from hypothesis.internal.conjecture import providers
        from hypothesis.internal.constants_ast import Constants
        getattr(providers, "_get_local_constants")
        cache = getattr(providers, "CONSTANTS_CACHE")
    except (ImportError, AttributeError):  # pragma: no cover -- another Hypothesis: nothing to pin
        yield
        return
    with _CONSTANTS_LOCK:
        _CONSTANTS_USERS += 1
        if _CONSTANTS_USERS == 1:
            _CONSTANTS_SAVED.append(providers._get_local_constants)
            empty = Constants()
            providers._get_local_constants = lambda: empty
            cache.cache.clear()
    try:
        yield
    finally:
        with _CONSTANTS_LOCK:
            _CONSTANTS_USERS -= 1
            if _CONSTANTS_USERS == 0:
                providers._get_local_constants = _CONSTANTS_SAVED.pop()
                cache.cache.clear()


def execute(task: Task) -> dict:
    """Run one task (in a worker): the verdict as a JSON-ready dict, or an error dict with the traceback."""
    start = time.perf_counter()
    try:
        claim = discovery.resolve(task.modules, task.claim, task.dropped)
    except Exception as exc:  # noqa: BLE001 -- reported as the claim's error
        out = _error("loading the claim", exc)
    else:
        try:
            from verify import driver
            with stable_generation():
                verdict = driver.run_claim(claim, profile=task.profile, seed=task.seed)
            out = store.strict(verdict.to_json())
        except Exception as exc:  # noqa: BLE001 -- a check that raises is an error verdict, not a crash
            out = _error("running the claim", exc)
    out.setdefault("seconds", time.perf_counter() - start)
    return out


# ----- records ------------------------------------------------------------------------------------------------
def environment() -> dict:
    return {"versions": store.package_versions(), "git_commit": store.git_commit()}


def make_record(claim: Claim, task: Task, v: dict, *, cx_file: str | None = None) -> dict:
    """The ``results.jsonl`` line of one finished claim (claim metadata + the verdict)."""
    status = verdict_of(v, ERROR)
    rec = {
        "schema_version": SCHEMA_VERSION,
        "claim": claim.id,
        "title": claim.title,
        "source": claim.source,
        "kind": claim.kind.value,
        "parent": claim.parent,
        "dropped": sorted(claim.dropped),
        "expectation": claim.expectation.value,
        KEY: status,
        "met": bool(v.get("met")) if status != ERROR else False,
        "examples": int(v.get("examples") or 0),
        "inconclusive": int(v.get("inconclusive") or 0),
        "smallest_margin": v.get("smallest_margin"),
        "seconds": round(float(v.get("seconds") or 0.0), 4),
        "engine": v.get("engine") or "",
        "seed": task.seed,
        "profile": task.profile,
        "claims_modules": list(task.modules),
        **environment(),
        "counterexample": v.get("counterexample"),
        "counterexample_file": cx_file,
        "traceback": v.get("traceback"),
        "error": v.get("error"),
        **({"reason": v["reason"]} if v.get("reason") else {}),
        "notes": v.get("notes") or [],
        "extra": v.get("extra") or {},
    }
    if v.get("seed") is not None and v.get("seed") != task.seed:
        rec["claim_seed"] = v["seed"]
    return rec


def counterexample_doc(record: dict, path: Path) -> dict:
    """``counterexamples/ID.json``: the shrunk counterexample and everything needed to reproduce it."""
    cx = record["counterexample"] or {}
    command = f"verify reproduce {shlex.quote(str(path))}"
    return {
        "schema_version": SCHEMA_VERSION,
        "claim": record["claim"],
        "title": record["title"],
        "source": record["source"],
        "parent": record["parent"],
        "dropped": record["dropped"],
        "expectation": record["expectation"],
        "verdict": record["verdict"],
        "met": record["met"],
        "profile": record["profile"],
        "seed": record["seed"],
        "claim_seed": record.get("claim_seed", record["seed"]),
        "engine": cx.get("engine") or record["engine"],
        "tolerances": cx.get("tolerances"),
        "claims_modules": record["claims_modules"],
        "versions": record["versions"],
        "git_commit": record["git_commit"],
        "inputs": cx.get("inputs"),
        "counterexample": cx,
        "command": command,
    }


def _cx_path(out: Path, claim_id: str) -> Path:
    return out / CX_DIR / f"{claim_id}.json"


# ----- the loop ------------------------------------------------------------------------------------------------
def drive(tasks: Sequence[Task], handle: ExecutorHandle, on_done: Callable[[Task, dict], None]) -> None:
    """Run ``tasks`` on ``handle`` with at most ``handle.window`` in flight; ``on_done`` as each finishes."""
    queue = iter(tasks)
    pending: dict[Future, Task] = {}

    def fill() -> None:
        while len(pending) < handle.window:
            task = next(queue, None)
            if task is None:
                return
            try:
                if handle.limits and task.timeout is not None:
                    fut = handle.executor.submit_limited(task.timeout, execute, task)
                else:
                    fut = handle.executor.submit(execute, task)
                pending[fut] = task
            except Exception as exc:  # noqa: BLE001 -- a broken pool: this task is an error, go on
                on_done(task, _error("submitting the task", exc))

    try:
        fill()
        while pending:
            done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
            for fut in sorted(done, key=lambda f: tasks.index(pending[f])):
                task = pending.pop(fut)
                try:
                    result = fut.result()
                except Exception as exc:  # noqa: BLE001 -- a worker that died, a cluster that went away
                    result = _error("in the executor", exc)
                on_done(task, result)
            fill()
    except BaseException:
        for fut in pending:
            fut.cancel()
        handle.terminate()
        raise


@dataclass(frozen=True)
class RunConfig:
    """Settings of one ``verify run``."""

    patterns: tuple[str, ...] = ()
    profile: str = "quick"
    seed: int = 0
    modules: tuple[str, ...] = ()
    out: Path = DEFAULT_OUT
    baseline: Path | None = None
    jobs: int = 1
    executor: str = "local"
    resume: bool = False
    figures: bool = True
    report: bool = True
    claim_timeout: float | None = None

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise InvalidInput(f"unknown profile {self.profile!r}; choose one of {', '.join(PROFILES)}")
        if self.jobs < 1:
            raise InvalidInput(f"--jobs must be >= 1, got {self.jobs!r}")
        if self.claim_timeout is not None and not 0 < float(self.claim_timeout) < float("inf"):
            raise InvalidInput(f"--claim-timeout must be a number of seconds > 0, got {self.claim_timeout!r}")


@dataclass
class RunResult:
    summary: dict
    exit_code: int
    ran: int = 0
    kept: int = 0
    files: dict = field(default_factory=dict)


def _settings(config: RunConfig, catalog: discovery.Catalog) -> dict:
    return {
        "profile": config.profile,
        "seed": config.seed,
        "claims_modules": list(catalog.modules),
        **environment(),
    }


def _check_resumable(kept: Iterable[dict], config: RunConfig, out: Path) -> None:
    for r in kept:
        if r.get("profile") != config.profile or r.get("seed") != config.seed:
            raise InvalidInput(
                f"{out / store.RESULTS} holds results of profile {r.get('profile')!r} seed {r.get('seed')!r}; "
                f"resume with those, or run without --resume")


def run(config: RunConfig, progress=None) -> RunResult:
    """Run the selected claims (see the module docstring); returns the summary and the exit status."""
    progress = progress or NoProgress()
    catalog = discovery.load(config.modules)
    claims = catalog.select(config.patterns)
    if not claims:
        raise InvalidInput("no claims to run" + (f" in {', '.join(catalog.modules)}" if config.modules else ""))
    base = store.load_summary(config.baseline) if config.baseline is not None else None
    # the commit whose code runs: read (and cached, store.git_commit) before any claim does. Read when the first
    # record was written, it named whatever HEAD was by then: a thorough run started at d56a7fc and committed to
    # during its 30 minutes recorded ea92880, code it never ran
    store.git_commit()
    out = outdir.writable_dir(config.out)
    with outdir.DirLock(out, "verify run"):
        return _run_locked(config, progress, out, catalog, claims, base)


def _run_locked(config: RunConfig, progress, out: Path, catalog, claims, base) -> RunResult:
    order = [c.id for c in claims]
    by_id = {c.id: c for c in claims}
    if not config.resume:
        moved = outdir.set_aside(out)
        if moved:
            progress.note(f"the earlier run's {', '.join(moved)} moved to {out / outdir.PREVIOUS}")

    with store.ResultStore(out) as results, open_executor(config.executor, config.jobs) as handle:
        kept = [r for r in results.open(resume=config.resume) if r.get("claim") in by_id]
        _check_resumable(kept, config, out)
        kept = list({r["claim"]: r for r in kept}.values())
        done_ids = {r["claim"] for r in kept}
        todo = sorted((c for c in claims if c.id not in done_ids), key=lambda c: -c.cost)
        tasks = [Task(c.id, config.profile, config.seed, catalog.modules,
                      timeout=time_limit(c, config.profile, config.claim_timeout)) for c in todo]
        records = list(kept)
        progress.start(len(tasks), skipped=len(kept), title=f"verify run --profile {config.profile}: ")
        if tasks and get_profile(config.profile).notice:
            progress.note(get_profile(config.profile).notice)
        if not handle.limits:
            progress.note(f"note: {handle.name} cannot stop a running task; claims' time limits are not enforced")

        def on_done(task: Task, v: dict) -> None:
            claim = by_id[task.claim]
            cx_file = None
            if v.get("counterexample"):
                path = _cx_path(out, claim.id)
                cx_file = str(path.relative_to(out))
                rec = make_record(claim, task, v, cx_file=cx_file)
                store.write_json(path, counterexample_doc(rec, path))
            else:
                rec = make_record(claim, task, v)
            results.append(rec)
            records.append(rec)
            progress.done(rec)

        try:
            drive(tasks, handle, on_done)
        except KeyboardInterrupt:
            progress.note(f"interrupted: {len(records)} of {len(claims)} claims are in {results.path}; "
                          f"finish with --resume")
            raise
        progress.finish()

        regs = store.regressions(base, records) if base is not None else []
        summary = store.build_summary(records, order, _settings(config, catalog), regressions=regs,
                                      baseline=str(config.baseline) if config.baseline is not None else None)
        files = {"results": out / store.RESULTS, "summary": store.write_json(out / store.SUMMARY, summary)}
        if config.figures:
            from verify import figure_data
            try:
                files["figure_data"] = figure_data.ensure(
                    out / "figures" / "data", names=figure_data.figures_for(order), progress=progress,
                    executor=handle.executor if config.jobs > 1 or config.executor != "local" else None)
            except BaseException:
                handle.terminate()
                raise
    if config.report:
        from reports import render
        files.update(render.render_dir(out, figures=config.figures))
    t = summary["totals"]
    code = 0 if t["not_met"] == 0 and not regs else 1
    return RunResult(summary, code, ran=len(tasks), kept=len(kept), files=files)


# ----- ablations -----------------------------------------------------------------------------------------------
def ablate(claim_id: str, *, profile: str = "quick", seed: int = 0, modules: Sequence[str] = (),
           out: Path = DEFAULT_OUT, jobs: int = 1, executor: str = "local", progress=None,
           report: bool = True, claim_timeout: float | None = None) -> dict:
    """Rerun a theorem claim once per named hypothesis dropped; writes ``DIR/ablations/ID.json``.

    A dropped hypothesis is *shown necessary* when the claim is then violated (a counterexample is stored under
    ``counterexamples/``); otherwise the table gives how many examples were tried without finding one.
    """
    if profile not in PROFILES:
        raise InvalidInput(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    progress = progress or NoProgress()
    catalog = discovery.load(modules)
    claim = catalog.get(claim_id)
    if not claim.hypotheses:
        raise InvalidInput(f"claim {claim_id!r} names no hypotheses to drop")
    if claim.expectation.value != "holds" or claim.dropped:
        raise InvalidInput(f"claim {claim_id!r} is not a theorem (expected {claim.expectation.value!r}"
                           f"{', already ablated' if claim.dropped else ''}); ablate the theorem it comes from")
    out = outdir.writable_dir(out)
    with outdir.DirLock(out, f"verify ablate {claim.id}"):
        return _ablate_locked(claim, catalog, profile, seed, out, jobs, executor, progress, report, claim_timeout)


def _ablate_locked(claim: Claim, catalog, profile: str, seed: int, out: Path, jobs: int, executor: str, progress,
                   report: bool, claim_timeout: float | None) -> dict:
    tasks = [Task(claim.id, profile, seed, catalog.modules, (h.name,),
                  timeout=time_limit(claim, profile, claim_timeout)) for h in claim.hypotheses]
    rows: dict[str, dict] = {}
    progress.start(len(tasks), title=f"verify ablate {claim.id}: ")

    def on_done(task: Task, v: dict) -> None:
        ab = discovery.ablated(claim, task.dropped)
        cx_file = None
        if v.get("counterexample"):
            path = _cx_path(out, ab.id)
            cx_file = str(path.relative_to(out))
            rec = make_record(ab, task, v, cx_file=cx_file)
            store.write_json(path, counterexample_doc(rec, path))
        else:
            rec = make_record(ab, task, v)
        rec["ablation"] = True
        rows[task.dropped[0]] = rec
        progress.done(rec)

    with open_executor(executor, jobs) as handle:
        drive(tasks, handle, on_done)
    progress.finish()
    table = []
    for h in claim.hypotheses:
        rec = rows[h.name]
        table.append({
            "hypothesis": h.name,
            "text": h.text,
            "verdict": rec["verdict"],
            "necessary": rec["verdict"] == "violated",
            "examples": rec["examples"],
            "counterexample_file": rec["counterexample_file"],
            "record": rec,
        })
    doc = {
        "schema_version": SCHEMA_VERSION,
        "claim": claim.id,
        "title": claim.title,
        "source": claim.source,
        "profile": profile,
        "seed": seed,
        "claims_modules": list(catalog.modules),
        **environment(),
        "hypotheses": table,
    }
    path = store.write_json(out / ABLATIONS_DIR / f"{claim.id}.json", doc)
    if report and (out / store.SUMMARY).exists():
        from reports import render
        render.render_dir(out, figures=False)  # the figures already drawn stay; nothing to redraw
    doc["file"] = str(path)
    return doc
