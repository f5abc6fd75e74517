"""Trajectories in notebooks: :func:`to_dataframe` (pandas, an optional extra) and :func:`to_html` (a small table and
an inline figure), behind :meth:`Trajectory.to_dataframe` and :meth:`Trajectory._repr_html_`.

The figure is drawn with matplotlib's object API (no pyplot state, no display needed) and embedded as a base64
PNG: the loss, and the entries of the end-to-end matrix (up to 9; otherwise the largest entry), against ``1 + t``
(or ``1 + step``) on log axes, the engine's own log-time.
"""

from __future__ import annotations

import base64
import html
import io
import math

import numpy as np

PANDAS_EXTRA = "pip install 'implicit-reg-verify[notebook]' (or pip install pandas)"
MAX_ENTRIES = 9


def _index_name(idx: tuple[int, ...]) -> str:
    return "w[" + ",".join(str(i + 1) for i in idx) + "]"


def to_dataframe(traj):
    """One row per recorded point: ``t`` or ``step``, ``loss``, ``loss_err``, ``product_err``, ``det_sign`` and
    one column per entry of the end-to-end matrix or tensor (``w[1,1]``, ``w[1,2]``, ..., 1-based as in the
    papers); the engine, status and error estimate are in ``DataFrame.attrs``."""
    try:
        import pandas as pd
    except ImportError:
        raise ImportError(f"Trajectory.to_dataframe() needs pandas, an optional extra: {PANDAS_EXTRA}") from None
    rows = []
    for p in traj.points:
        row = {"t": p.t, "step": p.step, "loss": float(p.loss), "loss_err": float(p.loss_err),
               "product_err": float(p.product_err), "det_sign": p.det_sign}
        W = np.asarray(p.product, dtype=float)
        for idx in np.ndindex(W.shape):
            row[_index_name(idx)] = float(W[idx])
        rows.append(row)
    df = pd.DataFrame(rows)
    for col in ("t", "step"):
        if col in df and df[col].isna().all():
            df = df.drop(columns=col)
    df.attrs.update(engine=traj.engine, status=traj.status.value, error_estimate=float(traj.error_estimate),
                    precision=traj.precision)
    return df


def figure_png(traj) -> bytes | None:
    """The figure as PNG bytes (``None`` when there are no points)."""
    if not traj.points:
        return None
    from matplotlib.figure import Figure

    x = 1.0 + np.asarray(traj.times, dtype=float)
    fig = Figure(figsize=(7.0, 2.6), dpi=80)
    ax1, ax2 = fig.subplots(1, 2)
    loss = np.asarray(traj.losses, dtype=float)
    ok = np.isfinite(loss) & (loss > 0) & np.isfinite(x)
    ax1.loglog(x[ok], loss[ok], ".-", lw=1)
    ax1.set_xlabel("1 + t" if traj.points[0].t is not None else "1 + step")
    ax1.set_ylabel("loss")
    W = np.abs(np.asarray(traj.products, dtype=float)).reshape(len(traj.points), -1)
    if W.shape[1] <= MAX_ENTRIES:
        shape = np.asarray(traj.points[0].product).shape
        for k, idx in enumerate(np.ndindex(shape)):
            y = W[:, k]
            good = np.isfinite(y) & (y > 0) & np.isfinite(x)
            if good.any():
                ax2.loglog(x[good], y[good], lw=1, label=f"|{_index_name(idx)}|")
        ax2.legend(fontsize=7, ncol=2)
    else:
        y = W.max(axis=1)
        good = np.isfinite(y) & (y > 0) & np.isfinite(x)
        ax2.loglog(x[good], y[good], lw=1, label="max |entry|")
        ax2.legend(fontsize=7)
    ax2.set_xlabel(ax1.get_xlabel())
    ax2.set_ylabel("|end-to-end entries|")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _fmt(x) -> str:
    if isinstance(x, float):
        return "nan" if math.isnan(x) else f"{x:.6g}"
    return str(x)


def to_html(traj) -> str:
    """A small table (engine, status, points, final loss and time, error estimate, settings) and the figure."""
    final = traj.points[-1] if traj.points else None
    rows = [("engine", traj.engine), ("status", f"{traj.status.value}: {traj.message or traj.status.message}"),
            ("points", len(traj.points)), ("precision", traj.precision),
            ("error estimate", _fmt(float(traj.error_estimate))), ("wall time", f"{traj.seconds:.3g} s")]
    if final is not None:
        rows += [("final " + ("t" if final.t is not None else "step"),
                  _fmt(final.t if final.t is not None else final.step)),
                 ("final loss", f"{_fmt(float(final.loss))} ± {_fmt(float(final.loss_err))}"),
                 ("final det sign", final.det_sign)]
    rows.append(("settings", ", ".join(f"{k}={v}" for k, v in traj.settings.items())))
    body = "".join(f"<tr><th style='text-align:left'>{html.escape(str(k))}</th>"
                   f"<td style='text-align:left'>{html.escape(str(v))}</td></tr>" for k, v in rows)
    out = f"<div><b>Trajectory</b><table>{body}</table>"
    png = figure_png(traj)
    if png is not None:
        out += f"<img alt='loss and end-to-end entries' src='data:image/png;base64,{base64.b64encode(png).decode()}'/>"
    return out + "</div>"
