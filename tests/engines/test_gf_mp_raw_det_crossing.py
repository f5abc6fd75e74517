"""gf-mp's raw path never records a det sign it cannot resolve (issue 11).

At depth 2 from a balanced start the det of W decays through every fixed relative band (det W / ||W||_F^2 is
7e-20 at loss 1e-2 from scale 0.1). gf-mp's raw path stops with ``precision_lost`` when a step *ends* inside the
band ``|det W| / ||W||^n < 10^(10 - digits)``; with 30 digits and tol 1e-6 a step jumped over the band, the det
came out negative, and the run went on to loss 1e-6 recording the flipped sign at 16 points ("completed" apart from
its estimate), a false counterexample to RC20's det-sign lemma. A sign change between accepted steps now stops
the run the same way (the det passed through the band). About 3 s."""

from __future__ import annotations

from models import inits
from models.engines import get_engine
from models.factorizations import DeepMatrix
from models.problems import rc20
from models.trajectory import Status


def test_a_det_crossing_inside_one_step_is_precision_lost():
    model = DeepMatrix(2, (2, 2))
    init = inits.balanced(model, 0.1, seed=0, det="positive")
    tr = get_engine("gf-mp", digits=30, tol=1e-6, path="raw", estimate=False).run(
        rc20(), model, init, until_loss=1e-6, per_decade=4, wall_budget=60.0)
    assert tr.status is Status.PRECISION_LOST and "changed sign within one step" in tr.message
    assert len(tr.points) >= 5 and all(p.det_sign == 1 for p in tr.points)
    assert tr.points[-1].loss > 1e-3      # it stopped where the det left what 40 working digits resolve
