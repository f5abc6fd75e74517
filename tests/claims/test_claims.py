"""Every built-in claim under pytest, through the suite's pytest plugin: ``VERIFY_CLAIMS`` below makes the plugin
collect one item per claim id here, run as ``verify run`` runs it with the ``ci`` profile (the ini setting
``verify_profile``) and seed 0; ``conftest.py`` adds the suite's checks on expectations that were met (no
inconclusive or skipped example; a refuted claim's counterexample clears its error, is shrunk and replays).

The example claims module of the README (``properties.examples.my_claims``) is run through the CLI in a
subprocess, both as a dotted module and as a file path, so that its claim never enters this process' registry.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from claims_quality import simple
from properties.api import CLAIMS
from verify import discovery
from verify.pytest_plugin import ClaimItem

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_MODULE = "properties.examples.my_claims"
EXAMPLE_FILE = "properties/examples/my_claims.py"
EXAMPLE_ID = "mine.gf_loss_monotone"

#: the plugin collects every claim these modules register as an item of this file
VERIFY_CLAIMS = ["properties"]


def test_simplicity_predicate():
    assert simple({"depth": 2, "seed": 0, "scale": 1.0, "until_loss": 1e-4, "lr": 10.0 ** -1.5, "p": 2.0 ** 0.5,
                   "det": "positive", "measure": {"kind": "schatten", "p": "inf"}, "dims": [2, 3, 3]})
    assert not simple({"seed": 1_234_567})
    assert not simple({"scale": 0.10216227876184304})
    assert not simple({"x": 10.0 ** -0.7318})


def test_every_claim_has_an_item(request):
    """The plugin turns the registry into items here: nothing built in is left out (ids are unique)."""
    items = [i for i in request.node.parent.collect() if isinstance(i, ClaimItem)]
    builtin = list(discovery.load(("properties",)).claims)
    assert [i.name for i in items] == builtin and len(builtin) >= 20
    assert all(i.modules == ("properties",) and i.get_closest_marker("verify_claim") for i in items)


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
