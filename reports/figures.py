"""Figures of the report, drawn with matplotlib (Agg) from the stored JSON under ``DIR/figures/data/``.

Nothing here runs dynamics or re-derives a bound or a measure: the data files are written by
:mod:`verify.figure_data`, with the bounds and measures computed by :mod:`properties` (``bound``, ``s``,
``w11_s``, ``bound_s``, ``erank_minus_one``), and the figures draw them. Output is byte-stable: the
same data gives the same bytes (SVG with a fixed ``svg.hashsalt`` and no date, PNG without the software tag),
so figures can be diffed in review. Each figure is written as SVG (inlined by link in the HTML report) and PNG
(for Markdown).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import matplotlib

matplotlib.use("Agg", force=False)
from matplotlib.figure import Figure  # noqa: E402  -- after the backend choice
from matplotlib.ticker import LogLocator, NullFormatter  # noqa: E402

RC = {
    "svg.hashsalt": "verify-report",
    "svg.fonttype": "path",
    "font.size": 9,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "figure.dpi": 100,
    "savefig.dpi": 150,
    "path.simplify": False,
    "axes.formatter.use_mathtext": False,
}


def style():
    """The context in which every figure of the report is made and saved (byte-stable settings)."""
    return matplotlib.rc_context(RC)


def band_visible(points, fraction: float = 0.005) -> bool:
    """Whether an error band is visible at the plot's scale: ``points`` are ``[x, y, err, ...]`` rows; the band is
    drawn when the largest error is at least ``fraction`` of the y range the curve and band span (about 1.5 pixel
    on a 300-pixel axis)."""
    ys = [(num(p[1]), num(p[2])) for p in points if math.isfinite(num(p[1])) and math.isfinite(num(p[2]))]
    if not ys:
        return False
    lo, hi = min(y - e for y, e in ys), max(y + e for y, e in ys)
    emax = max(e for _, e in ys)
    return emax > 0 and (hi - lo <= 0 or emax >= fraction * (hi - lo))


def save(fig: Figure, out_dir: Path, name: str, *, top: float | None = None, **margins) -> list[Path]:
    """Write ``out_dir/NAME.svg`` and ``NAME.png`` byte-stably (call inside :func:`style`); ``top`` and
    ``margins`` override the default subplot margins."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    margins = {**_MARGINS[min(len(fig.axes), 2)], **margins}
    if top is not None:
        margins["top"] = top
    fig.subplots_adjust(**margins)
    svg, png = out_dir / f"{name}.svg", out_dir / f"{name}.png"
    fig.savefig(svg, format="svg", metadata={"Date": None})
    fig.savefig(png, format="png", metadata={"Software": None})
    return [svg, png]


def _decades(value, pos=None) -> str:
    """A log tick label ``1e-06`` (plain text: mathtext tick labels make drawing several times slower)."""
    if value <= 0:
        return ""
    e = math.log10(value)
    return f"1e{int(round(e)):+03d}" if abs(e - round(e)) < 1e-9 else ""


def _log(ax, which: str) -> None:
    axis = ax.xaxis if which == "x" else ax.yaxis
    (ax.set_xscale if which == "x" else ax.set_yscale)("log")
    axis.set_major_locator(LogLocator(base=10.0, numticks=8))
    axis.set_major_formatter(_decades)
    axis.set_minor_formatter(NullFormatter())


def num(x) -> float:
    """A stored number (``"nan"``/``"inf"`` strings included) as a float; None is NaN."""
    if x is None:
        return math.nan
    return float(x)


_f = num


def _positive(xs, ys):
    """The pairs where both are finite and positive (log axes)."""
    pts = [(a, b) for a, b in zip(xs, ys) if math.isfinite(a) and math.isfinite(b) and a > 0 and b > 0]
    return [a for a, _ in pts], [b for _, b in pts]


def _finite(xs, ys):
    pts = [(a, b) for a, b in zip(xs, ys) if math.isfinite(a) and math.isfinite(b)]
    return [a for a, _ in pts], [b for _, b in pts]


def _runs(data: dict):
    for run in data.get("runs", []):
        if run.get("points"):
            yield run


def _label(run: dict) -> str:
    status = run.get("status", "")
    return run["label"] + ("" if status in ("completed", "") else f" ({status})")


def loss_axis(ax) -> None:
    """A log x axis of the loss, decreasing to the right (the direction of the flow)."""
    _log(ax, "x")
    ax.set_xlabel("loss (decreasing along the flow)")
    ax.invert_xaxis()


