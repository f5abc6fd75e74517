"""Claims' time limits on a dask.distributed cluster (``verify run --executor dask://HOST:PORT``).

A dask worker runs tasks in threads, and a thread cannot be stopped, so a claim that hangs would hold a worker
thread (and, with one thread, the whole run) for ever. The limit is therefore enforced in two places:

1. **On the worker** (:func:`call_limited`): the task runs in a fresh child interpreter started by the worker
   (``subprocess``, which a daemonic dask worker process may start, unlike ``multiprocessing``); the clock starts
   when the child has unpickled the task (starting the interpreter, about 1-3 s, is not counted); past the
   limit the child is killed (SIGKILL) and the task fails with :class:`~verify.workers.TaskTimeout`, which the
   runner records as ``error`` with reason ``timeout``. The worker thread is free again at once. The claim's
   output goes to the worker's stderr; its answer comes back on a private pipe.
2. **On the client** (:class:`LimitedExecutor`), as a backstop for a worker that stops answering (it was
   paused, lost its connection, or its child could not start): a task that has not answered ``grace(limit)``
   seconds after it was submitted is recorded as ``error`` with reason ``timeout`` and its dask future is
   cancelled, so the run ends. dask cannot stop a task that is already running on a worker thread: in that
   (rare) case the worker thread is only released when its child ends. The runner keeps no more tasks in flight
   than the cluster has threads, so a task starts when it is submitted and queueing is not counted against it.
"""

from __future__ import annotations

import base64
import os
import pickle
import select
import subprocess
import sys
import threading
import time
from concurrent.futures import Executor, Future
from typing import Callable

from verify.workers import TaskTimeout, WorkerDied

#: Seconds a child interpreter may take to start and unpickle its task before it counts as dead.
STARTUP_LIMIT = 300.0

_CHILD = "from verify.dask_limits import child_main; child_main()"


def grace(seconds: float) -> float:
    """How long the client waits for a task with limit ``seconds`` before recording it as a timeout itself:
    the limit plus the child's start (up to :data:`STARTUP_LIMIT`) plus the trip to the worker and back."""
    return float(seconds) + STARTUP_LIMIT + 30.0


def child_main() -> None:
    """The child interpreter: read the task from argv, run it, answer on the private pipe (fd given in argv)."""
    out = os.fdopen(int(sys.argv[2]), "wb", buffering=0)
    os.dup2(2, 1)  # whatever the claim prints goes to stderr, never into the answer
    fn, args, kwargs, context = pickle.loads(base64.b64decode(sys.argv[1]))
    sys.path[:] = context["path"] + [p for p in sys.path if p not in context["path"]]
    out.write(b"S")  # started: the clock starts now
    try:
        answer = ("ok", fn(*args, **kwargs))
    except KeyboardInterrupt:
        answer = ("error", WorkerDied("the task raised KeyboardInterrupt"))
    except BaseException as exc:  # noqa: BLE001 -- delivered to the caller
        answer = ("error", exc)
    try:
        data = pickle.dumps(answer)
    except Exception as exc:  # noqa: BLE001 -- an unpicklable result or exception
        data = pickle.dumps(("error", RuntimeError(f"the task's answer does not pickle: {type(exc).__name__}: "
                                                   f"{exc}")))
    out.write(data)
    out.close()


def _read(fd: int, n: int, deadline: float) -> bytes | None:
    """Up to ``n`` bytes from ``fd`` (b"" at EOF), or None when ``deadline`` passes first."""
    left = deadline - time.monotonic()
    if left <= 0:
        return None
    ready, _, _ = select.select([fd], [], [], left)
    return os.read(fd, n) if ready else None


