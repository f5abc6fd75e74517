"""RC20's theorem-level claims as the combination of their parts (issue 11).

``rc20.thm1.*``, ``rc20.thm2.perturbed`` and ``rc20.cor.norms_diverge`` keep their ids; their verdict now rests on

1. the **static part**, proven exactly for every 2x2 matrix (``rc20.thm1.static`` / ``rc20.thm2.static``:
   sympy certificates, :mod:`properties.rc20_static`);
2. the **dynamic part** along a trajectory that is shown to be gradient flow: the engine's tangent at every
   recorded point against the gradient-flow field computed independently (:mod:`properties.flow_check`; a path
   that is not gradient flow ends the claim in ``error``), the det sign at every recorded point equal to the
   initial one, and the loss reaching the drawn level (when the statement needs it);
3. the bound itself at every recorded point (the original check, kept: it is what the statement says).

:func:`theorem_level` wraps a claim's trajectory evaluation with 1 and 2; the outcome is the worst of the three
(:func:`properties.combine`) and its detail says what it rests on (``rests_on``).
"""

from __future__ import annotations

from models.errors import EngineFailure

from ._common import combine, point_outcome
from .api import Outcome
from .flow_check import validated
from .rc20_static import prove_static

#: What each theorem-level claim rests on (also the claims' ``rests_on`` metadata).
RESTS_ON = {
    "thm1": ("rc20.thm1.static (exact: sympy certificates)",
             "det sign kept at every recorded point of the trajectory (dynamic)",
             "rc20.lemma.det_sign_raw (dynamic: every factor's det sign along gf-mp on the raw factors, resolved)",
             "the trajectory is gradient flow: engine tangent = independent gradient-flow field (flow_check)",
             "the bound at every recorded point"),
    "thm2": ("rc20.thm2.static (exact: sympy certificates)",
             "det sign kept at every recorded point of the trajectory (dynamic)",
             "rc20.lemma.det_sign_raw (dynamic: every factor's det sign along gf-mp on the raw factors, resolved)",
             "the trajectory is gradient flow: engine tangent = independent gradient-flow field (flow_check)",
             "the bound at every recorded point"),
}


def static_outcome(theorem: str) -> Outcome:
    """The exact static part (cached proof); a proof failure is an engine failure, never a verdict."""
    rec = prove_static(theorem)
    return Outcome(1.0, 0.0, {"part": f"rc20.{theorem}.static", "facts_checked": rec["facts_checked"]},
                   "sympy certificates", 1.0)


def det_sign_outcome(traj, sign0: int) -> Outcome:
    """Margin +1 where the recorded det sign equals ``sign0``, -1 where it differs (exact signs: the engines
    compute them without cancellation); an unresolvable sign is an engine failure."""
    outs = []
    for k, p in enumerate(traj.points):
        if p.det_sign is None:
            raise EngineFailure(f"det sign unresolvable at recorded point {k} (t = {p.t})")
        outs.append(point_outcome(float(sign0 * p.det_sign), 0.0, 1.0, point=k, t=p.t, loss=p.loss,
                                  part="det sign kept", det_sign=p.det_sign))
    return combine(outs)


def _reached_outcome(traj, until_loss: float) -> Outcome:
    """The run reached the drawn loss: margin 1 when it did (the engine lands on the level, to 1e-6 relative),
    else minus the decades it stopped short."""
    import math

    fin = traj.points[-1].loss
    margin = 1.0 if fin <= until_loss * (1 + 1e-6) else -math.log10(fin / until_loss)
    return point_outcome(margin, 0.0, 1.0, part="loss reached until_loss", final_loss=fin, until_loss=until_loss)


def theorem_level(evaluate, theorem: str, problem, depth: int, sign0: int, until_loss: float | None = None):
    """``evaluate`` (the bound along the trajectory) combined with the static part, the det sign along the
    trajectory and (with ``until_loss``) the loss reached, all behind the gradient-flow check."""
    def ev(traj):
        bound = evaluate(traj)
        parts = [bound, static_outcome(theorem), det_sign_outcome(traj, sign0)]
        if until_loss is not None and traj.status.value == "completed":
            parts.append(_reached_outcome(traj, until_loss))
        out = combine(parts)
        if out.status == bound.status:   # keep the bound's own detail (its worst point) when it decides
            out = Outcome(out.margin, out.error, dict(bound.detail), bound.engine, out.scale)
        detail = {**out.detail, "rests_on": {
            "static": f"rc20.{theorem}.static proven (sympy certificates)",
            "det_sign": parts[2].status, "bound": bound.status,
            **({"loss_reached": parts[3].status} if len(parts) > 3 else {})}}
        return Outcome(out.margin, out.error, detail, out.engine or bound.engine, out.scale)

    return validated(ev, problem, depth)


__all__ = ["RESTS_ON", "det_sign_outcome", "static_outcome", "theorem_level"]
