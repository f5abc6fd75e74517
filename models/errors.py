"""The suite's exception hierarchy, rooted at :class:`SuiteError`.

``models`` imports nothing from the rest of the suite, so the root lives here; ``verify.errors`` re-exports it
and adds the runner's own errors.

- :class:`InvalidInput` (also a ``ValueError``): a setting, init or argument that is out of its domain. The
  message names the field and quotes the offending value; the command line prints it on one line and exits 2.
- :class:`EngineFailure` (also a ``RuntimeError``): an engine could not produce a trustworthy trajectory.
  Engines normally *record* such outcomes in ``Trajectory.status`` instead of raising; this is raised only by
  helpers that have no record to write into.
"""

from __future__ import annotations


class SuiteError(Exception):
    """Root of every error the suite raises on purpose."""


class InvalidInput(SuiteError, ValueError):
    """A value outside its domain (depth 0, a negative scale, NaN parameters, an unknown engine...)."""


class EngineFailure(SuiteError, RuntimeError):
    """An engine could not produce a trustworthy trajectory.

    ``decisive``: the failure says the engine is wrong, not merely imprecise (a path that is not the gradient
    flow), so escalating to another run of the ladder must not hide it, however untrustworthy the run was."""

    decisive = False


def require(condition: bool, message: str) -> None:
    """Raise :class:`InvalidInput` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise InvalidInput(message)
