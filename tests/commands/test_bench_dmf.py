"""``verify bench --only dmf-fast``: the ACHL19 kernel against the torch autograd loop, and its --device option."""

from __future__ import annotations

import math

import torch

from verify.bench.dmf import autograd_loop, bench_dmf_fast
from verify.cli import main


def test_dmf_fast_rows_are_measured_side_by_side():
    (row,) = bench_dmf_fast(batches=(1,), observed=(2000,), seconds=0.05, device="cpu")
    assert row["B"] == 1 and row["m"] == 2000 and row["device"] == "cpu" and row["torch_threads"] == 1
    assert row["steps_per_s"] > 0 and row["naive_steps_per_s"] > 0
    assert math.isclose(row["ratio"], row["steps_per_s"] / row["naive_steps_per_s"], rel_tol=1e-12)


def test_device_cuda_without_cuda_exits_2_before_measuring(capsys):
    code = main(["bench", "--only", "dmf-fast", "--device", "cuda", "--seconds", "0.05"])
    err = capsys.readouterr().err
    if torch.cuda.is_available():
        assert code == 0
    else:
        assert code == 2 and err.count("\n") == 1 and "CUDA" in err


def test_the_naive_loop_follows_the_same_gd_path():
    """The bench compares like with like: the autograd loop and the kernel take the same steps."""
    import numpy as np

    from models.engines.dmf_fast import run_dmf_gd
    from models.generators import random_completion

    problem, _ = random_completion((12, 10), rank=2, m=50, seed=0, reduction="mean")
    rng = np.random.default_rng(1)
    fs = [0.4 * rng.standard_normal((2, 10, 10)), 0.4 * rng.standard_normal((2, 10, 10)),
          0.4 * rng.standard_normal((2, 12, 10))]
    naive = autograd_loop(problem, fs, 0.3, 10, "cpu")
    ours = run_dmf_gd(problem, fs, lr=0.3, steps=10, device="cpu").factors
    for a, b in zip(ours, naive):
        assert np.linalg.norm(a - b) <= 1e-12 * np.linalg.norm(b)
    assert np.linalg.norm(naive[0] - fs[0]) > 1e-3 * np.linalg.norm(fs[0])
