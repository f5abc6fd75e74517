"""Claims' time limits on dask (``--executor dask://``): a hung claim is stopped on the worker and recorded as
``error`` with reason ``timeout``; the run goes on and ends (issue 15)."""

from __future__ import annotations

import time
from concurrent.futures import Executor, Future

import pytest

from cli_helpers import TOY_FAULTS, read_summary
from verify.dask_limits import LimitedExecutor, call_limited
from verify.workers import TaskTimeout


def test_a_hanging_claim_on_a_one_thread_dask_worker_ends_as_error_timeout(run_toy, tmp_path):
    distributed = pytest.importorskip(
        "distributed", reason="dask.distributed is not installed (optional extra: pip install '.[dask]')")
    # toyfault.hang spins in pure Python for ever (no thread can stop it) and declares timeout=1.0; with one
    # worker thread, toyfault.after can only run once the hung claim's thread is free again
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        address = cluster.scheduler_address.replace("tcp://", "dask://")
        code, out, err, d = run_toy("toyfault.hang", "toyfault.after", "--executor", address, claims=TOY_FAULTS)
    assert code == 1, out + err
    recs = {r["claim"]: r for r in read_summary(d)["claims"]}
    hang = recs["toyfault.hang"]
    assert hang["verdict"] == "error" and hang["reason"] == "timeout" and hang["seconds"] == 1.0, hang
    assert recs["toyfault.after"]["verdict"] == "holds" and recs["toyfault.after"]["examples"] > 0
    assert "not met: toyfault.hang: error (timeout after 1 s) (expected holds)" in out
    assert "time limits are not enforced" not in out


def test_call_limited_kills_the_child_past_its_limit_and_passes_answers_and_errors():
    with pytest.raises(TaskTimeout) as info:
        call_limited(0.5, time.sleep, 60)
    assert info.value.seconds == 0.5
    assert call_limited(None, pow, 2, 10) == 1024
    with pytest.raises(ZeroDivisionError):
        call_limited(5.0, divmod, 1, 0)


class _NeverAnswers(Executor):
    """A cluster whose worker stopped answering: futures that never finish (they can be cancelled)."""

    def __init__(self):
        self.futures = []

    def submit(self, fn, /, *args, **kwargs):
        f = Future()
        self.futures.append(f)
        return f


def test_the_client_backstop_records_a_timeout_when_the_worker_stops_answering():
    inner = _NeverAnswers()
    ex = LimitedExecutor(inner, backstop=lambda s: s + 0.2)
    fut = ex.submit_limited(0.1, time.sleep, 60)
    with pytest.raises(TaskTimeout) as info:
        fut.result(timeout=30)
    assert info.value.seconds == 0.1
    assert inner.futures[0].cancelled()       # the dask future is cancelled, not left running
    answered = ex.submit_limited(0.1, pow, 2, 3)
    inner.futures[1].set_result(8)
    assert answered.result(timeout=5) == 8
    ex.shutdown(wait=False)
