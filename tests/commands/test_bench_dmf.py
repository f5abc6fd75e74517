"""``verify bench --only dmf-fast``: the ACHL19 kernel against the torch autograd loop, and its --device option."""

from __future__ import annotations

import math

import torch

from models.engines.bench_dmf import bench_dmf_fast
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