def call_limited(seconds: float | None, fn: Callable, /, *args, **kwargs):
    """``fn(*args, **kwargs)`` in a child interpreter, killed past ``seconds`` (None: no limit) counted from when
    it has started; raises :class:`TaskTimeout` then, :class:`WorkerDied` when the child dies without answering,
    and whatever ``fn`` raised otherwise."""
    context = {"path": list(sys.path)}  # the environment and working directory are inherited
    payload = base64.b64encode(pickle.dumps((fn, args, kwargs, context))).decode()
    rfd, wfd = os.pipe()
    try:
        proc = subprocess.Popen([sys.executable, "-c", _CHILD, payload, str(wfd)], pass_fds=(wfd,),
                                stdin=subprocess.DEVNULL, stdout=sys.stderr.fileno() if _has_fd() else None)
    except BaseException:
        os.close(rfd)
        os.close(wfd)
        raise
    os.close(wfd)
    chunks: list[bytes] = []
    try:
        first = _read(rfd, 1, time.monotonic() + STARTUP_LIMIT)
        if first is None:
            raise WorkerDied(f"the child interpreter did not start the task within {STARTUP_LIMIT:g} s")
        if first == b"S":
            deadline = time.monotonic() + float(seconds) if seconds is not None else float("inf")
            while True:
                chunk = _read(rfd, 1 << 16, deadline) if seconds is not None else os.read(rfd, 1 << 16)
                if chunk is None:
                    raise TaskTimeout(float(seconds))
                if not chunk:
                    break
                chunks.append(chunk)
    finally:
        os.close(rfd)
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    if not chunks:
        raise WorkerDied(f"the child process exited (code {proc.returncode}) while running the task")
    kind, value = pickle.loads(b"".join(chunks))
    if kind == "ok":
        return value
    raise value


def _has_fd() -> bool:
    try:
        sys.stderr.fileno()
        return True
    except (AttributeError, OSError, ValueError):
        return False


class LimitedExecutor(Executor):
    """An executor (a dask ``ClientExecutor``) whose ``submit_limited`` enforces time limits (module docstring);
    ``submit`` and ``map`` pass through."""

    def __init__(self, inner: Executor, *, backstop: Callable[[float], float] = grace):
        self.inner = inner
        self.backstop = backstop
        self._timers: set[threading.Timer] = set()
        self._lock = threading.Lock()

    def submit(self, fn: Callable, /, *args, **kwargs) -> Future:
        return self.inner.submit(fn, *args, **kwargs)

    def map(self, fn: Callable, *iterables, **kwargs):
        return self.inner.map(fn, *iterables, **kwargs)

    def submit_limited(self, seconds: float | None, fn: Callable, /, *args, **kwargs) -> Future:
        inner = self.inner.submit(call_limited, seconds, fn, *args, **kwargs)
        if seconds is None:
            return inner
        proxy: Future = Future()
        lock = threading.Lock()

        def settle(setter, value) -> None:
            with lock:
                if proxy.done() or not proxy.set_running_or_notify_cancel():
                    return
                setter(value)

        def on_inner(f: Future) -> None:
            if f.cancelled():
                settle(proxy.set_exception, WorkerDied("the task was cancelled on the cluster"))
                return
            exc = f.exception()
            settle(proxy.set_exception, exc) if exc is not None else settle(proxy.set_result, f.result())

        def on_backstop() -> None:
            with self._lock:
                self._timers.discard(timer)
            if not inner.done():
                settle(proxy.set_exception, TaskTimeout(float(seconds)))
                inner.cancel()

        def on_proxy(p: Future) -> None:
            timer.cancel()
            if p.cancelled():
                inner.cancel()

        timer = threading.Timer(self.backstop(float(seconds)), on_backstop)
        timer.daemon = True
        with self._lock:
            self._timers.add(timer)
        timer.start()
        proxy.add_done_callback(on_proxy)
        inner.add_done_callback(on_inner)
        return proxy

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            timers, self._timers = list(self._timers), set()
        for t in timers:
            t.cancel()
        self.inner.shutdown(wait=wait)


__all__ = ["LimitedExecutor", "STARTUP_LIMIT", "call_limited", "child_main", "grace"]
