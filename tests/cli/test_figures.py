"""The figures draw what the engines computed: the engine's det sign, sigma_2 only where float64 resolves it,
erank - 1 on a log axis, error bands only where visible, every depth distinguishable, captions naming the engine."""

from __future__ import annotations

import math

import pytest
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure

from properties.measures import erank_excess_from_ratio
from properties.rc20 import s_of_loss, w11_lower_bound, w11_s_lower_bound
from reports import figures


def _pt(loss, w11, s2, *, sign=1, product_err=1e-12, sigma2_err=None):
    """A stored point as verify.figure_data writes it (the bounds and measures from properties)."""
    s1 = w11
    return {"t": 1.0, "loss": loss, "loss_err": 1e-16, "product_err": product_err, "w11": w11,
            "bound": w11_lower_bound(loss), "s": s_of_loss(loss), "w11_s": w11 * s_of_loss(loss),
            "bound_s": w11_s_lower_bound(loss), "sigma": [s1, s2],
            "sigma2_err": 2 * product_err + 2 * 2.2e-16 * s1 if sigma2_err is None else sigma2_err,
            "erank": 1.0, "erank_minus_one": erank_excess_from_ratio(s2 / s1), "det_sign": sign, "norm": w11}


def _data(runs):
    return {"runs": [{"label": f"depth {i + 2}", "settings": {"depth": i + 2, "init": "balanced", "det": "positive"},
                      "status": "completed", "engine": "gf", "points": pts} for i, pts in enumerate(runs)]}


def _draw(fn, data) -> Figure:
    with figures.style():
        fig = Figure(figsize=(9, 4))
        fn(data, fig)
    return fig


def test_det_sign_is_the_engines_recorded_sign_not_a_det_of_the_product():
    # one run whose rounded product would give det <= 0 (w11 * s2 - 1 < 0) but whose engine sign is +1 throughout,
    # one run that flips, one point the engine could not resolve
    keep = [_pt(10.0 ** -k, 1.0, 0.0, sign=1) for k in range(6)]
    flip = [_pt(10.0 ** -k, 1.0, 0.1, sign=1 if k < 3 else -1) for k in range(6)]
    flip[4]["det_sign"] = None
    fig = _draw(figures.fig_det_sign, _data([keep, flip]))
    ax = fig.axes[0]
    marks = {(ln.get_marker(), y) for ln in ax.get_lines() for y in ln.get_ydata()}
    by_row = {row: sorted(m for m, y in marks if y == row) for row in (0, 1)}
    assert by_row[0] == ["+"]  # row 0: only det > 0, as the engine recorded
    assert by_row[1] == ["+", "_", "x"]
    counts = {ln.get_marker(): len(ln.get_xdata()) for ln in ax.get_lines() if set(ln.get_ydata()) == {1}}
    assert counts == {"+": 3, "_": 2, "x": 1}
    assert ax.get_yscale() == "linear" and [t.get_text() for t in ax.get_yticklabels()][0].startswith("depth 2")


def test_sigma2_is_drawn_only_where_float64_resolves_it_with_an_upper_bound_elsewhere():
    pts = [_pt(1e-2, 10.0, 1e-3, product_err=1e-8),     # 1e-3 >= 10 * (2e-8 + 4.4e-15): resolved
           _pt(1e-4, 100.0, 1e-9, product_err=1e-9),    # 1e-9 < 10 * 2e-9: noise, upper bound 1e-9 + 2e-9 + ...
           _pt(1e-6, 1000.0, 0.0, product_err=0.0),     # exact product but rounding: err = 2 eps sigma_1
           {**_pt(1e-8, 1e4, 1e-3), "sigma2_err": None}]  # no error recorded: unknown, never drawn
    res, unres = figures.sigma2_points(pts)
    assert [r[:2] for r in res] == [(1e-2, 1e-3)]
    assert unres[0][0] == 1e-4 and unres[0][1] == pytest.approx(1e-9 + 2e-9 + 2 * 2.2e-16 * 100, rel=1e-12)
    assert unres[1] == (1e-6, pytest.approx(2 * 2.2e-16 * 1000))
    assert len(res) + len(unres) == 3  # the point without an error estimate is neither drawn nor bounded


