"""The notebook API: :func:`check` (exported as ``verify.check``) and the :class:`VerdictRecord` it returns.

``verify.check(claim_or_id, profile="quick", seed=0)`` runs one claim as ``verify run`` does (the runner's task,
driver and record, through :mod:`verify.oneclaim`) in this process, so a claim defined in the notebook itself (with
``@claim``, or a :class:`~properties.api.Claim` that was never registered) runs as given. The claim's time limit
is not enforced in-process: interrupt the kernel to stop a search. The result is the claim's ``results.jsonl``
record, a ``dict``, whose ``_repr_html_`` is a small table (verdict, examples, margins, the counterexample with its
margin against its error, the ``verify reproduce`` command when a file was written) and a figure of the
normalized margin of every example evaluated (``record.margins``, recorded by :func:`check` as the search ran).
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import html
import io
import math
from pathlib import Path
from typing import Sequence

from models.errors import InvalidInput
from models.stored.verdicts import verdict_of

_COLOURS = {"holds": "#1a7f37", "violated": "#cf222e", "inconclusive": "#9a6700", "error": "#cf222e"}


class VerdictRecord(dict):
    """A claim's ``results.jsonl`` record (a plain ``dict`` underneath), with a table and a figure in notebooks.

    ``margins``: ``(normalized margin, status)`` of each example evaluated, in order (empty when not recorded).
    """

    margins: list = []

    @property
    def claim(self) -> str:
        return self.get("claim")

    @property
    def verdict(self) -> str:
        return verdict_of(self)

    @property
    def met(self) -> bool:
        return bool(self.get("met"))

    @property
    def counterexample_inputs(self) -> dict | None:
        """The shrunk counterexample's inputs, decoded exactly (floats round-trip), or ``None``."""
        cx = self.get("counterexample") or {}
        if cx.get("inputs") is None:
            return None
        from verify.driver import inputs_from_json
        return inputs_from_json(cx["inputs"])

    def __repr__(self) -> str:
        return (f"VerdictRecord({self.claim}: {self.verdict}, expected {self.get('expectation')}, "
                f"met={self.met}, examples={self.get('examples')})")

    def _repr_html_(self) -> str:
        verdict = str(self.verdict)
        colour = _COLOURS.get(verdict, "inherit")
        rows = [("claim", f"{self.claim}: {self.get('title')}"), ("source", self.get("source")),
                ("verdict", f"<span style='color:{colour};font-weight:bold'>{html.escape(verdict)}</span>"),
                ("expectation", f"{self.get('expectation')} ({'met' if self.met else 'NOT met'})"),
                ("examples", f"{self.get('examples')} (inconclusive {self.get('inconclusive')})"),
                ("smallest normalized margin", self.get("smallest_margin")),
                ("engine", self.get("engine") or "-"),
                ("profile, seed", f"{self.get('profile')}, {self.get('seed')}"),
                ("seconds", self.get("seconds"))]
        cx = self.get("counterexample") or {}
        if cx.get("inputs_repr"):
            rows.append(("counterexample", cx["inputs_repr"]))
        outcome = cx.get("outcome") or {}
        if outcome:
            rows.append(("margin against error", f"{outcome.get('margin')!r} against {outcome.get('error')!r}"))
        if cx.get("error"):
            rows.append(("error", cx["error"]))
        if self.get("reproduce"):
            rows.append(("reproduce", self["reproduce"]))
        for note in self.get("notes") or []:
            rows.append(("note", note))
        body = "".join(
            f"<tr><th style='text-align:left'>{html.escape(str(k))}</th><td style='text-align:left'>"
            f"{v if k == 'verdict' else html.escape(str(v))}</td></tr>" for k, v in rows)
        out = f"<div><b>Verdict</b><table>{body}</table>"
        png = margins_png(getattr(self, "margins", None) or [])
        if png is not None:
            out += (f"<img alt='normalized margin of each example' "
                    f"src='data:image/png;base64,{base64.b64encode(png).decode()}'/>")
        return out + "</div>"