_loss_axis = loss_axis
log_axis = _log


# ----- one function per figure ---------------------------------------------------------------------------------
MARKERS = ("o", "s", "^", "v", "D", "P", "X", "*")
LINESTYLES = ("-", "--", "-.", ":", (0, (5, 1, 1, 1)), (0, (3, 1)), (0, (1, 1)), "-")


def _style(i: int) -> dict:
    """A distinct marker and line style per run, so that overlapping curves stay distinguishable."""
    return {"marker": MARKERS[i % len(MARKERS)], "ls": LINESTYLES[i % len(LINESTYLES)], "ms": 3.5, "lw": 1,
            "markerfacecolor": "none"}


BAND_FRACTION = 0.005  # on a log axis, a relative error of 0.5% is about 1 pixel: the band is drawn from there


def rel_error(y: float, err: float) -> float:
    return err / y if y > 0 and math.isfinite(err) else math.inf


def band_on_log(ax, xs, ys, errs, colour) -> bool:
    """Shade ``y +- err`` when the largest relative error is visible on a log axis (and every error is known);
    returns whether it was drawn."""
    rel = [rel_error(y, e) for y, e in zip(ys, errs)]
    if not rel or not all(math.isfinite(r) for r in rel) or max(rel) < BAND_FRACTION:
        return False
    ax.fill_between(xs, [max(y - e, y * 1e-3) for y, e in zip(ys, errs)], [y + e for y, e in zip(ys, errs)],
                    color=colour, alpha=0.25, lw=0)
    return True


def max_rel_error(data: dict, value: str, err: str = "product_err") -> float:
    """The largest ``err / value`` over the recorded points (inf when some error is not recorded)."""
    worst = 0.0
    for run in _runs(data):
        for p in run["points"]:
            v, e = _f(p.get(value)), _f(p.get(err))
            if v > 0:
                worst = max(worst, rel_error(v, e) if not math.isnan(e) else math.inf)
    return worst


def fig_w11(data: dict, fig: Figure) -> None:
    """Left: |w11| against the loss (log-log) with the bound. Right: |w11| s (s = sqrt(2 loss)) on a linear axis,
    where every depth is visible as it approaches 1, with the bound (1 - s)^2 that det > 0 forces. The data carry
    ``bound``, ``s``, ``w11_s`` and ``bound_s`` (computed by :mod:`properties.rc20`); a data file written
    before they were stored (``verify report`` on an older run) draws without them."""
    ax1, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    bounds = {}
    for i, run in enumerate(_runs(data)):
        pts = [p for p in run["points"] if _f(p["loss"]) > 0]
        x, y = _positive([_f(p["loss"]) for p in pts], [_f(p["w11"]) for p in pts])
        line, = ax1.plot(x, y, label=_label(run), **_style(i))
        kept = [p for p in pts if _f(p["w11"]) > 0]
        bounds.update((_f(p["loss"]), p) for p in kept
                      if math.isfinite(_f(p["w11"])) and math.isfinite(_f(p["loss"])))
        if len(kept) == len(x):
            band_on_log(ax1, x, y, [_f(p.get("product_err")) for p in kept], line.get_color())
        x2, y2 = _finite([_f(p["loss"]) for p in pts], [_f(p.get("w11_s")) for p in pts])
        ax2.plot(x2, y2, label=_label(run), **_style(i))
    if bounds:
        xs = sorted(bounds, reverse=True)
        bx, by = _positive(xs, [_f(bounds[v]["bound"]) for v in xs])
        bound, = ax1.plot(bx, by, "k--", lw=1.2, label="bound (1 - s)^2 / s")
        ax1.legend(handles=[bound], fontsize=7, loc="upper left")
        cx, cy = _finite(xs, [_f(bounds[v].get("bound_s")) if _f(bounds[v].get("s")) < 1 else math.nan for v in xs])
        ax2.plot(cx, cy, "k--", lw=1.2, label="bound (1 - s)^2")
    _log(ax1, "y")
    for ax in (ax1, ax2):
        _loss_axis(ax)
    ax1.set_ylabel("|w11|")
    ax1.set_title("|w11| against the loss")
    ax2.set_ylabel("|w11| s,  s = sqrt(2 loss)")
    ax2.set_title("|w11| s: every depth approaches 1")
    ax2.legend(fontsize=7)


