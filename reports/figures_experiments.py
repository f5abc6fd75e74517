"""The experiment figures, drawn the way the papers draw them, from the stored JSON only
(:mod:`verify.figure_data_experiments` computes it): ``rc20_gd`` (|w11| against the loss, coloured by iteration),
``rc20_tc_sweep`` (reconstruction error against the number of observations, with the baseline) and
``rmc21_incremental`` (the ten largest component norms against the iterations, one panel per init std).
"""

from __future__ import annotations

import math

from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from .figures import FigureSpec, log_axis, loss_axis, num

MARKERS = ("o", "s", "^", "v", "D", "P")


def _runs(data: dict):
    return [r for r in data.get("runs", []) if r.get("points")]


def fig_gd(data: dict, fig: Figure) -> None:
    """Left: the original problem (depths 3 and 4); right: the perturbed problem at depth 3, one curve per eps
    with its level |z z'|/|eps| dashed. Points coloured by iteration (log colour scale, shared)."""
    ax1, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    runs = _runs(data)
    steps = [num(p["step"]) for r in runs for p in r["points"] if num(p["step"]) > 0]
    norm = LogNorm(vmin=min(steps), vmax=max(steps)) if steps else None
    sc = None
    i1 = i2 = 0
    for run in runs:
        s = run["settings"]
        pts = [p for p in run["points"] if num(p["step"]) > 0 and num(p["loss"]) > 0 and num(p["w11"]) > 0]
        x = [num(p["loss"]) for p in pts]
        y = [num(p["w11"]) for p in pts]
        c = [num(p["step"]) for p in pts]
        perturbed = s.get("eps") is not None
        ax = ax2 if perturbed else ax1
        k = i2 if perturbed else i1
        label = run["label"] + ("" if run.get("status") == "completed" else f" ({run.get('status')})")
        ax.plot(x, y, color="0.75", lw=0.8, zorder=1)
        sc = ax.scatter(x, y, c=c, cmap="viridis", norm=norm, s=7, marker=MARKERS[k % len(MARKERS)], zorder=2,
                        label=label)
        if perturbed:
            level = 1.0 / abs(float(s["eps"]))  # |z z'| = 1 for (z, z') = (-2, 0.5)
            ax.axhline(level, color="k", ls="--", lw=0.8, zorder=0)
            ax.text(0.99, level, f"1/eps = {level:g}", transform=ax.get_yaxis_transform(), fontsize=6, ha="right",
                    va="bottom")
            i2 += 1
        else:
            i1 += 1
    for ax, title in ((ax1, "[[*, 1], [1, 0]]: |w11| grows as the loss falls"),
                      (ax2, "[[*, -2], [0.5, eps]], depth 3: |w11| saturates near 1/eps")):
        loss_axis(ax)
        log_axis(ax, "y")
        ax.set_ylabel("|w11| (unobserved entry)")
        ax.set_title(title, fontsize=8)
        if ax.collections:
            ax.legend(fontsize=6, loc="upper left" if ax is ax1 else "lower right", markerscale=1.5)
    if sc is not None:
        cb = fig.colorbar(sc, cax=fig.add_axes([0.925, 0.14, 0.012, 0.74]))
        cb.set_label("iteration")


