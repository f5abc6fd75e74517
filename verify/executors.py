"""Where tasks run, behind the ``concurrent.futures.Executor`` seam (style notes 5.5).

``--executor local`` with ``--jobs 1`` runs tasks in this process, one at a time (:class:`SerialExecutor`);
``--jobs N`` in a :class:`~concurrent.futures.ProcessPoolExecutor` of N spawned workers (torch and threaded BLAS do
not survive ``fork``); ``--executor dask://HOST:PORT`` on a dask.distributed cluster through
``Client(address).get_executor()``, an optional extra (``pip install 'implicit-reg-verify[dask]'``).

Tasks are small picklable records and workers return plain dicts, so every executor runs the same code; the
runner alone writes results. :func:`open_executor` yields an :class:`ExecutorHandle` with the executor, how many
tasks to keep in flight, and a ``terminate`` that stops workers on Ctrl-C.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator

from models.errors import InvalidInput

DASK_EXTRA = "pip install 'implicit-reg-verify[dask]' (or pip install distributed)"


class SerialExecutor(Executor):
    """Runs each task in the calling process when it is submitted. ``KeyboardInterrupt`` propagates at once."""

    def submit(self, fn: Callable, /, *args, **kwargs) -> Future:
        fut: Future = Future()
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 -- delivered through the future like any executor
            fut.set_exception(exc)
        else:
            fut.set_result(result)
        return fut


def _ignore_sigint() -> None:
    """Pool workers leave Ctrl-C to the parent, which cancels and terminates them."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@dataclass
class ExecutorHandle:
    """An open executor: ``window`` tasks are kept in flight; ``terminate()`` stops running work."""

    executor: Executor
    name: str
    window: int
    terminate: Callable[[], None] = field(default=lambda: None)


def parse(spec: str) -> str:
    """Validate an ``--executor`` value: ``local`` or ``dask://HOST:PORT`` (``tcp://``/``tls://`` also accepted)."""
    if spec == "local":
        return spec
    for prefix in ("dask://", "tcp://", "tls://"):
        if spec.startswith(prefix) and len(spec) > len(prefix):
            return spec
    raise InvalidInput(f"--executor must be 'local' or 'dask://HOST:PORT', got {spec!r}")


def _mp_context():
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


@contextmanager
def open_executor(spec: str = "local", jobs: int = 1) -> Iterator[ExecutorHandle]:
    """Open the executor named by ``spec`` for ``jobs`` local workers (see the module docstring)."""
    spec = parse(spec)
    if jobs < 1:
        raise InvalidInput(f"--jobs must be >= 1, got {jobs!r}")
    if spec == "local":
        if jobs == 1:
            yield ExecutorHandle(SerialExecutor(), "local", 1)
            return
        pool = ProcessPoolExecutor(max_workers=jobs, mp_context=_mp_context(), initializer=_ignore_sigint)

        def terminate() -> None:
            procs = list(getattr(pool, "_processes", {}).values())  # no public API before Python 3.14
            pool.shutdown(wait=False, cancel_futures=True)
            for p in procs:
                if p.is_alive():
                    p.terminate()
            for p in procs:
                p.join(timeout=5)

        try:
            yield ExecutorHandle(pool, f"local x{jobs}", jobs, terminate)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return
    yield from _dask(spec)


def _dask(spec: str) -> Iterator[ExecutorHandle]:
    try:
        from distributed import Client
    except ImportError:
        raise InvalidInput(f"--executor {spec} needs dask.distributed, an optional extra: {DASK_EXTRA}") from None
    address = "tcp://" + spec[len("dask://"):] if spec.startswith("dask://") else spec
    try:
        client = Client(address, timeout=float(os.environ.get("VERIFY_DASK_TIMEOUT", "20")), set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise InvalidInput(f"cannot reach the dask scheduler at {address}: {exc}") from None
    try:
        threads = sum(client.nthreads().values()) or 1
        executor = client.get_executor(pure=False)

        def terminate() -> None:
            executor.shutdown(wait=False)

        yield ExecutorHandle(executor, f"dask {address}", 2 * threads, terminate)
        executor.shutdown(wait=True)
    finally:
        client.close()
