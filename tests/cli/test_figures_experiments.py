"""The experiment figures: their data from the compiled runs (reduced specs), drawn from JSON byte-stably, the way
the papers draw them (|w11| against the loss coloured by iteration; error against observations with the baseline)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure

from reports import figures, figures_experiments
from verify import figure_data, figure_data_experiments as fde


def test_experiment_figures_are_registered_for_data_and_drawing():
    assert {"rc20_gd", "rc20_tc_sweep"} <= set(figure_data.FIGURES)
    assert {"rc20_gd", "rc20_tc_sweep"} <= {s.name for s in figures.FIGURES}


def test_thin_keeps_ends_and_spreads_in_log_loss():
    losses = np.logspace(0, -8, 10_000)
    keep = fde.thin(losses, 50)
    assert keep[0] == 0 and keep[-1] == 9999 and len(keep) <= 50
    gaps = np.diff(np.log10(losses[keep]))
    assert np.max(np.abs(gaps)) <= 2.5 * 8 / 49


def test_gd_run_data_is_the_official_run_and_draws_byte_stably(tmp_path):
    run = {"label": "depth 3", "depth": 3, "eps": None, "seed": 0, "until_loss": 3e-2}
    data = fde.compute_run("rc20_gd", run)
    pts = data["points"]
    assert data["status"] == "completed" and pts[0]["step"] == 0 and pts[-1]["loss"] <= 3e-2
    steps = [p["step"] for p in pts]
    assert steps == sorted(steps) and all(s % 50 == 0 for s in steps[:-1])
    assert pts[-1]["w11"] > 2.0 > pts[0]["w11"]  # |w11| ~ 2.96 at loss 3e-2 (gradient flow agrees, claim (a))
    doc = {"runs": [{"label": "depth 3", "settings": run, **data},
                    {"label": "eps = 0.1", "settings": {**run, "eps": 0.1}, **data}]}
    path = tmp_path / "data"
    path.mkdir()
    (path / "rc20_gd.json").write_text(json.dumps(doc))
    spec = next(s for s in figures.FIGURES if s.name == "rc20_gd")
    a = [hashlib.sha256(p.read_bytes()).hexdigest() for p in figures.render_figure(spec, doc, tmp_path / "a")]
    b = [hashlib.sha256(p.read_bytes()).hexdigest() for p in figures.render_figure(spec, doc, tmp_path / "b")]
    assert a == b
    with figures.style():
        fig = Figure()
        figures_experiments.fig_gd(doc, fig)
    scat = [c for ax in fig.axes[:2] for c in ax.collections if isinstance(c, PathCollection)]
    assert len(scat) == 2 and all(len(c.get_array()) == len(pts) - 1 for c in scat)  # coloured by iteration
    assert fig.axes[0].xaxis_inverted() and fig.axes[0].get_yscale() == "log"


def test_tc_sweep_run_data_and_figure(tmp_path):
    run = {"label": "300 observations", "m": 300, "data_seed": 0, "init_seed": 0}
    data = fde.compute_run("rc20_tc_sweep", run)
    p = data["points"][0]
    assert len(p["errors"]) == 5 and max(p["errors"]) < 0.05 * p["baseline"]
    assert max(p["rank1_residuals"]) < 0.05
    doc = {"runs": [{"label": run["label"], "settings": run, **data}]}
    spec = next(s for s in figures.FIGURES if s.name == "rc20_tc_sweep")
    a = [hashlib.sha256(q.read_bytes()).hexdigest() for q in figures.render_figure(spec, doc, tmp_path / "a")]
    b = [hashlib.sha256(q.read_bytes()).hexdigest() for q in figures.render_figure(spec, doc, tmp_path / "b")]
    assert a == b
    assert "Every seed met the stop rule." in spec.caption_for(doc)
