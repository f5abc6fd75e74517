"""The figure of a counterexample: the violating trajectory against the claimed bound, from stored JSON.

A check built with :func:`properties._common.combine` keeps in its outcome's detail the ``series`` of the points it
checked along the trajectory (``x``: loss or time; margin and its error; the checked value and the bound when the
points record them). :func:`draw` plots it: the value against the bound (when recorded) and the margin with its
error estimate against 0, the violated points in red. ``verify report`` draws it from ``results.jsonl``'s stored
counterexample and ``verify reproduce FILE`` redraws it from the replayed outcome, next to FILE. Output is
byte-stable (the settings of :mod:`reports.figures`).
"""

from __future__ import annotations

import json
from pathlib import Path

from reports import figures
from models.stored import evidence

_LABELS = {"w11": "|w11|", "norm": "norm of W"}


def series_of(outcome: dict | None) -> dict | None:
    """The stored series of an outcome (its JSON form), or None when it recorded no trajectory."""
    if not isinstance(outcome, dict):
        return None
    s = (outcome.get("detail") or {}).get("series")
    if not isinstance(s, dict) or not isinstance(s.get("points"), list) or len(s["points"]) < 2:
        return None
    return s


def _with_bound(series: dict) -> bool:
    """Whether the points record the checked value and the bound (then the figure has a panel of them)."""
    return bool(series.get("value_name")) and all(p[3] is not None and p[4] is not None for p in series["points"])


def caption(claim_id: str, outcome: dict, series: dict) -> str:
    pts = series["points"]
    n_bad = sum(1 for p in pts if figures.num(p[1]) < -figures.num(p[2]))
    name = _LABELS.get(series.get("value_name"), series.get("value_name"))
    what = f"{name} against the claimed bound (left) and " if _with_bound(series) else ""
    emax = max(figures.num(p[2]) for p in pts)
    return (f"Counterexample to {claim_id}: {what}the margin with its error estimate ({'right: ' if what else ''}"
            f"the claim holds above 0) at the {len(pts)} recorded points of its trajectory against the {series['x']}"
            f"{', ' + series['part'] if series.get('part') else ''}, engine {outcome.get('engine') or '?'}; "
            f"{n_bad} point{'s' if n_bad != 1 else ''} violated (red). Decisive point: "
            f"{evidence.sentence(evidence.of_outcome(outcome))}; largest error estimate {evidence.num(emax)}"
            + (" (the band is drawn)" if figures.band_visible(pts) else ", below the plot's resolution (no band)")
            + ".")


def draw(claim_id: str, outcome: dict, base: str | Path) -> dict | None:
    """Draw ``base.svg`` and ``base.png`` (and ``base.figure.json`` with the caption) for a counterexample's
    outcome; None when the outcome recorded no trajectory."""
    series = series_of(outcome)
    if series is None:
        return None
    base = Path(base)
    pts = sorted(series["points"], key=lambda p: figures.num(p[0]))
    x = [figures.num(p[0]) for p in pts]
    m = [figures.num(p[1]) for p in pts]
    e = [figures.num(p[2]) for p in pts]
    with_bound = _with_bound(series)
    with figures.style():
        fig = figures.Figure(figsize=(9.0, 3.8) if with_bound else (6.4, 4.2))
        axes = [fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)] if with_bound else [fig.add_subplot(1, 1, 1)]
        if with_bound:
            ax = axes[0]
            v, b = [figures.num(p[3]) for p in pts], [figures.num(p[4]) for p in pts]
            name = _LABELS.get(series["value_name"], str(series["value_name"]))
            ax.plot(x, v, marker=".", ms=3, lw=1, label=name)
            ax.plot(x, b, "k--", lw=1.2, label="claimed bound")
            bad = [(a, c) for a, c, mm, ee in zip(x, v, m, e) if mm < -ee]
            if bad:
                ax.plot(*zip(*bad), "o", color="#c00000", ms=4, label="violated")
            if all(val > 0 for val in v + b):
                figures.log_axis(ax, "y")
            ax.set_ylabel(name)
            ax.set_title(f"{name} and the claimed bound")
            ax.legend(fontsize=7)
        ax = axes[-1]
        ax.plot(x, m, marker=".", ms=3, lw=1, color="#1f77b4", label="margin")
        if figures.band_visible(pts):
            ax.fill_between(x, [a - b for a, b in zip(m, e)], [a + b for a, b in zip(m, e)], color="#1f77b4",
                            alpha=0.25, lw=0, label="margin +- error")
        ax.axhline(0.0, color="k", lw=0.8, label="claimed bound (margin 0)")
        bad = [(a, mm) for a, mm, ee in zip(x, m, e) if mm < -ee]
        if bad:
            ax.plot(*zip(*bad), "o", color="#c00000", ms=4, label="violated")
        ax.set_ylabel("margin (the claim's units)")
        ax.set_title("margin along the trajectory")
        ax.legend(fontsize=7)
        for ax in axes:
            if series["x"] == "loss" and all(a > 0 for a in x):
                figures.loss_axis(ax)
            elif all(a > 0 for a in x):
                figures.log_axis(ax, "x")
                ax.set_xlabel(series["x"])
            else:
                ax.set_xlabel(series["x"])
        fig.suptitle(f"counterexample to {claim_id}", fontsize=9)
        paths = figures.save(fig, base.parent, base.name, top=0.86)
    text = caption(claim_id, outcome, series)
    meta = base.parent / f"{base.name}.figure.json"
    meta.write_text(json.dumps({"claim": claim_id, "caption": text}, indent=1, sort_keys=True) + "\n",
                    encoding="utf-8")
    return {"svg": paths[0], "png": paths[1], "caption": text}


__all__ = ["caption", "draw", "series_of"]
