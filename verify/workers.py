"""A pool of worker processes whose tasks have time limits: a task past its limit is killed with its worker.

``concurrent.futures.ProcessPoolExecutor`` cannot stop one running task, so a check that hangs (a ``while True``
in a user claim, a solver that never returns) would hold a worker for ever and, with ``--jobs 1``, every later
claim. :class:`KillablePool` keeps ``jobs`` worker processes, each running one task at a time and reused across
tasks. Workers come from a ``forkserver`` (torch and threaded BLAS do not survive a plain ``fork`` of a busy
parent) that has imported ``preload`` (default: the runner and the driver, with the claims and engines) once, so
a worker starts in milliseconds rather than the seconds of a fresh interpreter (``spawn`` where there is no
forkserver). Each task carries the parent's environment variables, ``sys.path`` and working directory as they
are when it is submitted, and the worker adopts them before running it. :meth:`KillablePool.submit_limited` gives a task a limit in seconds: past it, the
worker is killed (SIGKILL, which no Python or C code can ignore), the future fails with :class:`TaskTimeout` (the
clock starts when the worker has received and unpickled the task: starting a worker is not counted),
and a fresh worker takes the next task. A worker that dies (a segfault, the OOM killer) fails its task with
:class:`WorkerDied`; a ``KeyboardInterrupt`` raised by a task is re-raised in the parent, as if it ran there.

It is a ``concurrent.futures.Executor`` (``submit`` and ``map`` without limits), so figure computations and
claims share one pool.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import sys
import threading
import time
from concurrent.futures import Executor, Future
from typing import Callable


class TaskTimeout(Exception):
    """A task ran past its time limit and was killed with its worker."""

    def __init__(self, seconds: float):
        super().__init__(f"ran past its time limit of {seconds:g} s and was stopped")
        self.seconds = seconds

    def __reduce__(self):  # pickled with its seconds (a dask worker sends it back to the client)
        return (TaskTimeout, (self.seconds,))


class WorkerDied(Exception):
    """The worker process running a task exited without answering."""


def _context_now() -> dict:
    return {"env": dict(os.environ), "path": list(sys.path), "cwd": os.getcwd()}


def _adopt(context: dict) -> None:
    if os.environ != context["env"]:
        os.environ.clear()
        os.environ.update(context["env"])
    sys.path[:] = context["path"]
    if os.getcwd() != context["cwd"]:
        os.chdir(context["cwd"])


def _worker_main(conn, initializer) -> None:
    if initializer is not None:
        initializer()
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        except Exception as exc:  # noqa: BLE001 -- a task that does not unpickle here (a module that fails to import)
            conn.send(("start", None))
            conn.send(("error", exc))
            continue
        if msg is None:
            return
        fn, args, kwargs, context = msg
        _adopt(context)
        conn.send(("start", None))  # the task's clock starts now, not while the worker was starting
        try:
            out = ("ok", fn(*args, **kwargs))
        except KeyboardInterrupt:
            out = ("interrupt", None)
        except BaseException as exc:  # noqa: BLE001 -- delivered through the future
            out = ("error", exc)
        try:
            conn.send(out)
        except Exception as exc:  # noqa: BLE001 -- an unpicklable result or exception
            conn.send(("error", RuntimeError(f"the worker could not send its answer back: "
                                             f"{type(exc).__name__}: {exc}")))


def ignore_sigint() -> None:
    """Workers leave Ctrl-C to the parent, which stops them."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class _Worker:
    def __init__(self, ctx, initializer):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, initializer), daemon=True)
        self.proc.start()
        child.close()

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(timeout=10)
        self.conn.close()

    def stop(self) -> None:
        try:
            self.conn.send(None)
        except OSError:
            pass
        self.proc.join(timeout=10)
        self.kill()


PRELOAD = ("verify.runner", "verify.driver")


def _context(preload: tuple[str, ...]):
    if "forkserver" not in multiprocessing.get_all_start_methods():  # pragma: no cover -- not POSIX
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(list(preload))  # used when the forkserver starts (once per parent process)
    return ctx


