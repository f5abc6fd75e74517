"""Shared test settings: Hypothesis tests in this suite are derandomized, keep no example database in the
repository, and have no deadline (numerical checks vary in time; style notes 1.9, 1.12).

The verify driver builds its own settings for every claim (explicit seed, database and example count), so this
profile only governs ``@given`` tests written directly in ``tests/``. ``--hypothesis-profile`` still overrides it.
"""

from hypothesis import settings

settings.register_profile("tests", derandomize=True, database=None, deadline=None)
settings.load_profile("tests")
