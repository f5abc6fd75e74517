"""The ACHL19 experiment figures, drawn the way the paper draws them, from the stored JSON only
(:mod:`verify.figure_data_achl19` computes it): ``achl19_completion`` (reconstruction error and effective rank
against the number of observations, one line per depth, with the minimum-nuclear-norm line) and
``achl19_sv_dynamics`` (singular values over iterations per depth; the |U^T grad V| statistics at depth 2).
"""

from __future__ import annotations

import math

from matplotlib.figure import Figure

from .figures import FigureSpec, log_axis, num

COLORS = {"2": "C0", "3": "C1", "4": "C2"}


def _runs(data: dict):
    return [r for r in data.get("runs", []) if r.get("points")]


def _median(vals):
    v = sorted(x for x in vals if math.isfinite(x))
    return v[len(v) // 2] if len(v) % 2 else (0.5 * (v[len(v) // 2 - 1] + v[len(v) // 2]) if v else math.nan)


def fig_completion(data: dict, fig: Figure) -> None:
    """Left: reconstruction error against observations per depth (members as dots, median line) and the
    minimum-nuclear-norm completion (dashed); right: effective rank likewise, with the target's (dotted)."""
    ax1, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    pts = [r["points"][0] for r in _runs(data)]
    pts.sort(key=lambda p: num(p["m"]))
    ms = [num(p["m"]) for p in pts]
    depths = sorted({L for p in pts for L in p["depths"]}, key=int)
    for L in depths:
        c = COLORS.get(L, "C3")
        for ax, key in ((ax1, "rec"), (ax2, "erank")):
            med = []
            for p, m in zip(pts, ms):
                vals = [num(v) for v in p["depths"].get(L, {}).get(key, [])]
                if key == "rec":
                    vals = [max(v, 1e-12) for v in vals]
                ax.scatter([m] * len(vals), vals, s=7, color=c, alpha=0.6, zorder=2)
                med.append(_median(vals))
            ax.plot(ms, med, color=c, lw=1.2, marker="o", ms=3, label=f"depth {L} (median)")
    ax1.plot(ms, [max(num(p["nuclear"]["rec"]), 1e-12) for p in pts], "k--", lw=1.0, label="min nuclear norm")
    ax2.plot(ms, [num(p["nuclear"]["erank"]) for p in pts], "k--", lw=1.0, label="min nuclear norm")
    if pts:
        ax2.axhline(num(pts[0]["target_erank"]), color="0.4", ls=":", lw=0.8, label="target")
    log_axis(ax1, "y")
    ax1.set_ylabel("reconstruction error ||W - W*|| / ||W*||")
    ax2.set_ylabel("effective rank (Roy-Vetterli)")
    for ax in (ax1, ax2):
        ax.set_xlabel("number of observed entries (of 900)")
        ax.legend(fontsize=6)


def fig_sv_dynamics(data: dict, fig: Figure) -> None:
    """Singular values of the end-to-end matrix against the iteration, one panel per depth (the target's dotted);
    right: mean diagonal and off-diagonal entry of |U^T grad V| at depth 2."""
    runs = _runs(data)
    if not runs:
        return
    p = runs[0]["points"][0]
    depths = sorted(p["depths"], key=int)
    axes = [fig.add_subplot(1, len(depths) + 1, k + 1) for k in range(len(depths) + 1)]
    for ax, L in zip(axes, depths):
        d = p["depths"][L]
        steps = [num(s) for s in d["steps"]]
        k = len(d["svals"][0]) if d["svals"] else 0
        for i in range(k):
            ax.plot(steps, [num(row[i]) for row in d["svals"]], lw=1.0, color=f"C{i}",
                    label=f"sigma_{i + 1}")
        for v in p["target_singular_values"]:
            ax.axhline(num(v), color="0.6", ls=":", lw=0.6)
        ax.set_title(f"depth {L}", fontsize=8)
        ax.set_xlabel("iteration")
        ax.set_ylabel("singular value")
        ax.legend(fontsize=5, loc="upper left")
    ax = axes[-1]
    d = p["depths"].get("2")
    if d:
        steps = [num(s) for s in d["steps"]]
        ax.plot(steps, [max(num(v), 1e-300) for v in d["diag"]], color="C0", lw=1.0, label="diagonal (mean)")
        ax.plot(steps, [max(num(v), 1e-300) for v in d["offdiag"]], color="C3", lw=1.0, label="off-diagonal (mean)")
        log_axis(ax, "y")
        ax.set_title("depth 2: |U^T grad V|", fontsize=8)
        ax.set_xlabel("iteration")
        ax.legend(fontsize=6)


def _explain_completion(data: dict) -> str:
    bad = [r["label"] for r in _runs(data) if r.get("status") != "completed"]
    return ("Counts where some member stopped at the step budget (12,000) before MSE 1e-5: " + ", ".join(bad) + "."
            if bad else "Every member reached MSE 1e-5.")


def _explain_dynamics(data: dict) -> str:
    runs = _runs(data)
    if not runs:
        return ""
    parts = []
    for L, d in sorted(runs[0]["points"][0]["depths"].items(), key=lambda kv: int(kv[0])):
        rises = ", ".join(f"[{r['a']}, {r['b']}]" for r in d["rises"])
        parts.append(f"depth {L}: rises (10% to 90%) {rises}")
    return "; ".join(parts) + "."


FIGURES = (
    FigureSpec("achl19_completion", "achl19_completion", fig_completion, (9.0, 3.8),
               "ACHL19 matrix completion, reduced setting of achl19.exp.depth_low_rank (30x30 rank-2 target, "
               "Gaussian init of end-to-end norm 1e-3 sqrt(n), GroupRMSprop lr 1e-2 to MSE 1e-5, 2 init seeds per "
               "depth): reconstruction error and effective rank against the number of observations, per depth, "
               "with the minimum-nuclear-norm completion (cvxpy, SCS).", _explain_completion),
    FigureSpec("achl19_sv_dynamics", "achl19_sv_dynamics", fig_sv_dynamics, (11.0, 3.6),
               "ACHL19 figure 3, reduced setting of achl19.exp.sv_dynamics (20x20 rank-3 target, 230 observations, "
               "identity init 1e-3, GD lr 0.02): the top singular values of the end-to-end matrix over iterations "
               "(target's dotted) at depths 2 and 3, and at depth 2 the mean diagonal and off-diagonal entries of "
               "|U^T grad V|.", _explain_dynamics, margins=(("left", 0.06), ("right", 0.98), ("wspace", 0.3))),
)

__all__ = ["FIGURES", "fig_completion", "fig_sv_dynamics"]
