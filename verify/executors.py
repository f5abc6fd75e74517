"""Where tasks run, behind the ``concurrent.futures.Executor`` seam (style notes 5.5).

``--executor local`` runs tasks in a :class:`~verify.workers.KillablePool` of ``--jobs`` spawned worker processes
(one with ``--jobs 1``), so that a claim past its time limit can be killed without stopping the run;
``--executor dask://HOST:PORT`` on a dask.distributed cluster through
``Client(address).get_executor()``, an optional extra (``pip install 'implicit-reg-verify[dask]'``).

Tasks are small picklable records and workers return plain dicts, so every executor runs the same code; the
runner alone writes results. :func:`open_executor` yields an :class:`ExecutorHandle` with the executor, how many
tasks to keep in flight, a ``terminate`` that stops workers on Ctrl-C, and whether the executor enforces time
limits (``limits``, through ``submit_limited``: local pools kill the worker; on dask each claim runs in a child
process of the dask worker, killed past its limit, with a client-side backstop: :mod:`verify.dask_limits`).
:class:`SerialExecutor` (in this process, no limits) remains for callers that want it.
"""

from __future__ import annotations

import os
from concurrent.futures import Executor, Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator

from models.errors import InvalidInput
from verify.dask_limits import LimitedExecutor
from verify.workers import KillablePool

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


@dataclass
class ExecutorHandle:
    """An open executor: ``window`` tasks are kept in flight; ``terminate()`` stops running work."""

    executor: Executor
    name: str
    window: int
    terminate: Callable[[], None] = field(default=lambda: None)
    limits: bool = False


def parse(spec: str) -> str:
    """Validate an ``--executor`` value: ``local`` or ``dask://HOST:PORT`` (``tcp://``/``tls://`` also accepted)."""
    if spec == "local":
        return spec
    for prefix in ("dask://", "tcp://", "tls://"):
        if spec.startswith(prefix) and len(spec) > len(prefix):
            return spec
    raise InvalidInput(f"--executor must be 'local' or 'dask://HOST:PORT', got {spec!r}")


@contextmanager
def open_executor(spec: str = "local", jobs: int = 1) -> Iterator[ExecutorHandle]:
    """Open the executor named by ``spec`` for ``jobs`` local workers (see the module docstring)."""
    spec = parse(spec)
    if jobs < 1:
        raise InvalidInput(f"--jobs must be >= 1, got {jobs!r}")
    if spec == "local":
        pool = KillablePool(jobs)
        try:
            yield ExecutorHandle(pool, f"local x{jobs}", jobs, pool.terminate, limits=True)
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
        executor = LimitedExecutor(client.get_executor(pure=False))

        def terminate() -> None:
            executor.shutdown(wait=False)

        # no more tasks in flight than threads: a task starts when it is submitted (its limit's backstop counts
        # from then)
        yield ExecutorHandle(executor, f"dask {address}", threads, terminate, limits=True)
        executor.shutdown(wait=True)
    finally:
        client.close()