class KillablePool(Executor):
    """``jobs`` reusable worker processes; see the module docstring."""

    POLL = 0.2  # seconds between checks for shutdown while a task runs

    def __init__(self, jobs: int = 1, *, initializer: Callable[[], None] | None = ignore_sigint, mp_context=None,
                 preload: tuple[str, ...] = PRELOAD):
        self._ctx = mp_context or _context(preload)
        self._initializer = initializer
        self._tasks: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._workers: set[_Worker] = set()
        self._closed = False
        self._stopping = False
        self._threads = [threading.Thread(target=self._serve, name=f"verify-worker-{i}", daemon=True)
                         for i in range(jobs)]
        for t in self._threads:
            t.start()

    # ----- the Executor API ------------------------------------------------------------------------------------
    def submit(self, fn: Callable, /, *args, **kwargs) -> Future:
        return self.submit_limited(None, fn, *args, **kwargs)

    def submit_limited(self, seconds: float | None, fn: Callable, /, *args, **kwargs) -> Future:
        """Like ``submit``; past ``seconds`` (None: no limit) the task is killed and fails with TaskTimeout."""
        if self._closed:
            raise RuntimeError("cannot submit to a pool that was shut down")
        fut: Future = Future()
        self._tasks.put((fut, fn, args, kwargs, seconds))
        return fut

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if cancel_futures:
            self._cancel_queued()
        if not self._closed:
            self._closed = True
            for _ in self._threads:
                self._tasks.put(None)
        if wait:
            for t in self._threads:
                t.join()

    def terminate(self) -> None:
        """Stop at once: queued tasks are cancelled and every worker is killed."""
        self._stopping = True
        self._cancel_queued()
        with self._lock:
            workers = list(self._workers)
        for w in workers:
            w.kill()
        self.shutdown(wait=False)

    # ----- internals -------------------------------------------------------------------------------------------
    def _cancel_queued(self) -> None:
        while True:
            try:
                item = self._tasks.get_nowait()
            except queue.Empty:
                return
            if item is None:
                self._tasks.put(None)
                return
            item[0].cancel()

    def _start(self) -> _Worker:
        w = _Worker(self._ctx, self._initializer)
        with self._lock:
            self._workers.add(w)
        return w

    def _drop(self, w: _Worker, *, kill: bool) -> None:
        with self._lock:
            self._workers.discard(w)
        w.kill() if kill else w.stop()

    def _serve(self) -> None:
        worker: _Worker | None = None
        try:
            while True:
                item = self._tasks.get()
                if item is None:
                    return
                fut, fn, args, kwargs, seconds = item
                if not fut.set_running_or_notify_cancel():
                    continue
                if self._stopping:
                    fut.set_exception(WorkerDied("the pool was stopped"))
                    continue
                if worker is None or not worker.proc.is_alive():
                    worker = self._start()
                ok = self._one(worker, fut, fn, args, kwargs, seconds)
                if not ok:
                    self._drop(worker, kill=True)
                    worker = None
        finally:
            if worker is not None:
                self._drop(worker, kill=self._stopping)

    def _one(self, w: _Worker, fut: Future, fn, args, kwargs, seconds) -> bool:
        """Run one task on ``w``; False when the worker must be replaced."""
        try:
            w.conn.send((fn, args, kwargs, _context_now()))
        except Exception as exc:  # noqa: BLE001 -- unpicklable task, or a worker that already died
            if isinstance(exc, OSError):
                fut.set_exception(WorkerDied(f"cannot reach the worker: {exc}"))
                return False
            fut.set_exception(exc)  # pickling fails before anything is written: the worker is still usable
            return True
        deadline = None  # set when the worker says it started the task
        while True:
            wait = self.POLL if deadline is None else max(0.0, min(self.POLL, deadline - time.monotonic()))
            try:
                ready = w.conn.poll(wait)
            except (OSError, EOFError):
                ready = True
            if ready:
                try:
                    kind, payload = w.conn.recv()
                except (EOFError, OSError):
                    w.proc.join(timeout=5)  # the pipe closes just before the process is reaped
                    code = w.proc.exitcode
                    why = "the pool was stopped" if self._stopping else \
                        f"the worker process exited (code {code}) while running the task"
                    fut.set_exception(WorkerDied(why))
                    return False
                if kind == "start":
                    if seconds is not None:
                        deadline = time.monotonic() + float(seconds)
                    continue
                if kind == "ok":
                    fut.set_result(payload)
                elif kind == "interrupt":
                    fut.set_exception(KeyboardInterrupt())
                else:
                    fut.set_exception(payload)
                return True
            if self._stopping:
                fut.set_exception(WorkerDied("the pool was stopped"))
                return False
            if deadline is not None and time.monotonic() >= deadline:
                fut.set_exception(TaskTimeout(float(seconds)))
                return False


__all__ = ["KillablePool", "TaskTimeout", "WorkerDied", "ignore_sigint"]
