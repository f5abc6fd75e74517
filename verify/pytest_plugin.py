"""The pytest plugin of implicit-reg-verify: claims as pytest items (registered as the ``pytest11`` entry point
``verify``, so it is active in every pytest run once the package is installed; ``-p no:verify`` turns it off).

What it collects (and otherwise it does nothing: no items, no output, no files):

- ``pytest --verify-claims MODULE`` (repeatable; ``properties`` for the built-in claims; a dotted name or a
  ``.py`` path, as ``verify run --claims``): one item per claim the module registers, named by the claim id,
  under the node ``verify-claims:MODULE``; ``-k`` selects on ids (``-k 'rc20 and not neg'``).
- In any test file pytest collects: every claim registered with ``@claim`` (or ``register``) and bound to a
  module-level name there (what ``@claim`` returns) whose check is defined in that file, with no option. Claims
  imported from elsewhere, and :class:`~properties.api.Claim` objects that were never registered, are not.
- In a test file that sets ``VERIFY_CLAIMS = ["MODULE", ...]``: the claims of those modules, collected there
  (this is how the suite's own ``tests/claims`` runs the built-in claims).

Every item carries the marker ``verify_claim`` (``-m verify_claim``).

Options (each also an ini setting, ``verify_profile``, ``verify_seed``, ``verify_out``; the option wins):

- ``--verify-profile quick|ci|thorough`` (default ``quick``), ``--verify-seed N`` (default 0): as ``verify run``.
- ``--verify-out DIR`` (default ``reports/pytest`` under pytest's rootdir): ``results.jsonl`` (one record per
  claim item run, as ``verify run`` writes it), ``summary.json`` and ``counterexamples/ID.json``, each with the
  ``verify reproduce`` command that replays it.

Outcomes. An item passes when the claim meets its expectation (``holds`` for a theorem, ``violated`` for a
conjecture or negative control). Otherwise it fails, and the failure text gives the verdict, the counterexample
inputs, its margin against its error estimate, the notes, and ``verify reproduce DIR/counterexamples/ID.json``.
An ``inconclusive`` verdict is a **failure** (not an xfail), with its own reason (how many margins stayed within
their error estimate after escalation, and the first of them): the suite never counts an undecided claim as
met, and ``verify run`` exits 1 on it as well. An ``error`` verdict fails with the check's traceback.

Each item runs its claim through ``verify run``'s own path (:mod:`verify.oneclaim`: the runner's task, executor
and record), so verdicts, counterexamples and the claim's time limit, where the runner enforces one, are the same
as ``verify run``'s for the same profile and seed. Under pytest-xdist (``pytest -n 2``) the verdicts are the same
(each claim's search is seeded by the run seed and its id); workers write the counterexample files and the
controlling process alone writes ``results.jsonl`` and ``summary.json``.

A conftest may add checks of its own on claims that met their expectation by implementing the hook
``pytest_verify_record(item, record)`` (raise ``AssertionError`` to fail the item); ``record`` is the
``results.jsonl`` record.
"""

from __future__ import annotations

import inspect
import sys
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from models.stored.verdicts import verdict_of

STATE = pytest.StashKey["_State"]()
MARKER = "verify_claim"
MODULE_VARIABLE = "VERIFY_CLAIMS"
DEFAULT_OUT = Path("reports") / "pytest"


class Hooks:
    """Hook specifications the plugin adds."""

    @pytest.hookspec
    def pytest_verify_record(self, item, record):
        """Called after a claim item's claim met its expectation, with its ``results.jsonl`` record; raise
        ``AssertionError`` to fail the item (for checks beyond the expectation, such as shrinking quality)."""


def pytest_addhooks(pluginmanager) -> None:
    pluginmanager.add_hookspecs(Hooks)


