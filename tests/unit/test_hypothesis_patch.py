"""The one private Hypothesis name the suite patches (verify.runner.stable_generation; no public API turns off
Hypothesis' pool of constants collected from local modules). Fails loudly when a Hypothesis version drops or
changes the names, so that pyproject.toml's pin is widened only to versions the patch works on."""

from __future__ import annotations

import importlib
import sys

from hypothesis import given, seed, settings
from hypothesis import strategies as st
from hypothesis.database import InMemoryExampleDatabase

from verify.runner import stable_generation


def test_the_patched_names_exist():
    from hypothesis.internal.conjecture import providers
    from hypothesis.internal.constants_ast import Constants
    assert callable(providers._get_local_constants)
    assert hasattr(providers.CONSTANTS_CACHE, "cache")
    assert len(Constants()) == 0


def test_the_patch_empties_the_local_pool_and_restores_it():
    from hypothesis.internal.conjecture import providers
    original = providers._get_local_constants
    with stable_generation():
        with stable_generation():  # nested (threads of one dask worker)
            assert len(providers._get_local_constants()) == 0
        assert len(providers._get_local_constants()) == 0
    assert providers._get_local_constants is original


def _draws() -> list:
    seen = []

    @seed(12345)
    @settings(max_examples=60, database=InMemoryExampleDatabase(), deadline=None)
    @given(st.integers() | st.text(max_size=8) | st.floats())
    def prop(x):
        seen.append(x)

    prop()
    return seen


def test_generation_does_not_depend_on_the_local_modules_imported(tmp_path, monkeypatch):
    with stable_generation():
        before = _draws()
    mod = tmp_path / "hyp_patch_local_consts.py"
    mod.write_text("A = 918273645\nB = 'zq-local-constant'\nC = 0.123456789\n"
                   "def f(x):\n    return x == 918273645 or x == 'zq-local-constant' or x == 0.123456789\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.import_module("hyp_patch_local_consts")
    try:
        with stable_generation():
            after = _draws()
    finally:
        sys.modules.pop("hyp_patch_local_consts", None)
    assert repr(after) == repr(before)
