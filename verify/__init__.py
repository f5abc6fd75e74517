"""The runner: claim discovery, the Hypothesis driver, profiles, the result store and the ``verify`` CLI."""