def pytest_addoption(parser) -> None:
    group = parser.getgroup("verify", "implicit-reg-verify claims")
    group.addoption("--verify-claims", action="append", default=[], metavar="MODULE", dest="verify_claims",
                    help="collect one item per claim of MODULE (dotted name or .py path; repeatable; "
                         "'properties' for the built-in claims)")
    group.addoption("--verify-profile", metavar="NAME", dest="verify_profile", default=None,
                    help="search profile of claim items: quick (default), ci, thorough")
    group.addoption("--verify-seed", metavar="N", dest="verify_seed", default=None,
                    help="run seed of claim items (default 0)")
    group.addoption("--verify-out", metavar="DIR", dest="verify_out", default=None,
                    help="where claim items write results.jsonl, summary.json and counterexamples/ "
                         "(default reports/pytest under the rootdir)")
    parser.addini("verify_profile", "search profile of claim items (quick, ci, thorough)", default="quick")
    parser.addini("verify_seed", "run seed of claim items", default="0")
    parser.addini("verify_out", "output directory of claim items, relative to the rootdir", default="")


@dataclass(eq=False)  # hashable: pluggy keeps plugins in sets
class _State:
    config: pytest.Config
    profile: str
    seed: int
    out: Path
    worker: bool
    stack: ExitStack = field(default_factory=ExitStack)
    handle: object = None
    records: list = field(default_factory=list)
    store: object = None

    def executor(self):
        if self.handle is None:
            from verify.executors import open_executor
            self.handle = self.stack.enter_context(open_executor("local", 1))
        return self.handle

    def run(self, claim, modules) -> dict:
        from verify import oneclaim
        return oneclaim.run(claim, profile=self.profile, seed=self.seed, modules=modules, handle=self.executor(),
                            out=self.out)

    # ----- the controlling process: results.jsonl, summary.json, the terminal table -----
    @pytest.hookimpl
    def pytest_runtest_logreport(self, report) -> None:
        rec = getattr(report, "verify_record", None)
        if self.worker or report.when != "call" or not isinstance(rec, dict):
            return
        from verify import store
        if self.store is None:
            self.store = store.ResultStore(self.out)
            self.store.open(resume=False)
        self.store.append(rec)
        self.records.append(rec)

    @pytest.hookimpl
    def pytest_sessionfinish(self, session) -> None:
        self.stack.close()
        self.handle = None
        if self.store is None:
            return
        self.store.close()
        from verify import runner, store
        modules = sorted({m for r in self.records for m in r.get("claims_modules") or []})
        settings = {"profile": self.profile, "seed": self.seed, "claims_modules": modules, **runner.environment(),
                    "pytest": True}
        order = sorted({r["claim"] for r in self.records})
        store.write_json(self.out / store.SUMMARY, store.build_summary(self.records, order, settings))

    @pytest.hookimpl
    def pytest_terminal_summary(self, terminalreporter) -> None:
        if self.worker or not self.records:
            return
        from verify.progress import describe
        tr = terminalreporter
        tr.section(f"verify claims: profile {self.profile}, seed {self.seed}")
        for rec in sorted(self.records, key=lambda r: r["claim"]):
            tr.write_line(describe(rec))
        met = sum(1 for r in self.records if r.get("met"))
        tr.write_line(f"{met} of {len(self.records)} claims met their expectation; results in {self.out}")

    @pytest.hookimpl
    def pytest_unconfigure(self, config) -> None:
        self.stack.close()


def _setting(config, name: str):
    value = getattr(config.option, name, None)
    return value if value not in (None, "") else config.getini(name)


def _profiles():
    from verify.profiles import PROFILES
    return PROFILES


def _claim_class():
    """:class:`properties.api.Claim` when it has been imported (nothing can be a claim before that)."""
    return getattr(sys.modules.get("properties.api"), "Claim", None)


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", f"{MARKER}: a claim of implicit-reg-verify run by the verify plugin")
    profile = str(_setting(config, "verify_profile"))
    if profile != "quick" and profile not in _profiles():  # the default needs no import: nothing is loaded
        raise pytest.UsageError(f"--verify-profile: unknown profile {profile!r}; "
                                f"choose one of {', '.join(_profiles())}")
    try:
        seed = int(_setting(config, "verify_seed"))
        if seed < 0:
            raise ValueError
    except ValueError:
        raise pytest.UsageError(f"--verify-seed must be an integer >= 0, got {_setting(config, 'verify_seed')!r}") \
            from None
    out_opt = config.option.verify_out
    if out_opt:
        out = Path(out_opt)
    else:
        out = config.rootpath / (config.getini("verify_out") or DEFAULT_OUT)
    state = _State(config, profile, seed, out.resolve(), worker=hasattr(config, "workerinput"))
    config.stash[STATE] = state
    config.pluginmanager.register(state, "verify-claims-state")


