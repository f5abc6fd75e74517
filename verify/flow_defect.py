"""The gradient-flow defect of a simulated trajectory, for ``verify simulate``'s JSON (issue 11).

For runs of a gradient-flow engine (one whose declared ``clock`` is ``"time"``: ``gf``, ``gf-mp``) of a deep
matrix factorization, every recorded point carries the engine's tangent ``dW/dt``;
:func:`properties.flow_check.point_defect` compares it with the gradient-flow vector field computed independently
(mpmath, from the problem's raw data and the recorded or rebuilt balanced factors). This module
writes that comparison into the trajectory's JSON: each point gets ``flow_defect`` (``max|T - F| / max|F|``) and
``flow_defect_err`` (its numerical error), and the document gets ``flow_defect``: ``{"max", "max_err", "at_t",
"tolerance", "points", "exceeds_tolerance", "unresolved", "method"}`` (``exceeds_tolerance``: some point's defect
clears the tolerance beyond its error, i.e. the path is not gradient flow; ``unresolved``: how many points' defect
plus error is not below the tolerance, where the check decides nothing, e.g. deep in the flow where rebuilding
balanced factors from W is ill-conditioned). The mpmath field costs about
(d d')^2 evaluations per point, so problems with more than ``MAX_ENTRIES`` end-to-end entries get
``{"max": null, "note": ...}`` instead; so do engines and models the check does not apply to (gd, CP).
"""

from __future__ import annotations

from models.factorizations import DeepMatrix
from models.problems import MatrixProblem
from properties.flow_check import FLOW_TOL, point_defect
from verify import engine_facts
from models.stored.jsonio import number as _num

MAX_ENTRIES = 16
METHOD = ("engine tangent dW/dt against the gradient-flow field computed from the raw factors' gradient "
          "(properties/flow_check.py), relative max-entry difference")


def annotate(doc: dict, traj, problem, model) -> dict:
    """Add the per-point ``flow_defect`` and the summary to ``doc`` (the trajectory's JSON dict); returns it."""
    why = None
    if engine_facts.clock(traj.engine) != "time":
        why = f"engine {traj.engine} is not a gradient-flow engine"
    elif not (isinstance(model, DeepMatrix) and isinstance(problem, MatrixProblem)):
        why = "the check applies to deep matrix factorizations"
    elif problem.shape[0] * problem.shape[1] > MAX_ENTRIES:
        why = (f"not computed: {problem.shape[0]}x{problem.shape[1]} has more than {MAX_ENTRIES} entries (the "
               f"mpmath field costs ~(d d')^2 evaluations per point)")
    if why is not None:
        doc["flow_defect"] = {"max": None, "note": why}
        return doc
    worst = worst_err = worst_t = None
    exceeds, unresolved = False, 0
    for p, out in zip(traj.points, doc["points"]):
        if p.tangent is None and not (p.hp and "tangent" in p.hp):
            out["flow_defect"] = out["flow_defect_err"] = None
            continue
        d, e = point_defect(p, problem, model.depth)
        out["flow_defect"], out["flow_defect_err"] = _num(d), _num(e)
        exceeds = exceeds or d - e > FLOW_TOL
        unresolved += not d + e < FLOW_TOL
        if worst is None or d > worst:
            worst, worst_err, worst_t = d, e, p.t
    doc["flow_defect"] = {"max": None if worst is None else _num(worst),
                          "max_err": None if worst_err is None else _num(worst_err),
                          "at_t": worst_t, "tolerance": FLOW_TOL, "exceeds_tolerance": exceeds,
                          "unresolved": unresolved,
                          "points": sum(1 for o in doc["points"] if o.get("flow_defect") is not None),
                          "method": METHOD}
    if worst is None:
        doc["flow_defect"]["note"] = "no recorded point carries the engine's tangent (depth 1: the closed form)"
    return doc


__all__ = ["MAX_ENTRIES", "annotate"]
