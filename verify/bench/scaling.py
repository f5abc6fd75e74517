"""``verify bench`` workloads of issue 12 that compare ``gd`` with what a user would otherwise run.

- :func:`bench_gd_dmf`: depth-3 100x100 matrix completion (the ACHL19 generator, rank 5, 2,000 and 5,000
  observed entries, ``mean`` reduction) at B = 1 and B = 64 with ``gd`` (gather/scatter of the observed entries,
  fused update) against the torch autograd loop a user would write (``torch.optim.SGD`` on
  ``((W3 W2 W1)[observed] - y)^2``, :func:`verify.bench.gd.autograd_gd_reference`), both in float64, as
  trajectory-steps per second and their ratio. Each rate is *marginal*: the time of ``3k`` steps minus that of
  ``k`` steps, so that setup and recording (kernel construction, det signs of the records) do not count for
  either side.
- :data:`OFFICIAL_TRAINERS`: the official trainers' throughput as stated in issue 12 (measured by the issue's
  author on this 2-core machine): RC20 DMF 2,000-2,800 epochs/s, RC20 tensor (order 4) ~80 epochs/s. One epoch
  of these full-batch trainers is one GD step of one model (B = 1). :func:`official_ratios` sets each ``gd``
  row of the same workload next to them.

Why ``gd`` is not always 5x the autograd loop on 100x100: a step of either is six dense products of 100x100
matrices per member (two forward, four backward), ~0.2 ms of BLAS per member on one core; the autograd graph
and the optimizer's separate update pass add ~0.3 .. 0.6 ms per step whatever B. ``gd`` saves those, so the ratio
is large at B = 1 and tends to 1 as B grows and both run the same batched BLAS calls. Measured with one torch
thread on the shared (loaded) 2-core machine, ``bench_gd_dmf()``: m = 2,000: 3,769 vs 2,763 steps/s at B = 1
(1.36x), 1,579 vs 1,212 at B = 64 (1.30x); m = 5,000: 6,633 vs 1,226 at B = 1 (5.4x), 1,720 vs 1,227 at
B = 64 (1.40x). With two threads on the loaded machine single measurements ranged from 0.46x to 4x (OpenMP
threads spinning against other processes): read these rows on an idle machine. The dense-operator
formulation that the suite used before (``r = A vec(W) - y`` with the ``m x 10,000`` operator: 400 MB and
~200 MFlop per member and step at m = 5,000, ~17x the factor products) is not measured: neither side uses it.
"""

from __future__ import annotations

import math
import time

import numpy as np

from verify.bench.dmf import marginal_rate

#: The official trainers' throughput, as stated constants (source: issue 12, measured by its author on the
#: project's 2-core machine; one epoch = one full-batch step of one model).
OFFICIAL_TRAINERS = {
    "rc20_dmf": {"epochs_per_s": (2000.0, 2800.0), "workload": "RC20 DMF trainer (2x2 completion, GroupRMSprop)",
                 "source": "issue 12 (measured by the issue author on this machine)"},
    "rc20_tensor_order4": {"epochs_per_s": (80.0, 80.0), "workload": "RC20 tensor trainer, order 4, dims 8, R = 512",
                           "source": "issue 12 (measured by the issue author on this machine)"},
}


def official_ratios(rows: list[dict], key: str, match: str) -> None:
    """Add ``official_epochs_per_s`` (the stated range) and ``ratio_official`` (ours at B = 1 over the range's
    top, the conservative side) to each row whose workload contains ``match`` and whose B is 1."""
    lo, hi = OFFICIAL_TRAINERS[key]["epochs_per_s"]
    for row in rows:
        if match in str(row.get("workload", "")) and row.get("B") == 1 and row.get("steps_per_s"):
            row["official_epochs_per_s"] = f"{lo:g}-{hi:g}" if lo != hi else f"{lo:g}"
            row["ratio_official"] = row["steps_per_s"] / hi


def bench_gd_dmf(batches=(1, 64), observed=(2000, 5000), *, seconds: float = 1.0, device=None) -> list[dict]:
    """Rows ``workload, B, m, steps_per_s, naive_steps_per_s, ratio, device`` (module docstring)."""
    from models import inits
    from models.engines.gd import GradientDescent, resolve_device
    from models.factorizations import DeepMatrix
    from models.generators import random_completion
    from verify.bench.gd import autograd_gd_reference

    dev = resolve_device(device)
    model = DeepMatrix(3, (100, 100))
    rows = []
    for m in observed:
        problem, _ = random_completion((100, 100), rank=5, m=int(m), seed=0, reduction="mean")
        for B in batches:
            fs = [inits.balanced(model, 0.5, seed=s).factors for s in range(min(B, 4))]
            fb = [np.stack([fs[i % len(fs)][j] for i in range(B)]) for j in range(model.depth)]
            eng = GradientDescent(lr=0.1, device=dev, check_every=1 << 20)
            # k steps of each take about `seconds` / 2 (a first short run sizes k)
            t = time.perf_counter()
            eng.run(problem, model, fb, steps=4, wall_budget=math.inf)
            per = max((time.perf_counter() - t) / 4, 1e-6)
            k = max(4, int(seconds / 2 / per))
            ours = B * marginal_rate(lambda n: eng.run(problem, model, fb, steps=n, wall_budget=math.inf), k,
                                     repeats=1, warm_up=2)
            naive = B * marginal_rate(lambda n: autograd_gd_reference(problem, model, fb, 0.1, n, device=dev),
                                      max(2, k // 2), repeats=1, warm_up=2)
            rows.append({"workload": f"gd depth3 100x100 completion m={m} B={B}", "B": B, "m": int(m),
                         "steps_per_s": ours, "naive_steps_per_s": naive, "ratio": ours / naive, "device": str(dev)})
    return rows
