"""Every registered claim under pytest: one node per claim id, run by the verify driver with the ``ci`` profile
(derandomized: the Hypothesis seed is derived from the run seed and the claim id) and a fixed seed, checked
against the claim's expectation.

- A claim expected to **hold** must come out ``holds``: every example's margin cleared its error estimate, no
  example raised or stayed inconclusive, and the whole search ran within the profile's time limits (an input
  skipped by the hard limit is an example not checked, so it fails the node).
- A claim expected to be **refuted** (a conjecture the literature refutes, a negative control) must come out
  ``violated`` with a counterexample that (a) clears its error estimate, (b) is shrunk: its numbers are the
  simple values Hypothesis shrinks toward (small integers, short decimals, powers of 10 or 2 with short
  exponents), which a random unshrunk draw is not, and (c) replays: re-running the check on the stored JSON
  inputs gives the same violation.

The profile and seed can be changed with ``VERIFY_CLAIMS_PROFILE`` / ``VERIFY_CLAIMS_SEED`` (tests/claims/conftest.py).
The example claims module of the README (``properties.examples.my_claims``) is run through the CLI in a
subprocess, both as a dotted module and as a file path, so that its claim never enters this process' registry.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

import properties  # noqa: F401  -- registers the built-in claims
from properties.api import CLAIMS, Expectation
from verify.driver import inputs_from_json, replay, run_claim
from verify.records import VerdictStatus

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_MODULE = "properties.examples.my_claims"
EXAMPLE_FILE = "properties/examples/my_claims.py"
EXAMPLE_ID = "mine.gf_loss_monotone"


def _params():
    out = []
    for cid, c in CLAIMS.items():
        marks = [pytest.mark.claim]
        if c.cost >= 1.0:
            marks.append(pytest.mark.slow)
        out.append(pytest.param(cid, id=cid, marks=marks))
    return out


# ----------------------------------------------------------------------------------------------------------------
# What "shrunk" looks like
# ----------------------------------------------------------------------------------------------------------------
def _short_exponent(x: float, base: float) -> bool:
    e = math.log(abs(x), base)
    for digits in (0, 1, 2):
        r = round(e, digits)
        if float(base ** r) == abs(x) or abs(base ** r - abs(x)) <= 2 * math.ulp(abs(x)):
            return True
    return False


def _simple(value) -> bool:
    """A value Hypothesis shrinks toward: a small integer, a short decimal, or a power of 10 or 2 with a short
    exponent (strategies draw scales as ``10 ** e`` and shrink ``e``)."""
    if value is None or isinstance(value, (bool, str)):
        return True
    if isinstance(value, int):
        return abs(value) <= 10_000
    if isinstance(value, float):
        if value == 0.0 or not math.isfinite(value):
            return True
        return (len(repr(abs(value))) <= 7 or _short_exponent(value, 10.0) or _short_exponent(value, 2.0))
    if isinstance(value, dict):
        return all(_simple(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(_simple(v) for v in value)
    return False


def _not_simple(inputs: dict) -> dict:
    return {k: v for k, v in inputs.items() if not _simple(v)}


def test_simplicity_predicate():
    assert _simple({"depth": 2, "seed": 0, "scale": 1.0, "until_loss": 1e-4, "lr": 10.0 ** -1.5, "p": 2.0 ** 0.5,
                    "det": "positive", "measure": {"kind": "schatten", "p": "inf"}, "dims": [2, 3, 3]})
    assert not _simple({"seed": 1_234_567})
    assert not _simple({"scale": 0.10216227876184304})
    assert not _simple({"x": 10.0 ** -0.7318})


def _explain(v) -> str:
    lines = [f"{v.claim_id}: expected {v.expectation}, got {v.status.value} ({v.status.message})",
             f"examples {v.examples}, inconclusive {v.inconclusive}, seconds {v.seconds:.1f}, extra {v.extra}"]
    lines += [f"note: {n}" for n in v.notes]
    if v.counterexample:
        lines.append(f"counterexample: {v.counterexample.get('inputs_repr')}")
        if "outcome" in v.counterexample:
            lines.append(f"outcome: {json.dumps(v.counterexample['outcome'], default=str)[:2000]}")
        if "error" in v.counterexample:
            lines.append(f"error: {v.counterexample['error']}")
    if v.traceback:
        lines.append(v.traceback[-3000:])
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------------
# The claims
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("claim_id", _params())
def test_claim(claim_id, claims_profile, claims_seed, verdict_log, record_property):
    claim = CLAIMS[claim_id]
    v = run_claim(claim, claims_profile, seed=claims_seed)
    verdict_log.append((claim_id, v))
    for key in ("seconds", "examples"):
        record_property(key, getattr(v, key))
    record_property("verdict", v.status.value)

    if claim.expectation is Expectation.HOLDS:
        assert v.status is VerdictStatus.HOLDS and v.met, _explain(v)
        assert v.examples >= 1 and v.inconclusive == 0, _explain(v)
        assert v.extra["skipped"] == 0, "the search was cut short by the profile's hard limit:\n" + _explain(v)
        return

    assert v.status is VerdictStatus.VIOLATED and v.met, _explain(v)
    cx = v.counterexample
    assert cx is not None and cx["claim_id"] == claim_id, _explain(v)
    out = cx["outcome"]
    assert out["status"] == "violated" and out["margin"] < -out["error"], _explain(v)
    inputs = inputs_from_json(cx["inputs"])
    assert not _not_simple(inputs), f"counterexample not shrunk: {_not_simple(inputs)}\n" + _explain(v)
    again = replay(claim, json.loads(json.dumps(cx["inputs"])))
    assert again.status == "violated", f"the stored counterexample does not replay: {again}\n" + _explain(v)
    assert abs(again.margin - out["margin"]) <= max(out["error"], 1e-12 * abs(out["margin"])), (again, out)


def test_every_claim_has_a_node():
    """The parametrization is the registry: nothing registered is left out (ids are unique by construction)."""
    ids = [p.values[0] for p in _params()]
    assert ids == list(CLAIMS) and len(ids) >= 20


# ----------------------------------------------------------------------------------------------------------------
# The README's user-defined claims example, through the CLI as a user runs it
# ----------------------------------------------------------------------------------------------------------------
def _verify(*args, cwd=ROOT):
    cmd = [sys.executable, "-c", "import sys; from verify.cli import main; sys.exit(main())", *map(str, args)]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("spec", [EXAMPLE_MODULE, EXAMPLE_FILE])
def test_example_claims_module_is_listed(spec):
    res = _verify("list", "--json", "--claims", spec)
    assert res.returncode == 0, res.stderr
    listed = json.loads(res.stdout)
    ids = [row["id"] for row in listed]
    assert ids == [EXAMPLE_ID], res.stdout


@pytest.mark.slow
def test_example_claims_module_runs_and_holds(tmp_path):
    res = _verify("run", "--claims", EXAMPLE_MODULE, "--profile", "quick", "--no-figures", "--out", tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    rows = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert [(r["claim"], r["verdict"], r["met"]) for r in rows] == [(EXAMPLE_ID, "holds", True)]
    assert EXAMPLE_ID not in CLAIMS   # ran in its own process
