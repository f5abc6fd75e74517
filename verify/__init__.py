"""The runner: claim discovery, the Hypothesis driver, profiles, the result store and the ``verify`` CLI.

``verify.check(claim_or_id, profile="quick", seed=0)`` runs one claim from Python (a notebook) and returns its
verdict record (:mod:`verify.notebook`).
"""


def check(claim_or_id, profile: str = "quick", seed: int = 0, **options):
    """Run one claim as ``verify run`` does and return its verdict record (see :func:`verify.notebook.check`)."""
    from verify.notebook import check as _check
    return _check(claim_or_id, profile, seed, **options)


__all__ = ["check"]