# ----- items ---------------------------------------------------------------------------------------------------
class ClaimNotMet(Exception):
    """Raised by a claim item whose claim did not meet its expectation; the text is the failure report."""

    def __init__(self, text: str):
        super().__init__(text)
        self.text = text


class ClaimItem(pytest.Item):
    """One claim, run as ``verify run`` runs it (see the module docstring)."""

    def __init__(self, *, claim, modules, **kwargs):
        super().__init__(**kwargs)
        self.claim = claim
        self.modules = tuple(str(m) for m in modules)
        self.record: dict | None = None
        self.add_marker(MARKER)
        self.user_properties.append(("claim", claim.id))

    def runtest(self) -> None:
        state = self.config.stash[STATE]
        self.record = rec = state.run(self.claim, self.modules)
        self.user_properties += [("verdict", verdict_of(rec)), ("expectation", rec.get("expectation")),
                                 ("examples", rec.get("examples")), ("seconds", rec.get("seconds"))]
        if not rec.get("met"):
            from verify.oneclaim import failure_text
            raise ClaimNotMet(failure_text(rec, state.out))
        self.ihook.pytest_verify_record(item=self, record=rec)

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, ClaimNotMet):
            return excinfo.value.text
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self):
        check = self.claim.check
        try:
            path = Path(inspect.getsourcefile(check))
            line = check.__code__.co_firstlineno - 1
        except (TypeError, AttributeError):
            path, line = self.path, None
        return path, line, f"claim {self.claim.id}"


def _claim_items(parent, specs) -> list:
    from verify import discovery
    items = []
    for spec in specs:
        try:
            catalog = discovery.load((spec,))
        except Exception as exc:  # noqa: BLE001 -- InvalidInput from a module that does not import
            raise parent.CollectError(f"verify claims module {spec!r}: {exc}") from None
        items += [ClaimItem.from_parent(parent, name=c.id, claim=c, modules=(spec,))
                  for c in catalog.claims.values()]
    return items


class ClaimsModule(pytest.Collector):
    """The claims of one ``--verify-claims MODULE``."""

    def __init__(self, *, spec: str, **kwargs):
        super().__init__(**kwargs)
        self.spec = spec

    def collect(self):
        return _claim_items(self, [self.spec])


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector, name, obj):
    if not isinstance(collector, pytest.Module):
        return None
    claim_class = _claim_class()
    if claim_class is not None and isinstance(obj, claim_class):
        from properties.api import CLAIMS
        defined_here = getattr(obj.check, "__module__", None) == collector.obj.__name__
        if defined_here and CLAIMS.get(obj.id) is obj:
            return ClaimItem.from_parent(collector, name=obj.id, claim=obj, modules=(str(collector.path),))
        return None
    if name == MODULE_VARIABLE:
        specs = [obj] if isinstance(obj, str) else list(obj)
        return _claim_items(collector, specs)
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session, config, items) -> None:
    """Add the items of ``--verify-claims`` (before ``-k``/``-m`` deselect)."""
    for spec in config.option.verify_claims or []:
        name = f"verify-claims:{spec}"
        col = ClaimsModule.from_parent(session, name=name, nodeid=name, spec=spec)
        rep = session.ihook.pytest_make_collect_report(collector=col)
        session.ihook.pytest_collectreport(report=rep)
        if rep.passed:
            items.extend(rep.result)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if call.when == "call" and isinstance(item, ClaimItem) and item.record is not None:
        report.verify_record = item.record  # travels to the xdist controller with the report
    return report
