"""Finding claims: the built-in ones (``import properties``) and those of ``--claims MODULE``.

A claims module is anything whose import registers claims in :data:`properties.api.CLAIMS` (with
:func:`properties.api.claim` or :func:`properties.api.register`): a dotted module name importable from the
current directory or ``sys.path``, or the path of a ``.py`` file. With ``--claims`` only that module's claims
are selected (name ``properties`` as well to add the built-in ones).

Workers of a process pool or a dask cluster receive a claim by reference (modules, claim id, dropped hypotheses)
and rebuild it with :func:`resolve`, so tasks stay small and picklable.
"""

from __future__ import annotations

import fnmatch
import importlib
import importlib.util
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from models.errors import InvalidInput
from properties.api import CLAIMS, Claim, Expectation

BUILTIN = "properties"

#: ids of the claims each module registered when it was imported through this module
_REGISTERED: dict[str, tuple[str, ...]] = {}
#: serializes loading: the threads of a dask worker resolve tasks concurrently, and a thread that found a file
#: module in ``sys.modules`` while another was still executing it saw none of its claims
_LOAD_LOCK = threading.RLock()


def _import(spec: str):
    """Import a module by dotted name or by ``.py`` path; :class:`InvalidInput` with the reason when it fails."""
    path = Path(spec)
    is_file = spec.endswith(".py") or os.sep in spec
    try:
        if is_file:
            if not path.is_file():
                raise InvalidInput(f"claims module {spec!r} does not exist")
            name = "verify_claims_" + "".join(ch if ch.isalnum() else "_" for ch in str(path.resolve()))
            if name in sys.modules:
                return sys.modules[name]
            imported = _imported_file(path)
            if imported is not None:  # e.g. a test file pytest imported: importing it again would register twice
                return imported
            mspec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(mspec)
            sys.modules[name] = module
            try:
                mspec.loader.exec_module(module)
            except BaseException:
                del sys.modules[name]
                raise
            return module
        if str(Path.cwd()) not in sys.path and "" not in sys.path:
            sys.path.insert(0, str(Path.cwd()))
        return importlib.import_module(spec)
    except InvalidInput:
        raise
    except ModuleNotFoundError as exc:
        if exc.name and spec.startswith(exc.name):
            raise InvalidInput(f"claims module {spec!r} not found") from None
        raise InvalidInput(f"claims module {spec!r} does not import: {type(exc).__name__}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 -- any import failure of user code is bad input
        raise InvalidInput(f"claims module {spec!r} does not import: {type(exc).__name__}: {exc}") from None


def _imported_file(path: str | Path):
    """The module already imported from the file ``path`` (by pytest, or by name), or ``None``."""
    target = Path(path).resolve()
    for module in list(sys.modules.values()):
        file = getattr(module, "__file__", None)
        if isinstance(file, str) and os.path.basename(file) == target.name and Path(file).resolve() == target:
            return module
    return None


def _load_module(spec: str) -> tuple[str, ...]:
    """Import ``spec`` and return the ids of the claims it registered, in registration order (thread-safe)."""
    with _LOAD_LOCK:
        return _load_module_locked(spec)


def _load_module_locked(spec: str) -> tuple[str, ...]:
    if spec in _REGISTERED:
        return _REGISTERED[spec]
    before = set(CLAIMS)
    module = _import(spec)
    new = [cid for cid in CLAIMS if cid not in before]
    if not new:  # imported earlier by someone else: recognise its claims by where they were defined
        name = module.__name__
        mine = {id(v) for v in vars(module).values() if isinstance(v, Claim)}
        new = [cid for cid, c in CLAIMS.items()
               if id(c) in mine or getattr(c.check, "__module__", "") == name
               or getattr(c.check, "__module__", "").startswith(name + ".")]
    _REGISTERED[spec] = tuple(new)
    return _REGISTERED[spec]


@dataclass(frozen=True)
class Catalog:
    """The claims available to a command, in registration order, and the modules they came from."""

    modules: tuple[str, ...]
    claims: dict

    def select(self, patterns: Sequence[str] = ()) -> list[Claim]:
        """Claims matching any id or glob in ``patterns`` (all when empty); an unmatched pattern is bad input."""
        if not patterns:
            return list(self.claims.values())
        chosen: dict[str, Claim] = {}
        for pat in patterns:
            hits = [cid for cid in self.claims if fnmatch.fnmatchcase(cid, pat)]
            if not hits:
                kind = "pattern" if any(ch in pat for ch in "*?[") else "claim id"
                raise InvalidInput(f"unknown {kind} {pat!r} (verify list shows the {len(self.claims)} claims)")
            for cid in hits:
                chosen[cid] = self.claims[cid]
        return [c for cid, c in self.claims.items() if cid in chosen]

    def get(self, claim_id: str) -> Claim:
        try:
            return self.claims[claim_id]
        except KeyError:
            raise InvalidInput(f"unknown claim id {claim_id!r} (verify list shows the {len(self.claims)} claims)") \
                from None


def load(modules: Sequence[str] | None = None) -> Catalog:
    """The claims of ``modules`` (the built-in ones when none are given)."""
    mods = tuple(modules) if modules else (BUILTIN,)
    claims: dict[str, Claim] = {}
    for spec in mods:
        for cid in _load_module(spec):
            if cid in CLAIMS:
                claims[cid] = CLAIMS[cid]
    return Catalog(mods, claims)


def resolve(modules: Sequence[str], claim_id: str, dropped: Sequence[str] = ()) -> Claim:
    """The claim ``claim_id`` of ``modules``, with the named hypotheses dropped (for workers and replays)."""
    catalog = load(modules)
    claim = CLAIMS.get(claim_id) or catalog.get(claim_id)
    if dropped:
        claim = ablated(claim, dropped)
    return claim


def ablated(claim: Claim, dropped: Sequence[str]) -> Claim:
    """``claim`` with ``dropped`` hypotheses dropped: an ablation, expected to be refuted when they are needed."""
    names = [h.name for h in claim.hypotheses]
    unknown = [d for d in dropped if d not in names]
    if unknown:
        raise InvalidInput(f"claim {claim.id!r} has no hypothesis {unknown[0]!r}; it has {', '.join(names) or 'none'}")
    return claim.drop(*dropped, expectation=Expectation.REFUTED)
