"""``verify list``, ``show``, ``ablate``, ``reproduce`` and the progress output."""

from __future__ import annotations

import io
import json

from cli_helpers import TOY, read_lines, strict_loads


def test_list_prints_every_claim(cli):
    code, out, err = cli("list", "--claims", TOY)
    assert code == 0
    lines = out.splitlines()
    assert [ln.split()[0] for ln in lines] == ["toy.holds", "toy.violated", "toy.refuted", "toy.interrupt",
                                              "toy.markup", "toy.theorem", "toy.slow"]
    theorem = next(ln for ln in lines if ln.startswith("toy.theorem"))
    assert "trajectory" in theorem and "holds" in theorem and "Toy 2024, Theorem 6" in theorem
    assert "nonnegative, bounded" in theorem


def test_list_json(cli):
    code, out, err = cli("list", "--json", "--claims", TOY)
    assert code == 0
    data = json.loads(out)
    t = next(d for d in data if d["id"] == "toy.theorem")
    assert t["kind"] == "trajectory" and t["expectation"] == "holds" and t["source"] == "Toy 2024, Theorem 6"
    assert [h["name"] for h in t["hypotheses"]] == ["nonnegative", "bounded"]
    assert next(d for d in data if d["id"] == "toy.refuted")["expectation"] == "refuted"


def test_show_with_and_without_a_stored_verdict(cli, run_toy, tmp_path):
    code, out, err = cli("show", "toy.theorem", "--claims", TOY, "--out", tmp_path / "none")
    assert code == 0
    assert "statement:" in out and "x (2 - x) >= 0" in out and "Toy 2024, Theorem 6" in out
    assert "- nonnegative: x >= 0" in out and "Evaluates x (2 - x)" in out
    assert "last stored verdict: none" in out
    _, _, _, d = run_toy("toy.violated")
    code, out, err = cli("show", "toy.violated", "--claims", TOY, "--out", d)
    assert "last stored verdict: violated (NOT met" in out and "counterexamples/toy.violated.json" in out


def test_ablate_tabulates_necessary_hypotheses(cli, tmp_path):
    code, out, err = cli("ablate", "toy.theorem", "--claims", TOY, "--out", tmp_path)
    assert code == 0, out + err
    assert "without nonnegative  NECESSARY: counterexample" in out
    assert "without bounded      not shown necessary: holds on 7 examples" in out
    doc = strict_loads((tmp_path / "ablations" / "toy.theorem.json").read_text())
    rows = {h["hypothesis"]: h for h in doc["hypotheses"]}
    assert rows["nonnegative"]["necessary"] and rows["nonnegative"]["verdict"] == "violated"
    assert not rows["bounded"]["necessary"] and rows["bounded"]["examples"] == 7
    cx = strict_loads((tmp_path / rows["nonnegative"]["counterexample_file"]).read_text())
    assert cx["parent"] == "toy.theorem" and cx["dropped"] == ["nonnegative"]
    code, out, err = cli("reproduce", tmp_path / rows["nonnegative"]["counterexample_file"])
    assert code == 0 and "reproduced: violated" in out


def test_counterexample_file_reproduces(cli, run_toy):
    _, _, _, d = run_toy("toy.violated")
    path = d / "counterexamples" / "toy.violated.json"
    doc = strict_loads(path.read_text())
    for key in ("claim", "verdict", "inputs", "seed", "profile", "engine", "tolerances", "versions", "git_commit",
                "claims_modules", "command"):
        assert key in doc
    assert doc["command"] == f"verify reproduce {path}"
    x = doc["inputs"]["x"]
    assert float.fromhex(x["__float__"]) > 0.5  # exact float
    code, out, err = cli("reproduce", path)
    assert code == 0 and "reproduced: violated" in out


def test_reproduce_exits_1_when_the_verdict_does_not_reproduce(cli, run_toy):
    _, _, _, d = run_toy("toy.violated")
    path = d / "counterexamples" / "toy.violated.json"
    doc = json.loads(path.read_text())
    doc["inputs"] = {"x": 0.25}  # an input on which the claim holds
    path.write_text(json.dumps(doc))
    code, out, err = cli("reproduce", path)
    assert code == 1 and "NOT reproduced: stored violated, now holds" in out


def test_reproduce_of_an_error_counterexample(cli, run_toy):
    from cli_helpers import TOY_ERRORS
    _, _, _, d = run_toy("toyerr.raises", claims=TOY_ERRORS)
    code, out, err = cli("reproduce", d / "counterexamples" / "toyerr.raises.json")
    assert code == 0 and "ZeroDivisionError" in out and "reproduced: error" in out


def test_reproduce_bad_files_exit_2(cli, tmp_path):
    code, out, err = cli("reproduce", tmp_path / "missing.json")
    assert code == 2 and "does not exist" in err
    (tmp_path / "bad.json").write_text('{"claim": 3}')
    code, out, err = cli("reproduce", tmp_path / "bad.json")
    assert code == 2 and "is not a counterexample file" in err


def test_results_lines_are_strict_json_with_every_field(run_toy):
    _, _, _, d = run_toy()
    recs = read_lines(d)
    assert len(recs) == 7
    for r in recs:
        for key in ("schema_version", "claim", "expectation", "verdict", "met", "examples", "smallest_margin",
                    "seconds", "engine", "seed", "profile", "versions", "git_commit"):
            assert key in r, key
        assert set(r["versions"]) == {"hypothesis", "numpy", "scipy", "mpmath", "gmpy2", "python-flint", "sympy",
                                      "torch"}
        assert r["verdict"] in ("holds", "violated", "inconclusive", "error")


def test_strict_json_encodes_non_finite_numbers():
    import numpy as np

    from verify import store

    text = store.dumps({"a": float("nan"), "b": [float("inf"), -np.inf], "c": np.float64(1.5), "d": np.arange(2),
                        "e": (1, 2)})
    assert json.loads(text) == {"a": "nan", "b": ["inf", "-inf"], "c": 1.5, "d": [0, 1], "e": [1, 2]}
    strict_loads(text)


def test_progress_lines_on_a_pipe_and_a_bar_on_a_terminal():
    from verify.progress import BarProgress, LineProgress, make_progress

    class Tty(io.StringIO):
        def isatty(self):
            return True

    rec = {"claim": "toy.holds", "verdict": "holds", "met": True, "examples": 7, "seconds": 0.25}
    pipe = io.StringIO()
    p = make_progress(pipe)
    assert isinstance(p, LineProgress)
    p.start(2)
    p.done(rec)
    p.done({**rec, "claim": "toy.violated", "verdict": "violated", "met": False})
    p.finish()
    lines = pipe.getvalue().splitlines()
    assert len(lines) == 3 and "\r" not in pipe.getvalue()
    assert lines[1].startswith("[1/2] toy.holds") and "holds" in lines[1] and "7 examples" in lines[1]
    assert "0.25 s" in lines[1] and "(expectation not met)" in lines[2]

    tty = Tty()
    bar = make_progress(tty)
    assert isinstance(bar, BarProgress)
    bar.start(2)
    bar.done(rec)
    bar.done({**rec, "claim": "toy.violated", "verdict": "violated", "met": False})
    bar.finish()
    text = tty.getvalue()
    assert "\r" in text and "2/2" in text and "holds=1 violated=1" in text   # tqdm, redrawn in place
    assert "toy.violated" in text and "(expectation not met)" in text    # printed above the bar
