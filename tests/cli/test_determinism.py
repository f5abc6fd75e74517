"""The same seed gives the same summary (timings aside), whatever the executor and job count."""

from __future__ import annotations

import json

import pytest

from cli_helpers import read_summary, without_timings

SELECTION = ("toy.holds", "toy.violated", "toy.refuted", "toy.theorem", "toy.markup")


def _comparable(out):
    s = without_timings(read_summary(out))
    cxs = {p.name: without_timings(json.loads(p.read_text())) for p in sorted((out / "counterexamples").glob("*"))}
    for doc in cxs.values():
        doc.pop("command")  # names the directory
    return s, cxs


def test_same_seed_same_summary(run_toy, tmp_path):
    _, _, _, a = run_toy(*SELECTION, "--seed", "5", out=tmp_path / "a")
    _, _, _, b = run_toy(*SELECTION, "--seed", "5", out=tmp_path / "b")
    assert _comparable(a) == _comparable(b)
    _, _, _, c = run_toy(*SELECTION, "--seed", "6", out=tmp_path / "c")
    assert without_timings(read_summary(c))["seed"] == 6


def test_process_pool_gives_the_same_summary(run_toy, tmp_path):
    _, _, _, serial = run_toy(*SELECTION, out=tmp_path / "serial")
    code, out, err, pool = run_toy(*SELECTION, "--jobs", "2", out=tmp_path / "pool")
    assert code == 1, out + err
    assert _comparable(pool) == _comparable(serial)


def test_a_worker_error_is_an_error_verdict_in_the_pool(run_toy, tmp_path):
    from cli_helpers import TOY_ERRORS
    code, out, err, d = run_toy("--jobs", "2", claims=TOY_ERRORS)
    recs = {r["claim"]: r for r in read_summary(d)["claims"]}
    assert code == 1 and recs["toyerr.raises"]["verdict"] == "error" and recs["toyerr.fine"]["met"]


def test_dask_executor_gives_the_same_summary(run_toy, tmp_path):
    """A local dask.distributed cluster (one worker process, two threads) gives the serial run's summary."""
    distributed = pytest.importorskip(
        "distributed", reason="dask.distributed is not installed (optional extra: pip install '.[dask]')")
    LocalCluster = distributed.LocalCluster

    _, _, _, serial = run_toy(*SELECTION, out=tmp_path / "serial")
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=True, dashboard_address=None) as cluster:
        address = cluster.scheduler_address.replace("tcp://", "dask://")
        code, out, err, d = run_toy(*SELECTION, "--executor", address, out=tmp_path / "dask")
    assert code == 1, out + err
    assert _comparable(d) == _comparable(serial)


def test_unreachable_dask_scheduler_is_bad_input(run_toy, monkeypatch):
    pytest.importorskip("distributed", reason="dask.distributed is not installed (optional extra)")
    monkeypatch.setenv("VERIFY_DASK_TIMEOUT", "1")
    code, out, err, d = run_toy("toy.holds", "--executor", "dask://127.0.0.1:9")
    assert code == 2 and "cannot reach the dask scheduler" in err


def test_modules_imported_earlier_do_not_change_the_examples(run_toy, tmp_path, monkeypatch):
    """Hypothesis draws literals from every local module in ``sys.modules``; the runner pins that pool, so what the
    process imported before (a report, a user's module) does not change the examples, verdicts or counterexamples."""
    import importlib
    import sys

    _, _, _, before = run_toy(*SELECTION, out=tmp_path / "before")
    lib = tmp_path / "lib"
    lib.mkdir()
    literals = ", ".join(repr(k / 64) for k in range(65))
    (lib / "verify_constants_mod.py").write_text(f"VALUES = [{literals}]\n")
    monkeypatch.syspath_prepend(str(lib))
    importlib.import_module("verify_constants_mod")
    try:
        _, _, _, after = run_toy(*SELECTION, out=tmp_path / "after")
    finally:
        sys.modules.pop("verify_constants_mod", None)
    assert _comparable(after) == _comparable(before)