RESOLVED = 10.0  # sigma_2 is drawn where it is at least this many times its float64 error (one significant digit)


def sigma2_points(points) -> tuple[list, list]:
    """``(resolved, unresolved)``: ``[(loss, sigma_2, erank_minus_one, err)]`` where float64 resolves sigma_2 (at
    least :data:`RESOLVED` times its error ``sigma2_err``), and ``[(loss, sigma_2 + sigma2_err)]``, upper bounds on
    the true sigma_2, elsewhere. A point without ``sigma2_err`` has an unknown error: never resolved, and no bound.
    ``erank_minus_one`` is the stored one (:func:`properties.measures.erank_excess_from_ratio`)."""
    res, unres = [], []
    for p in points:
        loss = _f(p["loss"])
        sig = [_f(v) for v in p["sigma"]]
        err = _f(p.get("sigma2_err"))
        if not loss > 0 or len(sig) < 2 or not math.isfinite(err):
            continue
        if sig[-1] > 0 and sig[-1] >= RESOLVED * err:
            res.append((loss, sig[-1], _f(p.get("erank_minus_one")), err))
        elif err > 0:
            unres.append((loss, max(sig[-1], 0.0) + err))
    return res, unres


def fig_sigma_erank(data: dict, fig: Figure) -> None:
    """Left: sigma_2 where float64 resolves it, an upper-bound marker where it does not, and Theorem 1's bound
    s = sqrt(2 loss). Right: erank - 1 (log axis) at the points where sigma_2 is resolved."""
    ax1, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    s_at = {}
    for i, run in enumerate(_runs(data)):
        res, unres = sigma2_points(run["points"])
        st = _style(i)
        colour = None
        if res:
            line, = ax1.plot([r[0] for r in res], [r[1] for r in res], label=_label(run), **st)
            colour = line.get_color()
            x, y = _positive([r[0] for r in res], [r[2] for r in res])
            ax2.plot(x, y, label=_label(run), color=colour, **st)
        if unres:
            ax1.plot(*zip(*unres), ls="none", marker="v", ms=3, alpha=0.6, color=colour,
                     label=None if colour else _label(run) + ": upper bounds only")
        s_at.update((_f(p["loss"]), _f(p.get("s"))) for p in run["points"] if _f(p["loss"]) > 0)
    if s_at:
        xs = sorted(s_at, reverse=True)
        bx, by = _positive(xs, [s_at[v] if s_at[v] < 1 else math.nan for v in xs])
        ax1.plot(bx, by, "k--", lw=1.2, label="bound s = sqrt(2 loss)")
    ax1.plot([], [], ls="none", marker="v", color="0.4", label="not resolved: upper bound")
    _log(ax1, "y")
    _log(ax2, "y")
    for ax in (ax1, ax2):
        _loss_axis(ax)
    ax1.set_ylabel("sigma_2(W)")
    ax1.set_title("second singular value (where float64 resolves it)")
    ax2.set_ylabel("erank - 1")
    ax2.set_title("effective rank minus 1 (Roy & Vetterli)")
    ax1.legend(fontsize=6)


def fig_det_sign(data: dict, fig: Figure) -> None:
    """The det sign each engine recorded, one row per run: + (det > 0), - (det < 0), x (not resolved)."""
    ax = fig.add_subplot(1, 1, 1)
    runs = list(_runs(data))
    colours = {1: "#1a7f37", -1: "#c00000", None: "0.5"}
    shown = set()
    for row, run in enumerate(runs):
        pts = [p for p in run["points"] if _f(p["loss"]) > 0]
        for sign, marker, name in ((1, "+", "det > 0"), (-1, "_", "det < 0"), (None, "x", "sign not resolved")):
            xs = [_f(p["loss"]) for p in pts if p.get("det_sign") == sign]
            if xs:
                ax.plot(xs, [row] * len(xs), ls="none", marker=marker, ms=6, mew=1.5, color=colours[sign],
                        label=None if name in shown else name)
                shown.add(name)
    ax.set_yticks(range(len(runs)))
    ax.set_yticklabels([_sign_label(r) for r in runs], fontsize=7)
    ax.set_ylim(len(runs) + 0.4, -0.6)  # an empty row at the bottom holds the legend
    ax.grid(False, axis="y")
    _loss_axis(ax)
    ax.set_title("sign of det W along gradient flow, as the engine recorded it")
    ax.legend(fontsize=7, loc="lower right", ncol=3)


