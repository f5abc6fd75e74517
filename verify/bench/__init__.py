"""Benchmark workloads and naive reference implementations for ``verify bench`` (kept out of the engines).

- :mod:`verify.bench.gd`: the torch autograd GD loop a user would write (:func:`~verify.bench.gd.autograd_gd_reference`)
  and the ``gd`` rows (:func:`~verify.bench.gd.bench_gd`).
- :mod:`verify.bench.gf`: the ``gf``, ``gf-e2e`` and ``gf-raw`` rows and the naive ``solve_ivp`` run on the raw
  factors.
- :mod:`verify.bench.gf_mp`: the ``gf-mp`` rows (:func:`~verify.bench.gf_mp.bench_gf_mp`).
- :mod:`verify.bench.scaling`: the ``gd-dmf`` rows (depth-3 100x100 completion) and the official trainers' stated
  throughput.
"""