def fig_tc_sweep(data: dict, fig: Figure) -> None:
    """Reconstruction error against the number of observations: each seed (dots), the median (line), the baseline
    that fills in zeros (dashed); right: the rank-1 residual of each final tensor (estimated CP rank 1 below the
    claim's tolerance)."""
    ax1, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    ms, med, base = [], [], []
    for run in _runs(data):
        p = run["points"][0]
        m = num(p["m"])
        errs = [num(e) for e in p["errors"]]
        ax1.scatter([m] * len(errs), errs, s=8, color="C0", alpha=0.7, zorder=2)
        ms.append(m)
        finite = sorted(e for e in errs if math.isfinite(e))
        med.append(finite[len(finite) // 2] if finite else math.nan)
        base.append(num(p["baseline"]))
        res = [max(num(v), 1e-17) for v in p["rank1_residuals"]]
        ax2.scatter([m] * len(res), res, s=8, color="C2", alpha=0.7)
    ax1.plot(ms, med, color="C0", lw=1.2, label="tensor factorization (median of 5 seeds)")
    ax1.plot(ms, base, "k--", lw=1.0, label="baseline: observed entries, 0 elsewhere")
    for ax in (ax1, ax2):
        log_axis(ax, "y")
        ax.set_xlabel("number of observed entries (of 512)")
    ax1.set_ylabel("reconstruction error ||T - T*|| / ||T*||")
    ax1.set_title("order 3, 8x8x8, rank-1 target", fontsize=8)
    ax1.legend(fontsize=6)
    ax2.axhline(0.05, color="k", ls=":", lw=0.8)
    ax2.set_ylabel("rank-1 residual of the result")
    ax2.set_title("estimated CP rank 1 where below the dotted line", fontsize=8)


def _explain_gd(data: dict) -> str:
    runs = _runs(data)
    parts = []
    for r in runs:
        last = r["points"][-1]
        parts.append(f"{r['label']}: |w11| = {num(last['w11']):.3g} at loss {num(last['loss']):.2g} "
                     f"({r.get('message', '')}, det sign {last.get('det_sign')})")
    return "Last points: " + "; ".join(parts) + "." if parts else ""


def _explain_tc(data: dict) -> str:
    runs = _runs(data)
    bad = [r["label"] for r in runs if r.get("status") != "completed"]
    return ("Runs in which some seed hit the step budget (3000) before the stop rule: " + ", ".join(bad) + "."
            if bad else "Every seed met the stop rule.")


def fig_rmc21_incremental(data: dict, fig: Figure) -> None:
    """One panel per init std (largest first): the ten largest component norms against the iterations, as in
    RMC21's figure, with the leave-zero threshold 0.05 dotted."""
    ladder = [r for run in _runs(data) for r in run["points"]]
    for i, r in enumerate(ladder):
        ax = fig.add_subplot(1, len(ladder), i + 1)
        pts = r["points"]
        steps = [num(p["step"]) for p in pts]
        for c in range(len(pts[0]["norms"]) if pts else 0):
            ax.plot(steps, [num(p["norms"][c]) for p in pts], lw=1.0, color=f"C{c % 10}")
        ax.axhline(0.05, color="k", ls=":", lw=0.8)
        ax.set_xlabel("iteration")
        ax.set_title(f"init std {num(r['std']):g}: {r['count']} leave zero", fontsize=8)
        if i == 0:
            ax.set_ylabel("component norm ||W_r||")


def _explain_rmc21(data: dict) -> str:
    ladder = [r for run in _runs(data) for r in run["points"]]
    return "; ".join(f"std {num(r['std']):g}: {r['count']} components at or above 0.05, leaving zero at steps "
                     f"{', '.join(str(t) for t in r['leave_times'])}, reconstruction error "
                     f"{num(r['reconstruction_error']):.2g} ({r['status']})" for r in ladder) + "." if ladder else ""


FIGURES = (
    FigureSpec("rc20_gd", "rc20_gd", fig_gd, (9.4, 3.8),
               "RC20 gradient descent at the official setting (per-layer Gaussian init std 8e-3 with det > 0, "
               "lr 3e-3, MSE loss; compiled float64 GD, records every 50 steps, thinned to 300 points per run in "
               "log loss): the unobserved entry against the loss, coloured by iteration, as in the paper's "
               "figures. Claim rc20.exp.gd_unobserved.", _explain_gd,
               margins=(("left", 0.085), ("right", 0.9), ("wspace", 0.3))),
    FigureSpec("rc20_tc_sweep", "rc20_tc_sweep", fig_tc_sweep, (9.0, 3.8),
               "RC20 tensor completion, order 3 (8x8x8, rank-1 target of norm 1, CP with R = 64, init 1e-3, "
               "GroupRMSprop lr 1e-2 until the training MSE is 1e-5 of the mean squared observation; 5 init seeds "
               "per count, batched): reconstruction error against the number of observations. Claim "
               "rc20.exp.tensor_completion.", _explain_tc),
    FigureSpec("rmc21_incremental", "rmc21_incremental", fig_rmc21_incremental, (10.5, 3.6),
               "RMC21 incremental learning, the order-3 reduction of rmc21.exp.incremental (10x10x10, rank-3 target "
               "of norm 1, 500 observations, CP with R = 100, per-entry Gaussian init std 0.05, 0.005, 5e-5, "
               "GroupRMSprop lr 1e-2 on the MSE to 1e-8; norms every 25 iterations): the ten largest component "
               "norms against the iterations, as in the paper's figure (order 4, 10^4, R = 1000). As the init "
               "shrinks fewer components leave zero, one at a time. Claim rmc21.exp.incremental.", _explain_rmc21),
)

# The ACHL19 experiment figures (achl19_completion, achl19_sv_dynamics) follow: reports.figures_achl19.
from .figures_achl19 import FIGURES as _ACHL19_FIGURES  # noqa: E402

FIGURES = FIGURES + _ACHL19_FIGURES

__all__ = ["FIGURES", "fig_gd", "fig_rmc21_incremental", "fig_tc_sweep"]
