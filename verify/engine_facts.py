"""What the registered engines declare, looked up by the names that trajectories and outcomes carry, so that
commands and the stored evidence need no engine special cases (issue 10).

- :func:`clock`: an engine's declared ``clock`` (``"time"``: a gradient flow; ``"step"``: an iteration with a
  step size).
- :func:`arithmetic`: the arithmetic an outcome's engine label stands for (``gf-mp digits=40``: ``mpmath, 40
  digits``; ``gf rtol=1e-10``: ``float64``), from the engine's declared ``arithmetic``.

A name no engine is registered under (``sympy + gf``, a toy engine in a test) gives None and ``""``.
"""

from __future__ import annotations

from models.engines import engine_class
from models.errors import InvalidInput


def _declared(name: str):
    try:
        return engine_class(name)
    except InvalidInput:
        return None


def clock(name: str) -> str | None:
    """The declared ``clock`` of the engine registered as ``name`` (None: no such engine)."""
    cls = _declared(name)
    return None if cls is None else cls.clock


def arithmetic(label: str) -> str:
    """The arithmetic of an outcome's engine label (its first word the engine's name, then ``option=value``
    words); ``""`` where the label names no registered engine and does not say ``float64``."""
    words = label.split()
    cls = _declared(words[0]) if words else None
    if cls is None:
        return "float64" if "float64" in label else ""
    digits = next((w.split("=", 1)[1] for w in words if w.startswith("digits=")), None)
    return f"{cls.arithmetic}, {digits} digits" if digits and "digits" in cls.options else cls.arithmetic


__all__ = ["arithmetic", "clock"]