def _sign_label(run: dict) -> str:
    st = run.get("settings") or {}
    if "depth" in st and "init" in st and "det" in st:
        text = f"depth {st['depth']}, {st['init']}, det(0) {'>' if st['det'] == 'positive' else '<'} 0"
    else:
        text = run.get("label", "?")
    status = run.get("status", "")
    return text + ("" if status in ("completed", "") else f" ({status})")


def fig_perturbed(data: dict, fig: Figure) -> None:
    ax = fig.add_subplot(1, 1, 1)
    for i, run in enumerate(_runs(data)):
        pts = [p for p in run["points"] if _f(p["loss"]) > 0 and _f(p["norm"]) > 0]
        x, y = [_f(p["loss"]) for p in pts], [_f(p["norm"]) for p in pts]
        line, = ax.plot(x, y, label=_label(run), **_style(i))
        band_on_log(ax, x, y, [2.0 * _f(p.get("product_err")) for p in pts], line.get_color())
    _log(ax, "y")
    _loss_axis(ax)
    ax.set_ylabel("||W||_F")
    ax.set_title("perturbed RC20 [[*, 1], [1, eps]], depth 3: norm against loss")
    ax.legend(fontsize=7)


def fig_cp_norms(data: dict, fig: Figure) -> None:
    ax1, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for run in _runs(data):
        t = [_f(p["t"]) for p in run["points"]]
        k = max((len(p["norms"]) for p in run["points"]), default=0)
        for r in range(k):
            x, y = _positive(t, [_f(p["norms"][r]) if r < len(p["norms"]) else math.nan for p in run["points"]])
            ax1.plot(x, y, lw=1, label=f"component {r + 1}")
        x, y = _positive(t, [_f(p["loss"]) for p in run["points"]])
        ax2.plot(x, y, lw=1, label=_label(run))
        ax1.set_xlabel(run.get("x_label", "time"))   # what the figure data says its positions count
        ax2.set_xlabel(run.get("x_label", "time"))
    for ax in (ax1, ax2):
        _log(ax, "x")
        _log(ax, "y")
    ax1.set_ylabel("component norm (sorted)")
    ax1.set_title("CP component norms")
    ax2.set_ylabel("loss")
    ax2.set_title("loss")
    ax1.legend(fontsize=7)
    ax2.legend(fontsize=7)


def engines_sentence(data: dict) -> str:
    """Which engine drew the runs, and how they ended."""
    runs = [r for r in data.get("runs", [])]
    engines = sorted({str(r.get("engine") or "?") for r in runs})
    statuses = sorted({str(r.get("status") or "?") for r in runs})
    return (f"Engine: {', '.join(engines)}; {len(runs)} run{'s' if len(runs) != 1 else ''}, "
            f"{'all ' if len(statuses) == 1 and len(runs) > 1 else ''}{', '.join(statuses)}.")


def _band_sentence(worst: float, what: str) -> str:
    if not math.isfinite(worst):
        return f"Some points record no error estimate for {what}: no band is drawn."
    if worst >= BAND_FRACTION:
        return f"Shaded: {what} +- the engine's error estimate (up to {worst:.2g} relative)."
    return (f"The engine's error estimate of {what} (at most {worst:.2g} relative) is below the plot's "
            f"resolution: no band.")


def explain_w11(data: dict) -> str:
    return _band_sentence(max_rel_error(data, "w11"), "|w11|") + " " + engines_sentence(data)


def explain_sigma(data: dict) -> str:
    res = unres = 0
    for run in _runs(data):
        a, b = sigma2_points(run["points"])
        res, unres = res + len(a), unres + len(b)
    return (f"sigma_2 is drawn where it is at least {RESOLVED:g} times its float64 error 2 product_err + "
            f"2 eps sigma_1 ({res} points); where it is not ({unres} points, the float64 SVD of the rounded "
            f"product returns noise there), a triangle marks the upper bound computed sigma_2 + that error. "
            + engines_sentence(data))


def explain_det(data: dict) -> str:
    return ("Each mark is the det sign the engine recorded at a point (from the factors, without cancellation), "
            "not the det of the rounded float64 product. " + engines_sentence(data))


def explain_perturbed(data: dict) -> str:
    return _band_sentence(max_rel_error(data, "norm"), "the norm") + " " + engines_sentence(data)


def explain_cp(data: dict) -> str:
    return ("Gradient descent iterates in float64 (no error estimate: the map is computed, not approximated). "
            + engines_sentence(data))


