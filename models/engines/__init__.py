"""Dynamics engines, registered by stable name.

``ENGINES`` maps a name to ``"module:Class"``; classes are imported on first use so that importing the suite
does not import torch. :func:`get_engine` accepts a registered name or an engine class.

- ``gf``: float64 gradient flow (reduced SVD/log chart for balanced 2x2 deep matrix factorization; the end-to-end
  flow for other balanced full-width ones; the closed form at depth 1; stiff solver on the raw factors otherwise).
- ``gf-mp``: high-precision gradient flow with mpmath.
- ``gd``: batched float64 gradient descent in torch (CPU or GPU).
- ``gd-small``: the compiled (numba) float64 GD loop for small square deep matrix factorizations
  (:mod:`models.engines.gd_small`), millions of steps per second.
- ``gd-cp``: batched GD on CP tensor completion with dense Khatri-Rao products (:mod:`models.engines.cp_fast`),
  constant or GroupRMSprop steps, component norms.
- ``gd-dense``: batched GD on dense deep matrix factorizations (:mod:`models.engines.dmf_fast`, the ACHL19
  experiments at 100x100), constant or GroupRMSprop steps, singular values and alignment records. All three
  return their kernel's own record in
  ``KernelBatch.kernel_run`` (:mod:`models.engines.fast_gd`).
"""

from __future__ import annotations

import importlib

from ..errors import InvalidInput
from .base import AbstractEngine, Result, Spec

ENGINES: dict[str, str] = {
    "gf": "models.engines.gf:GradientFlow",
    "gf-mp": "models.engines.gf_mp:GradientFlowMP",
    "gd": "models.engines.gd:GradientDescent",
    "gd-small": "models.engines.fast_gd:GradientDescentSmall",
    "gd-cp": "models.engines.fast_gd:GradientDescentCP",
    "gd-dense": "models.engines.fast_gd:GradientDescentDense",
}


def engine_class(name: str | type) -> type[AbstractEngine]:
    """The engine class registered under ``name`` (or ``name`` itself when it is an engine class)."""
    if isinstance(name, type) and issubclass(name, AbstractEngine):
        return name
    if name not in ENGINES:
        raise InvalidInput(f"unknown engine {name!r}; choose one of {', '.join(ENGINES)}")
    module, cls = ENGINES[name].split(":")
    return getattr(importlib.import_module(module), cls)


def get_engine(name: str | type, **options) -> AbstractEngine:
    """An engine instance: ``get_engine("gf", rtol=1e-10)``."""
    return engine_class(name)(**options)


__all__ = ["ENGINES", "AbstractEngine", "Result", "Spec", "engine_class", "get_engine"]
