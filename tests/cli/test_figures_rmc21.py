"""The RMC21 incremental-learning figure: its data from the claim's order-3 ladder, drawn byte-stably from JSON the
way the paper draws it (the ten largest component norms against the iterations, one panel per init std)."""

from __future__ import annotations

import hashlib
import json

from matplotlib.figure import Figure

from reports import figures, figures_experiments
from verify import figure_data, figure_data_experiments as fde


def test_rmc21_figure_data_and_drawing(tmp_path):
    assert "rmc21_incremental" in figure_data.FIGURES and "rmc21_incremental" in {s.name for s in figures.FIGURES}
    run = figure_data.FIGURES["rmc21_incremental"]["runs"][0]
    data = fde.compute_run("rmc21_incremental", run)
    ladder = data["points"]
    assert [r["std"] for r in ladder] == [0.05, 0.005, 0.00005] and data["status"] in ("completed", "budget")
    for r in ladder:
        steps = [p["step"] for p in r["points"]]
        assert steps[0] == 0 and steps == sorted(steps) and steps[-1] == r["steps"] and len(steps) <= 301
        finals = r["points"][-1]["norms"]
        assert len(finals) == 10 and finals == sorted(finals, reverse=True)
        assert sum(v >= 0.05 for v in finals) == min(r["count"], 10)
    # the figure's point: fewer components leave zero as the init shrinks, down to the target rank (3)
    assert ladder[0]["count"] > ladder[-1]["count"] == 3
    doc = json.loads(json.dumps({"runs": [{"label": run["label"], "settings": run, **data}]}))
    spec = next(s for s in figures.FIGURES if s.name == "rmc21_incremental")
    a = [hashlib.sha256(q.read_bytes()).hexdigest() for q in figures.render_figure(spec, doc, tmp_path / "a")]
    b = [hashlib.sha256(q.read_bytes()).hexdigest() for q in figures.render_figure(spec, doc, tmp_path / "b")]
    assert a and a == b
    with figures.style():
        fig = Figure()
        figures_experiments.fig_rmc21_incremental(doc, fig)
    assert len(fig.axes) == 3 and all(len(ax.lines) == 11 for ax in fig.axes)  # 10 norms + the threshold
    assert "std 5e-05: 3 components" in spec.caption_for(doc)