@dataclass(frozen=True)
class FigureSpec:
    """A figure: the data file it reads, how to draw it, its size, its caption and what the data adds to it."""

    name: str
    data: str
    draw: Callable[[dict, Figure], None]
    size: tuple[float, float]
    caption: str
    explain: Callable[[dict], str] | None = None
    margins: tuple = ()

    def caption_for(self, data: dict) -> str:
        return self.caption + (" " + self.explain(data) if self.explain else "")


FIGURES = (
    FigureSpec("rc20_w11", "rc20_depths", fig_w11, (9.0, 3.8),
               "RC20 [[*, 1], [1, 0]], balanced init with det > 0, depths 2-6, gradient flow. Left: |w11| against "
               "the loss, with the bound (1 - s)^2 / s (s = sqrt(2 loss)) that a positive det forces: |w11| grows "
               "without bound as the loss falls. Right: |w11| s, where the depths separate: each approaches 1, "
               "above the bound (1 - s)^2.", explain_w11),
    FigureSpec("rc20_sigma_erank", "rc20_depths", fig_sigma_erank, (9.0, 3.8),
               "RC20, the same runs. Left: the second singular value of the end-to-end matrix against the loss, "
               "below Theorem 1's bound s = sqrt(2 loss). Right: the effective rank minus 1 (log axis), from the "
               "resolved sigma_2 / sigma_1: the effective rank approaches 1 as the loss falls.", explain_sigma),
    FigureSpec("det_sign", "det_sign", fig_det_sign, (6.4, 4.2),
               "Sign of det W along gradient flow, depths 2 and 3, one row per run: from balanced inits it keeps "
               "its sign, as the lemma says; from unbalanced Gaussian inits it need not (the negative control "
               "rc20.neg.unbalanced).", explain_det, margins=(("left", 0.27),)),
    FigureSpec("rc20_perturbed", "rc20_perturbed", fig_perturbed, (6.4, 4.2),
               "The perturbed problem [[*, 1], [1, eps]] for several eps, depth 3, balanced init with det > 0, "
               "gradient flow: Frobenius norm against the loss.", explain_perturbed),
    FigureSpec("cp_norms", "cp_norms", fig_cp_norms, (9.0, 3.8),
               "CP tensor factorization (order 3): component norms and loss over time from a small Gaussian init.",
               explain_cp),
)


# The experiment figures (rc20_gd, rc20_tc_sweep) are drawn by reports.figures_experiments, the same way; they
# follow the other RC20 figures (cp_norms, of RMC21, stays last).
from .figures_experiments import FIGURES as _EXPERIMENT_FIGURES  # noqa: E402

FIGURES = FIGURES[:-1] + _EXPERIMENT_FIGURES + FIGURES[-1:]

_MARGINS = {1: dict(left=0.12, right=0.97, bottom=0.12, top=0.92),
            2: dict(left=0.08, right=0.98, bottom=0.14, top=0.9, wspace=0.28)}


def render_figure(spec: FigureSpec, data: dict, out_dir: Path) -> list[Path]:
    """Draw one figure to ``out_dir/NAME.svg`` and ``NAME.png`` (byte-stable)."""
    with style():
        fig = Figure(figsize=spec.size)
        spec.draw(data, fig)
        return save(fig, out_dir, spec.name, **dict(spec.margins))


def render_all(data_dir: str | Path, out_dir: str | Path, *, draw: bool = True) -> list[dict]:
    """Draw every figure whose data file exists; returns ``[{name, svg, png, caption, notes}]`` (names relative to
    ``out_dir``). With ``draw=False`` nothing is drawn: the figures already in ``out_dir`` are listed."""
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    made = []
    for spec in FIGURES:
        path = data_dir / f"{spec.data}.json"
        if not path.exists():
            continue
        data = json.loads(path.read_text(encoding="utf-8"))
        if draw:
            svg, png = render_figure(spec, data, out_dir)
        else:
            svg, png = out_dir / f"{spec.name}.svg", out_dir / f"{spec.name}.png"
            if not (svg.exists() and png.exists()):
                continue
        notes = [f"{r['label']}: {r.get('status')} ({r.get('message', '')})" for r in data.get("runs", [])
                 if r.get("status") not in ("completed", None)]
        made.append({"name": spec.name, "svg": svg.name, "png": png.name, "caption": spec.caption_for(data),
                     "notes": notes})
    return made