def test_erank_panel_is_a_log_axis_and_w11_panel_separates_the_depths():
    runs = [[_pt(10.0 ** -k, (1 + 0.05 * d) / math.sqrt(2 * 10.0 ** -k), 10.0 ** -(k + d)) for k in range(1, 8)]
            for d in range(3)]
    fig = _draw(figures.fig_sigma_erank, _data(runs))
    assert fig.axes[1].get_yscale() == "log" and fig.axes[1].get_ylabel() == "erank - 1"
    for d, ln in enumerate(fig.axes[1].get_lines()):   # the stored erank - 1 of each resolved point, drawn as is
        want = [erank_excess_from_ratio(10.0 ** -(k + d) / ((1 + 0.05 * d) / math.sqrt(2 * 10.0 ** -k)))
                for k in range(1, 8)]
        assert list(ln.get_ydata()) == want
    fig = _draw(figures.fig_w11, _data(runs))
    right = fig.axes[1]
    curves = [ln for ln in right.get_lines() if ln.get_label().startswith("depth")]
    assert len(curves) == 3 and len({ln.get_marker() for ln in curves}) == 3
    for d, ln in enumerate(curves):  # |w11| s, on a linear axis: 1 + 0.05 d, separated
        assert list(ln.get_ydata()) == pytest.approx([1 + 0.05 * d] * 7, rel=1e-12)
    texts = [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
    assert "bound (1 - s)^2" in texts and "bound (1 - s)^2 / s" in texts  # s, never L, for sqrt(2 loss)
    assert not any("2L" in t or "L)" in t for t in texts) and right.get_ylabel() == "|w11| s,  s = sqrt(2 loss)"


def test_error_bands_appear_only_where_the_estimate_is_visible():
    small = [[_pt(10.0 ** -k, 10.0 ** k, 1e-3, product_err=1e-9 * 10.0 ** k) for k in range(1, 6)]]
    large = [[_pt(10.0 ** -k, 10.0 ** k, 1e-3, product_err=0.05 * 10.0 ** k) for k in range(1, 6)]]
    bands = lambda fig: sum(isinstance(c, PolyCollection) for c in fig.axes[0].collections)  # noqa: E731
    assert bands(_draw(figures.fig_w11, _data(small))) == 0
    assert bands(_draw(figures.fig_w11, _data(large))) == 1
    assert "below the plot's resolution: no band" in figures.explain_w11(_data(small))
    assert "Shaded: |w11| +- the engine's error estimate (up to 0.05 relative)" in figures.explain_w11(_data(large))
    unknown = [[{**_pt(0.1, 10.0, 1e-3), "product_err": None}]]
    assert "no error estimate" in figures.explain_w11(_data(unknown))


def test_captions_say_which_engine_drew_the_runs():
    data = _data([[_pt(0.1, 10.0, 1e-3)], [_pt(0.1, 10.0, 1e-3)]])
    data["runs"][1]["status"] = "precision_lost"
    for spec in figures.FIGURES[:4]:
        assert "Engine: gf; 2 runs, completed, precision_lost." in spec.caption_for(data), spec.name


@pytest.mark.filterwarnings("ignore:Attempt.*xlim:UserWarning")   # matplotlib on the empty right-hand log axis
def test_figure_data_written_before_the_stored_bounds_draws_without_them():
    # a data file from before s, w11_s, bound_s and erank_minus_one were stored (verify report on an older run)
    old = [[{k: v for k, v in _pt(10.0 ** -k, 10.0 ** k, 1e-3).items()
             if k not in ("s", "w11_s", "bound_s", "erank_minus_one")} for k in range(1, 6)]]
    fig = _draw(figures.fig_w11, _data(old))
    assert len(fig.axes[0].get_lines()) == 2                        # |w11| and its bound, from the stored bound
    assert all(len(ln.get_xdata()) == 0 for ln in fig.axes[1].get_lines())   # nothing stored to draw on the right
    fig = _draw(figures.fig_sigma_erank, _data(old))
    assert all(len(ln.get_xdata()) == 0 for ln in fig.axes[1].get_lines())


def test_a_run_computes_the_figures_of_the_claims_it_selects_only():
    # every built-in figure names the claims it illustrates, each pattern matches a built-in claim, a full run draws
    # every figure, and a run of one RC20 theorem does not pay for the tensor or ACHL19 experiment runs
    import fnmatch

    import properties  # noqa: F401  -- registers the built-in claims
    from properties.api import CLAIMS
    from verify import figure_data

    assert set(figure_data.FIGURE_CLAIMS) == set(figure_data.FIGURES)
    for name, patterns in figure_data.FIGURE_CLAIMS.items():
        for pat in patterns:
            assert any(fnmatch.fnmatchcase(c, pat) for c in CLAIMS), (name, pat)
    assert figure_data.figures_for(CLAIMS) == list(figure_data.FIGURES)
    assert figure_data.figures_for(["rc20.thm1.norms"]) == ["rc20_depths"]
    assert figure_data.figures_for(["toy.holds"]) == []
