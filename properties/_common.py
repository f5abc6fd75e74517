"""Helpers shared by the claim modules (private): settings -> problem/model/init, engine escalation, and turning
per-point margins into one :class:`~properties.api.Outcome`.

Soundness rules implemented here (see design.md, "Numerical soundness"):

- :func:`combine`: a claim checked at many points holds only if every point holds (margin > error); it is
  violated as soon as one point is violated (margin < -error); otherwise it is inconclusive. The outcome
  returned is the worst point: the most clearly violated one, else an inconclusive one, else the smallest
  normalized margin. Its detail keeps the ``series`` of margins (and values and bounds, when the points record
  them) along the trajectory, which the report draws for a counterexample.
- :func:`escalate`: run the check on the float64 engine; if the outcome is inconclusive, or the trajectory is not
  trustworthy (diverged, lost precision, solver failed) and shows no violation, rerun with a tighter tolerance,
  then with the high-precision engine. An outcome still inconclusive is returned as such; a trajectory still
  untrustworthy raises :class:`~models.errors.EngineFailure` (the driver records an error with the inputs).
  A violation seen on the trustworthy prefix of an untrustworthy run is a violation (the points kept are valid).
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, Sequence

from models import inits
from models.engines import get_engine
from models.errors import EngineFailure, InvalidInput, require
from models.factorizations import DeepMatrix
from models.problems import rc20
from models.trajectory import Status
from models.stored.jsonio import strict

from .api import Outcome

#: The escalation ladder of gradient-flow engines: float64 at the default and a tighter tolerance, then mpmath.
GF_LADDER: tuple[tuple[str, dict], ...] = (
    ("gf", {"rtol": 1e-10}),
    ("gf", {"rtol": 1e-12}),
    ("gf-mp", {"digits": 40}),
)


def engine_label(name: str, options: dict) -> str:
    return name + "".join(f" {k}={v:g}" if isinstance(v, float) else f" {k}={v}" for k, v in options.items())


# ----------------------------------------------------------------------------------------------------------------
# Settings
# ----------------------------------------------------------------------------------------------------------------
def rc20_setting(inputs: dict):
    """``(problem, model, init)`` of an RC20 2x2 setting: ``depth``, ``init`` ("balanced" | "gaussian" |
    "identity"), ``scale``, ``seed``, ``det`` and optionally ``z``, ``z_prime``, ``eps``."""
    problem = rc20(inputs.get("z", 1.0), inputs.get("z_prime", 1.0), inputs.get("eps", 0.0))
    model = DeepMatrix(int(inputs["depth"]), (2, 2))
    kind = inputs.get("init", "balanced")
    require(kind in inits.NAMES["deep"], f"unknown init kind {kind!r}")
    det = None if kind == "identity" else inputs.get("det", "positive")
    return problem, model, inits.by_name(model, kind, inputs["scale"], seed=inputs["seed"], det=det)


# ----------------------------------------------------------------------------------------------------------------
# Outcomes
# ----------------------------------------------------------------------------------------------------------------
def point_outcome(margin: float, error: float, scale: float, **detail) -> Outcome:
    """An outcome for one point. A non-finite margin is a failure of the engine; an infinite or NaN error (an
    error nobody estimated, or one propagated from such an error) is unknown, hence infinite: the point is
    inconclusive, never decided."""
    if not math.isfinite(margin):
        raise EngineFailure(f"non-finite margin {margin!r} (error {error!r}) at {detail}")
    error = float(error)
    if not math.isfinite(error):
        error = math.inf
    return Outcome(float(margin), max(error, 0.0), jsonable(detail), "", float(scale) if scale > 0 else 1.0)


def error_unknown(traj) -> int:
    """How many recorded points of ``traj`` carry no error estimate (a non-finite ``loss_err`` or
    ``product_err``); a trajectory whose ``error_estimate`` is not finite counts all of its points."""
    bad = sum(1 for p in traj.points if not (math.isfinite(p.loss_err) and math.isfinite(p.product_err)))
    est = getattr(traj, "error_estimate", 0.0)
    if bad == 0 and est is not None and not math.isfinite(est):
        return len(traj.points)
    return bad


def combine(outcomes: Iterable[Outcome], engine: str = "", **detail) -> Outcome:
    """The worst of several outcomes (see the module docstring); ``detail`` is merged into its detail."""
    outs = list(outcomes)
    if not outs:
        raise EngineFailure("no point to check (the trajectory recorded nothing the claim applies to)")
    violated = [o for o in outs if o.status == "violated"]
    inconclusive = [o for o in outs if o.status == "inconclusive"]
    if violated:
        worst = min(violated, key=lambda o: (o.margin + o.error) / o.scale)
    elif inconclusive:
        worst = min(inconclusive, key=lambda o: o.normalized_margin)
    else:
        worst = min(outs, key=lambda o: o.normalized_margin)
    d = dict(worst.detail)
    d.update(jsonable(detail))
    if "series" not in d:
        series = _series(outs, worst)
        if series is not None:
            d["series"] = series
    d.setdefault("points_checked", len(outs))
    d.setdefault("points_violated", len(violated))
    d.setdefault("points_inconclusive", len(inconclusive))
    return Outcome(worst.margin, worst.error, d, engine or worst.engine, worst.scale)


#: At most this many points of a trajectory are kept in an outcome's ``series`` (evenly spaced, the worst kept).
SERIES_POINTS = 200
_VALUE_KEYS = ("w11", "norm", "value")


def _series(outs: list, worst: Outcome) -> dict | None:
    """The margins along the trajectory of the worst point's part, for the counterexample figure: ``{"x": "loss" or
    "t", "part", "value_name", "points": [[x, margin, error, value, bound], ...]}`` (value and bound None when the
    points do not record them), or None when fewer than 3 points record a loss or time."""
    part = worst.detail.get("part")
    same = [o for o in outs if o.detail.get("part") == part]
    xkey = next((k for k in ("loss", "t") if all(isinstance(o.detail.get(k), (int, float)) for o in same)), None)
    if xkey is None or len(same) < 3:
        return None
    vkey = next((k for k in _VALUE_KEYS if all(isinstance(o.detail.get(k), (int, float)) for o in same)), None)
    bounded = all(isinstance(o.detail.get("bound"), (int, float)) for o in same)
    keep = list(range(len(same)))
    if len(same) > SERIES_POINTS:
        step = len(same) / SERIES_POINTS
        keep = sorted({int(i * step) for i in range(SERIES_POINTS)}
                      | {i for i, o in enumerate(same) if o is worst})
    points = []
    for i in keep:
        o = same[i]
        points.append([float(o.detail[xkey]), o.margin, o.error, float(o.detail[vkey]) if vkey else None,
                       float(o.detail["bound"]) if bounded else None])
    return jsonable({"x": xkey, "part": part, "value_name": vkey, "points": points})


def identity_outcome(diff: float, tol: float, rounding: float, **detail) -> Outcome:
    """Outcome of a numerical identity check: ``|diff| <= tol`` with ``rounding`` bounding the error of ``diff``.

    Identities (exact in real arithmetic) are accepted when the discrepancy is below a declared tolerance far
    above rounding and far below any genuine failure; the margin is ``tol - |diff|`` normalized by ``tol``."""
    return point_outcome(tol - abs(diff), rounding, tol, discrepancy=float(abs(diff)), tolerance=tol, **detail)


def jsonable(x):
    """``x`` as JSON-ready data: numpy scalars and arrays to Python, non-finite floats as "inf", "-inf", "nan";
    anything else is kept as it is (:func:`models.stored.jsonio.strict` with ``keep_unknown``)."""
    return strict(x, keep_unknown=True)


# ----------------------------------------------------------------------------------------------------------------
# Escalation over engines
# ----------------------------------------------------------------------------------------------------------------
def escalate(run: Callable, evaluate: Callable, ladder: Sequence[tuple[str, dict]] = GF_LADDER, *,
             accept_precision_loss: bool = False) -> Outcome:
    """Run ``run(engine) -> Trajectory`` and ``evaluate(trajectory) -> Outcome`` up the ``ladder``.

    Stops at the first level whose trajectory is trustworthy and whose outcome is decided (holds or violated),
    or whose trustworthy prefix already shows a violation. A level whose trajectory has a point without an error
    estimate (:func:`error_unknown`: the companion or reference run was skipped or ended early) decides
    nothing: its outcome is kept as inconclusive with an infinite error, whatever its margin. Levels whose engine is not available are skipped
    (noted in the detail). With ``accept_precision_loss`` (claims that do not depend on the det sign), a run that
    stopped with ``precision_lost`` is judged on the points it kept, which are valid."""
    tried: list[str] = []
    last: Outcome | None = None
    failure: str | None = None
    for name, options in ladder:
        label = engine_label(name, options)
        try:
            engine = get_engine(name, **options)
        except (ImportError, AttributeError, InvalidInput) as exc:
            tried.append(f"{label}: unavailable ({type(exc).__name__})")
            continue
        try:
            traj = run(engine)
        except InvalidInput as exc:  # this engine does not support the setting
            tried.append(f"{label}: not applicable ({exc})")
            continue
        unknown = error_unknown(traj)
        tried.append(f"{label}: {traj.status.value}" + (f", {unknown} point(s) without an error estimate"
                                                         if unknown else ""))
        try:
            out = evaluate(traj)
        except EngineFailure as exc:
            if exc.decisive or traj.status.trustworthy or (accept_precision_loss
                                                           and traj.status is Status.PRECISION_LOST):
                raise
            failure = f"{traj.status.value}: {traj.message}; {exc}"
            continue
        out = Outcome(out.margin, out.error, {**out.detail, "escalation": list(tried), "status": traj.status.value,
                                             "engine_error_estimate": jsonable(traj.error_estimate)},
                      label, out.scale)
        if unknown and out.status != "inconclusive":
            # a verdict from a run whose error is (partly) unknown is no verdict: its margin may be anywhere
            # within an infinite error. Keep it as inconclusive and go on up the ladder.
            out = Outcome(out.margin, math.inf, {**out.detail, "decided_on_unknown_error": out.status}, label,
                          out.scale)
        if out.status == "violated":
            return out
        usable = traj.status.trustworthy or (accept_precision_loss and traj.status is Status.PRECISION_LOST)
        if not usable:
            failure = f"{label} ended with status {traj.status.value}: {traj.message}"
            last = None
            continue
        last = out
        if out.status == "holds":
            return out
    if last is not None:
        return last
    raise EngineFailure(f"no trustworthy trajectory (tried: {'; '.join(tried)})" + (f"; last: {failure}" if failure else ""))



__all__ = ["GF_LADDER", "combine", "engine_label", "error_unknown", "escalate", "identity_outcome", "jsonable",
           "point_outcome", "rc20_setting"]
