"""The built-in claims under pytest, through the suite's own pytest plugin (verify/pytest_plugin.py).

``test_claims.py`` sets ``VERIFY_CLAIMS = ["properties"]``: the plugin collects one item per built-in claim, named
by its id, and runs it as ``verify run`` does, with the profile of the ini setting ``verify_profile`` (``ci`` in
pyproject.toml: the CI gate's derandomized profile) and seed 0. ``pytest tests/claims --verify-profile quick`` is
a fast local pass, ``--verify-seed N`` another seed; ``-k`` selects on claim ids. The plugin prints the verdict
table at the end and writes ``results.jsonl``, ``summary.json`` and ``counterexamples/`` under ``reports/pytest``
(``--verify-out DIR`` elsewhere).

An item fails when its claim does not meet its expectation (the plugin's failure text has the counterexample and
the ``verify reproduce`` command). This conftest adds the suite's own checks on claims that met it
(:func:`pytest_verify_record`):

- a claim expected to **hold**: at least one example, none inconclusive, and the whole search ran within the
  profile's time limits (an input skipped by the hard limit is an example not checked, so it fails the item);
- a claim expected to be **refuted** (a conjecture the literature refutes, a negative control): its
  counterexample (a) clears its error estimate, (b) is shrunk: its numbers are the simple values Hypothesis
  shrinks toward (small integers, short decimals, powers of 10 or 2 with short exponents), which a random
  unshrunk draw is not, and (c) replays: re-running the check on the stored JSON inputs gives the same violation.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from claims_quality import not_simple
from verify.driver import inputs_from_json, replay

HERE = Path(__file__).resolve().parent


def _explain(record: dict) -> str:
    keep = ("claim", "expectation", "verdict", "examples", "inconclusive", "seconds", "notes", "extra")
    text = json.dumps({k: record.get(k) for k in keep}, default=str)[:3000]
    cx = record.get("counterexample") or {}
    return text + (f"\ncounterexample: {cx.get('inputs_repr')}\noutcome: {json.dumps(cx.get('outcome'))[:2000]}"
                   if cx else "")


def pytest_collection_modifyitems(items):
    for item in items:
        claim = getattr(item, "claim", None)
        if claim is not None and HERE in item.path.parents and claim.cost >= 1.0:
            item.add_marker(pytest.mark.slow)


def pytest_verify_record(item, record):
    if record["expectation"] == "holds":
        assert record["examples"] >= 1 and record["inconclusive"] == 0, _explain(record)
        assert record["extra"]["skipped"] == 0, \
            "the search was cut short by the profile's hard limit:\n" + _explain(record)
        return
    cx = record["counterexample"]
    assert cx is not None and cx["claim_id"] == record["claim"], _explain(record)
    out = cx["outcome"]
    assert out["status"] == "violated" and out["margin"] < -out["error"], _explain(record)
    inputs = inputs_from_json(cx["inputs"])
    assert not not_simple(inputs), f"counterexample not shrunk: {not_simple(inputs)}\n" + _explain(record)
    again = replay(item.claim, json.loads(json.dumps(cx["inputs"])))
    assert again.status == "violated", f"the stored counterexample does not replay: {again}\n" + _explain(record)
    assert abs(again.margin - out["margin"]) <= max(out["error"], 1e-12 * abs(out["margin"])), (again, out)
