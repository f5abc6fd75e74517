"""A user-defined claim, written the way a researcher writes one in their own module.

Run it with either of::

    verify run --claims properties.examples.my_claims
    verify run --claims properties/examples/my_claims.py

``verify list --claims properties.examples.my_claims`` shows it; ``verify show mine.gf_loss_monotone --claims ...``
prints its statement. Add ``--claims properties`` to run it together with the built-in claims.
"""

from __future__ import annotations

import numpy as np

from properties import claim, combine, escalate, point_outcome, rc20_setting
from properties import strategies as S

TIMES = tuple(float(t) for t in np.logspace(-2, 4, 25))   # where the loss is compared


@claim("mine.gf_loss_monotone",
       title="The loss never increases along gradient flow (2x2 completion, balanced init, any depth)",
       source="elementary: d loss/dt = -||grad phi||^2 <= 0",
       statement="on [[*, 1], [1, 0]] with a depth-L balanced init, det > 0: loss(t2) <= loss(t1) for t1 < t2",
       kind="trajectory",
       strategy=lambda dropped: S.fixed_dicts(depth=S.depths(2, 5), init="balanced", scale=S.log_scale(-1.0, 0.0),
                                              seed=S.seeds(), det="positive"),
       cost=0.5)
def gf_loss_monotone(inputs, dropped):
    """Float64 gradient flow recorded at 25 log-spaced times in [0.01, 1e4] (escalating to a tighter tolerance
    and then mpmath when a margin is within the engine's error); margin (l_k - l_{k+1})/l_k for consecutive
    recorded points, error the two points' loss errors over l_k."""

    def run(engine):
        problem, model, init = rc20_setting(inputs)
        return engine.run(problem, model, init, record_at=TIMES, until_loss=1e-10, wall_budget=30.0)

    def evaluate(traj):
        pts = sorted(traj.points, key=lambda p: p.t)
        return combine(point_outcome((a.loss - b.loss) / a.loss, (a.loss_err + b.loss_err) / a.loss, 1.0,
                                     t=b.t, loss=b.loss)
                       for a, b in zip(pts[:-1], pts[1:]) if b.t > a.t)

    return escalate(run, evaluate)