def margins_png(margins: Sequence[tuple[float, str]]) -> bytes | None:
    """The normalized margin of each evaluated example, in evaluation order, coloured by its outcome (zero marked;
    a symlog axis when the margins span decades): how close the search came to a violation. ``None`` when there is
    nothing to draw."""
    points = [(k, m, status) for k, (m, status) in enumerate(margins) if math.isfinite(m)]
    if not points:
        return None
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 2.2), dpi=80)
    ax = fig.subplots()
    for status in ("holds", "inconclusive", "violated"):
        xs = [k for k, _, s in points if s == status]
        ys = [m for _, m, s in points if s == status]
        if xs:
            ax.plot(xs, ys, "o", ms=3, color=_COLOURS[status], label=status)
    ax.axhline(0.0, color="black", lw=0.8)
    sizes = [abs(m) for _, m, _ in points if m != 0]
    if sizes and max(sizes) > 100 * min(sizes):  # margins over decades: log on both sides of zero
        ax.set_yscale("symlog", linthresh=max(min(sizes), 1e-300))
    from matplotlib.ticker import MaxNLocator
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("example (evaluation order)")
    ax.set_ylabel("normalized margin")
    ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _recording(claim):
    """``claim`` with a check that also records each outcome's normalized margin and status (returned as given)."""
    from properties.api import Outcome

    seen: list[tuple[float, str]] = []
    check = claim.check

    @functools.wraps(check)
    def recorded(inputs, dropped):
        outcome = check(inputs, dropped)
        if isinstance(outcome, Outcome):
            seen.append((float(outcome.normalized_margin), outcome.status))
        return outcome

    return dataclasses.replace(claim, check=recorded), seen


def _modules_of(claim) -> tuple[str, ...]:
    """Where a worker or ``verify reproduce`` finds ``claim``: its check's module when that is importable."""
    import sys
    name = getattr(claim.check, "__module__", None)
    module = sys.modules.get(name or "")
    if not name or name == "__main__" or module is None:
        return ()
    file = getattr(module, "__file__", None)
    if name.startswith("verify_claims_") and file:  # loaded by path through verify.discovery
        return (file,)
    return (name,)


def check(claim_or_id, profile: str = "quick", seed: int = 0, *, modules: Sequence[str] = (),
          out: str | Path | None = None) -> VerdictRecord:
    """Run one claim (a :class:`~properties.api.Claim` or a registered id) and return its verdict record.

    ``modules`` are claims modules to load to find an id (default: the built-in claims). With ``out``, the
    counterexample is also written to ``out/counterexamples/ID.json`` as ``verify run`` writes it (the record's
    ``reproduce`` is then the command that replays it). Bad input (an unknown id or profile) raises
    :class:`~models.errors.InvalidInput`.
    """
    from properties.api import CLAIMS, Claim
    from verify import discovery, oneclaim
    from verify.profiles import get_profile

    get_profile(profile)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise InvalidInput(f"seed must be an integer >= 0, got {seed!r}")
    if isinstance(claim_or_id, Claim):
        claim = claim_or_id
        mods = tuple(modules) or _modules_of(claim)
    elif isinstance(claim_or_id, str):
        catalog = discovery.load(modules)
        claim = CLAIMS.get(claim_or_id) or catalog.get(claim_or_id)
        mods = catalog.modules
    else:
        raise InvalidInput(f"check() takes a Claim or a claim id, got {type(claim_or_id).__name__}")
    out_dir = Path(out).resolve() if out is not None else None
    watched, margins = _recording(claim)
    rec = VerdictRecord(oneclaim.run(watched, profile=profile, seed=seed, modules=mods, handle=oneclaim.in_process(),
                                     out=out_dir))
    rec.margins = margins
    if out_dir is not None and rec.get("counterexample_file"):
        import shlex
        rec["reproduce"] = f"verify reproduce {shlex.quote(str(out_dir / rec['counterexample_file']))}"
    return rec
