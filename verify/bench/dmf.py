"""``verify bench --only dmf-fast``: the dense deep-matrix kernel of :mod:`models.engines.dmf_fast` (through the
``gd-dense`` engine, as the claims run it) against the
torch autograd loop a user would write, on the ACHL19 workload (issue 12's target: at least 5x at B = 1 and 64).

Workload: depth-3 100x100 completion (the ACHL19 generator, rank 5, ``m`` = 2,000 and 5,000 observed entries,
``mean`` reduction), Gaussian init (ACHL19's: per-layer std ``1e-3^(1/3) / 10``; one init per member), constant
step 0.1, float64, at B = 1 and 64. Rates are trajectory-steps per second (B times the steps per second of the
batch), *marginal*: the time of ``3k`` steps minus that of ``k`` steps (median of 3), so that the setup (tensors to the
device, CUDA-graph capture) counts for neither side. One torch thread on CPU by default. The naive side is
:func:`autograd_loop`, the loop a user would write (``torch.optim.SGD`` on the MSE of ``(W3 W2 W1)[observed]``,
batched with ``torch.matmul``; the same loop as the ``gd-dmf`` rows' reference, written here so that this module
depends on the kernel alone).

Why the CPU ratio stays near 1-2x: both sides spend a step on the same six ``100 x 100`` products per member (
~40 us each with one thread); the kernel saves the autograd graph, the optimizer's pass and the allocations, which
dominate at B = 1 and vanish at B = 64. The denser-than-sparse observation patterns (20% and 50%) leave no room
for sparse products (see :mod:`models.engines.dmf_fast`). On CUDA the kernel replays CUDA graphs, so a step costs
its arithmetic instead of ~10 launches.
"""

from __future__ import annotations

import time

import numpy as np


def autograd_loop(problem, factors, lr: float, steps: int, device) -> list:
    """``steps`` steps of ``torch.optim.SGD`` on the autograd loss (completion: the gathered observed entries),
    batched over the members; returns the final factors."""
    import torch

    params = [torch.tensor(np.asarray(F), dtype=torch.float64, device=device, requires_grad=True) for F in factors]
    obs = torch.tensor(problem.obs_flat, dtype=torch.long, device=device)
    y = torch.tensor(problem.targets, dtype=torch.float64, device=device)
    opt = torch.optim.SGD(params, lr=lr)
    B = params[0].shape[0]
    for _ in range(steps):
        opt.zero_grad()
        P = params[0]
        for W in params[1:]:
            P = torch.matmul(W, P)
        r = P.reshape(B, -1)[:, obs] - y
        (problem.loss_scale * (r * r).sum()).backward()
        opt.step()
    return [p.detach().cpu().numpy() for p in params]


#: steps between two checks of a run (and per CUDA graph)
CHUNK = 50


def marginal_rate(run, k: int, repeats: int = 3, warm_up: int = CHUNK) -> float:
    """Steps per second of ``run(n)`` from the time of ``n = 3k`` steps minus that of ``n = k`` (one warm-up run of
    ``warm_up`` steps first, which pays compilation and graph capture), the median of ``repeats`` measurements; a
    measurement where the difference is not positive (a loaded machine) counts as the plain rate of the ``3k``
    steps instead. Used by every marginal throughput row of ``verify bench``."""
    run(warm_up)
    rates = []
    for _ in range(repeats):
        t = time.perf_counter()
        run(k)
        t1 = time.perf_counter() - t
        t = time.perf_counter()
        run(3 * k)
        t3 = time.perf_counter() - t
        rates.append(2 * k / (t3 - t1) if t3 > t1 else 3 * k / t3)
    return float(np.median(rates))


def bench_dmf_fast(batches=(1, 64), observed=(2000, 5000), *, seconds: float = 1.0, device=None,
                   threads: int | None = 1) -> list[dict]:
    """Rows ``workload, B, m, steps_per_s, naive_steps_per_s, ratio, device`` (module docstring); both sides run
    with ``threads`` torch threads (default one, as the claims run; None keeps torch's setting)."""
    import torch

    from models.engines import get_engine
    from models.factorizations import DeepMatrix
    from models.generators import random_completion

    # checks every CHUNK steps: on CUDA the CHUNK steps between two checks are one graph, captured once per run
    # and replayed (n is a multiple of CHUNK below, so no step runs eagerly)
    engine = get_engine("gd-dense", lr=0.1, check_every=CHUNK, device=device, record_products=False)
    dev = engine.device
    old = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        std = 1e-3 ** (1.0 / 3.0) / 10.0
        rows = []
        for m in observed:
            problem, _ = random_completion((100, 100), rank=5, m=int(m), seed=0, reduction="mean")
            for B in batches:
                rng = np.random.default_rng(0)
                fb = [std * rng.standard_normal((B, 100, 100)) for _ in range(3)]

                def ours(n):
                    engine.run(problem, DeepMatrix(3, (100, 100)), fb, steps=n)

                def sync():
                    if dev.type == "cuda":
                        torch.cuda.synchronize()

                t = time.perf_counter()
                ours(CHUNK)
                sync()
                per = max((time.perf_counter() - t) / CHUNK, 1e-6)
                k = CHUNK * max(1, int(seconds / 2 / per / CHUNK))
                rate = B * marginal_rate(lambda n: (ours(n), sync()), k)
                naive = B * marginal_rate(lambda n: (autograd_loop(problem, fb, 0.1, n, dev),
                                                      sync()), max(4, k // 8))
                rows.append({"workload": f"dmf-fast depth3 100x100 completion m={m} B={B}", "B": B, "m": int(m),
                             "steps_per_s": rate, "naive_steps_per_s": naive, "ratio": rate / naive,
                             "target_ratio": 5.0, "device": str(dev), "torch_threads": torch.get_num_threads()})
        return rows
    finally:
        torch.set_num_threads(old)


COLUMNS = ["workload", "steps_per_s", "naive_steps_per_s", "ratio", "target_ratio", "device", "torch_threads"]

__all__ = ["CHUNK", "COLUMNS", "autograd_loop", "bench_dmf_fast", "marginal_rate"]
