"""Figures of the report, drawn with matplotlib (Agg) from the stored JSON under ``DIR/figures/data/``.

Nothing here runs dynamics: the data files are written by :mod:`verify.figure_data`. Output is byte-stable: the
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
    "savefig.dpi": 100,
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


def save(fig: Figure, out_dir: Path, name: str, *, top: float | None = None) -> list[Path]:
    """Write ``out_dir/NAME.svg`` and ``NAME.png`` byte-stably (call inside :func:`style`)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    margins = dict(_MARGINS[min(len(fig.axes), 2)])
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
def fig_w11(data: dict, fig: Figure) -> None:
    ax = fig.add_subplot(1, 1, 1)
    losses = []
    for run in _runs(data):
        x, y = _positive([_f(p["loss"]) for p in run["points"]], [_f(p["w11"]) for p in run["points"]])
        losses += x
        ax.plot(x, y, marker=".", ms=3, lw=1, label=_label(run))
    if losses:
        xs = sorted(set(losses), reverse=True)
        bx, by = _positive(xs, [_bound(v) for v in xs])
        ax.plot(bx, by, "k--", lw=1.2, label=r"bound $(1-\sqrt{2L})^2/\sqrt{2L}$")
    _log(ax, "y")
    _loss_axis(ax)
    ax.set_ylabel(r"$|w_{11}|$")
    ax.set_title(r"RC20: $|w_{11}|$ against loss, det$(W_0)>0$ (gradient flow)")
    ax.legend(fontsize=7)


def _bound(loss: float) -> float:
    r = math.sqrt(2.0 * loss) if loss > 0 else 0.0
    return (1.0 - r) ** 2 / r if 0 < r < 1 else math.nan


def fig_sigma_erank(data: dict, fig: Figure) -> None:
    ax1, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for run in _runs(data):
        loss = [_f(p["loss"]) for p in run["points"]]
        x, y = _positive(loss, [_f(p["sigma"][-1]) for p in run["points"]])
        ax1.plot(x, y, marker=".", ms=3, lw=1, label=_label(run))
        x, y = _finite([v if v > 0 else math.nan for v in loss], [_f(p["erank"]) for p in run["points"]])
        ax2.plot(x, y, marker=".", ms=3, lw=1, label=_label(run))
    _log(ax1, "y")
    for ax in (ax1, ax2):
        _loss_axis(ax)
    ax1.set_ylabel(r"$\sigma_2(W)$")
    ax1.set_title(r"second singular value")
    ax2.set_ylabel("effective rank")
    ax2.set_title("effective rank (Roy & Vetterli)")
    ax1.legend(fontsize=7)


def fig_det_sign(data: dict, fig: Figure) -> None:
    ax = fig.add_subplot(1, 1, 1)
    for run in _runs(data):
        x, y = _finite([_f(p["loss"]) for p in run["points"]], [_f(p["det"]) for p in run["points"]])
        x, y = zip(*[(a, b) for a, b in zip(x, y) if a > 0]) if any(a > 0 for a in x) else ((), ())
        style = "-" if run["settings"].get("init") == "balanced" else "--"
        ax.plot(x, y, style, marker=".", ms=3, lw=1, label=_label(run))
    ax.axhline(0.0, color="k", lw=0.8)
    ax.set_yscale("symlog", linthresh=1e-3)
    _loss_axis(ax)
    ax.set_ylabel(r"det$(W)$")
    ax.set_title("det of the end-to-end matrix along gradient flow")
    ax.legend(fontsize=6, ncol=2)


def fig_perturbed(data: dict, fig: Figure) -> None:
    ax = fig.add_subplot(1, 1, 1)
    for run in _runs(data):
        x, y = _positive([_f(p["loss"]) for p in run["points"]], [_f(p["norm"]) for p in run["points"]])
        ax.plot(x, y, marker=".", ms=3, lw=1, label=_label(run))
    _log(ax, "y")
    _loss_axis(ax)
    ax.set_ylabel(r"$\|W\|_F$")
    ax.set_title(r"perturbed RC20 $[[*, 1], [1, \epsilon]]$, depth 3: norm against loss")
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
        ax1.set_xlabel("step" if run.get("engine") == "gd" else "time")
        ax2.set_xlabel("step" if run.get("engine") == "gd" else "time")
    for ax in (ax1, ax2):
        _log(ax, "x")
        _log(ax, "y")
    ax1.set_ylabel("component norm (sorted)")
    ax1.set_title("CP component norms")
    ax2.set_ylabel("loss")
    ax2.set_title("loss")
    ax1.legend(fontsize=7)
    ax2.legend(fontsize=7)


@dataclass(frozen=True)
class FigureSpec:
    """A figure: the data file it reads, how to draw it, its size and caption."""

    name: str
    data: str
    draw: Callable[[dict, Figure], None]
    size: tuple[float, float]
    caption: str


FIGURES = (
    FigureSpec("rc20_w11", "rc20_depths", fig_w11, (6.4, 4.2),
               "RC20, |w11| against the loss for depths 2-6 from a balanced init with det > 0, with the bound "
               "(1 - sqrt(2L))^2 / sqrt(2L) that a positive det forces: the norm grows without bound as the loss "
               "falls."),
    FigureSpec("rc20_sigma_erank", "rc20_depths", fig_sigma_erank, (9.0, 3.8),
               "RC20, second singular value and effective rank of the end-to-end matrix against the loss: the "
               "rank does not fall to 1 while the det keeps its sign."),
    FigureSpec("det_sign", "det_sign", fig_det_sign, (6.4, 4.2),
               "det(W) along gradient flow, depths 2 and 3, from balanced inits (solid), whose det keeps its sign "
               "as the lemma says, and from unbalanced Gaussian inits (dashed), which need not keep it (the negative "
               "control rc20.neg.unbalanced)."),
    FigureSpec("rc20_perturbed", "rc20_perturbed", fig_perturbed, (6.4, 4.2),
               "The perturbed problem [[*, 1], [1, eps]] for several eps, depth 3: Frobenius norm against the loss."),
    FigureSpec("cp_norms", "cp_norms", fig_cp_norms, (9.0, 3.8),
               "CP tensor factorization (order 3): component norms and loss over time from a small Gaussian init."),
)


_MARGINS = {1: dict(left=0.12, right=0.97, bottom=0.12, top=0.92),
            2: dict(left=0.08, right=0.98, bottom=0.14, top=0.9, wspace=0.28)}


def render_figure(spec: FigureSpec, data: dict, out_dir: Path) -> list[Path]:
    """Draw one figure to ``out_dir/NAME.svg`` and ``NAME.png`` (byte-stable)."""
    with style():
        fig = Figure(figsize=spec.size)
        spec.draw(data, fig)
        return save(fig, out_dir, spec.name)


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
        made.append({"name": spec.name, "svg": svg.name, "png": png.name, "caption": spec.caption, "notes": notes})
    return made
