"""The notebook API: ``verify.check``, the records' and trajectories' ``_repr_html_``, ``Trajectory.to_dataframe``,
and examples/notebook.ipynb executed in a kernel (nbclient + ipykernel, test extras)."""

from __future__ import annotations

import base64
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import strategies as st

import verify
from models import DeepMatrix, get_engine, inits, rc20
from models.errors import InvalidInput
from properties.api import CLAIMS, Claim, Expectation, Kind, Outcome

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "examples" / "notebook.ipynb"
UNIT = st.fixed_dictionaries({"x": st.floats(0.0, 1.0, allow_nan=False, allow_subnormal=False)})


def _half(inputs, dropped):
    """x < 1/2 (false)."""
    return Outcome(0.5 - inputs["x"], engine="exact")


HALF = Claim(id="nbtest.half", title="x < 1/2 <b>&</b>", source="test", statement="x < 1/2", kind=Kind.EXACT,
             expectation=Expectation.HOLDS, strategy=lambda dropped: UNIT, check=_half)


def test_check_an_unregistered_claim_gives_verify_runs_record(tmp_path):
    rec = verify.check(HALF, profile="quick", seed=0, out=tmp_path)
    assert "nbtest.half" not in CLAIMS                       # run as given, and the registry is left as it was
    assert isinstance(rec, dict) and rec["claim"] == "nbtest.half"
    assert rec.verdict == "violated" and not rec.met and rec["profile"] == "quick" and rec["seed"] == 0
    x = rec.counterexample_inputs["x"]
    assert 0.5 < x <= 1.0
    outcome = rec["counterexample"]["outcome"]
    assert outcome["margin"] == 0.5 - x and outcome["error"] == 0.0
    cx = tmp_path / "counterexamples" / "nbtest.half.json"
    assert rec["reproduce"] == f"verify reproduce {cx}" and json.loads(cx.read_text())["inputs"] == \
        rec["counterexample"]["inputs"]
    again = verify.check(HALF, profile="quick", seed=0)      # the same seed, the same counterexample
    assert again["counterexample"]["inputs"] == rec["counterexample"]["inputs"]
    page = rec._repr_html_()
    assert "violated" in page and "x &lt; 1/2 &lt;b&gt;&amp;&lt;/b&gt;" in page and "<b>&</b>" not in page
    assert "margin against error" in page and "verify reproduce" in page
    # the figure: the normalized margin 1/2 - x of every example evaluated, coloured by its outcome
    assert len(rec.margins) == rec["examples"] and (0.5 - x, "violated") in rec.margins
    assert all(s == ("holds" if m > 0 else "violated" if m < 0 else "inconclusive") for m, s in rec.margins)
    m = re.search(r"<img alt='normalized margin of each example' src='data:image/png;base64,([A-Za-z0-9+/=]+)'",
                  page)
    assert m and base64.b64decode(m.group(1)).startswith(b"\x89PNG\r\n\x1a\n")


def test_check_by_id_and_bad_input():
    rec = verify.check("rc20.neg.det_negative", profile="quick", seed=0)
    assert rec.claim == "rc20.neg.det_negative" and rec["expectation"] == "refuted"
    with pytest.raises(InvalidInput, match="unknown claim id"):
        verify.check("no.such.claim")
    with pytest.raises(InvalidInput, match="unknown profile"):
        verify.check(HALF, profile="fast")


@pytest.fixture(scope="module")
def trajectory():
    model = DeepMatrix(2, (2, 2))
    return get_engine("gf").run(rc20(), model, inits.balanced(model, 0.1, seed=0), until_loss=1e-6)


def test_trajectory_to_dataframe(trajectory):
    df = trajectory.to_dataframe()
    assert list(df.columns) == ["t", "loss", "loss_err", "product_err", "det_sign", "w[1,1]", "w[1,2]", "w[2,1]",
                                "w[2,2]"]
    assert len(df) == len(trajectory.points)
    np.testing.assert_array_equal(df["loss"].to_numpy(), trajectory.losses)
    np.testing.assert_array_equal(df["w[2,1]"].to_numpy(), trajectory.products[:, 1, 0])
    assert df.attrs["engine"] == "gf" and df.attrs["status"] == "completed"


def test_to_dataframe_without_pandas_says_what_to_install(trajectory, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)        # import pandas now raises ImportError
    with pytest.raises(ImportError, match=r"needs pandas, an optional extra: pip install 'implicit-reg-verify\["
                                          r"notebook\]'"):
        trajectory.to_dataframe()


def test_trajectory_html_has_a_table_and_a_png(trajectory):
    page = trajectory._repr_html_()
    assert "<table>" in page and "completed" in page and "final loss" in page
    m = re.search(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page)
    assert m and base64.b64decode(m.group(1)).startswith(b"\x89PNG\r\n\x1a\n")


def test_example_notebook_executes():
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")   # stored clean
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    html = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    assert any("<b>Trajectory</b>" in h and "data:image/png;base64," in h for h in html)
    assert any("mine.loss_monotone" in h and ">holds<" in h for h in html)
    assert any("mine.w11_bounded" in h and ">violated<" in h and "verify reproduce" in h for h in html)
    assert any("counterexample: {'depth': 2" in o.get("text", "") for o in outputs)
