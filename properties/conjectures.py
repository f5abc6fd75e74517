"""Conjectures the literature refutes, and negative controls derived from theorem claims.

A negative control is a theorem claim with one named hypothesis dropped (:meth:`properties.api.Claim.drop`): the
check is the theorem's own, only the strategy stops enforcing the hypothesis. Each is expected to be *refuted*
(a shrunk counterexample in the report); if one ever "holds", either the search is too weak or the hypothesis is
not needed, and the report says so.
"""

from __future__ import annotations

from models.errors import EngineFailure

from . import measures as M
from . import strategies as S
from ._common import escalate, point_outcome, rc20_setting
from .api import CLAIMS, claim, register
from . import rc20 as _rc20  # noqa: F401  -- the theorem claims the controls are derived from
from . import rmc21_lowrank as _rmc21_lowrank  # noqa: F401


def _nuclear_strategy(dropped):
    # each hypothesis changes what is drawn when dropped: scale up to 10 without small_init, depth 2..4 without
    # depth_two (the conjecture is refuted either way; `verify ablate` shows what each one changes)
    return S.fixed_dicts(depth=2 if "depth_two" not in dropped else S.depths(2, 4), init="balanced",
                         scale=S.log_scale(-4.0, -1.0) if "small_init" not in dropped else S.log_scale(-4.0, 1.0),
                         seed=S.seeds(), det=S.det_signs(positive_only=False), until_loss=1e-8)


@claim("gunasekar17.conj.nuclear_norm",
       title="Conjecture: gradient flow from small init converges to the minimum-nuclear-norm completion",
       source="Gunasekar et al. 2017, Conjecture 1 (as stated in ACHL19 section 2); refuted on this instance by "
              "Razin & Cohen 2020 (catalog RC20-Conj-refuted)",
       statement="depth-2 factorization, gradient flow from a small (balanced) init, on [[*, 1], [1, 0]]: the limit "
                 "is the minimum-nuclear-norm completion [[0, 1], [1, 0]] (nuclear norm 2); checked as "
                 "| ||W(T)||_* - 2 | <= 1e-3 * 2 once loss(T) <= 1e-8",
       kind="trajectory", expectation="refuted", strategy=_nuclear_strategy,
       hypotheses=[("small_init", "init scale <= 0.1"), ("depth_two", "depth-2 factorization")],
       cost=1.5)
def nuclear_norm(inputs, dropped):
    """Float64 gradient flow (chart) to loss 1e-8; margin 1e-3 - | ||W||_* - 2 | / 2 at the final point (the
    nearest completion's nuclear norm is within ~1e-4 of W's at that loss), error from the engine's entry error.
    Encoded as 'no norm is minimized on this instance', not as a formal disproof of the PSD-sensing conjecture."""
    nuc = M.Schatten(1.0)

    def run(engine):
        problem, model, init = rc20_setting(inputs)
        return engine.run(problem, model, init, until_loss=inputs["until_loss"], per_decade=2, wall_budget=60.0)

    def evaluate(traj):
        fin = traj.final
        if fin.loss > 1.0001 * inputs["until_loss"]:
            raise EngineFailure(f"the run stopped at loss {fin.loss:.3g} ({traj.status.value}): cannot judge the limit")
        v = nuc(fin.product)
        dev = abs(v - 2.0) / 2.0
        return point_outcome(1e-3 - dev, nuc.error(fin.product, fin.product_err) / 2.0, 1e-3, nuclear_norm=v,
                             w11=float(fin.product[0, 0]), loss=fin.loss, min_nuclear_norm=2.0)

    return escalate(run, evaluate)


# ----- negative controls: a theorem with one hypothesis dropped -------------------------------------------------
register(CLAIMS["rc20.thm1.unobserved_entry"].drop(
    "det_positive", id="rc20.neg.det_negative",
    title="Negative control: rc20.thm1.unobserved_entry without det(W(0)) > 0 (det of either sign)",
    statement="gradient flow, balanced init, depth L >= 2, det W(0) of either sign (the hypothesis det W(0) > 0 "
              "dropped): |w11(t)| >= (1 - s)^2 / s wherever s = sqrt(2 loss(t)) < 1; expected to fail for some "
              "det W(0) < 0, where zero-loss completions with bounded w11 exist"))

register(CLAIMS["rc20.lemma.det_sign"].drop(
    "balanced", id="rc20.neg.unbalanced",
    title="Negative control: rc20.lemma.det_sign without balancedness (per-layer Gaussian init)",
    statement="per-layer Gaussian (unbalanced) init, depth L >= 2, det W(0) != 0 (the hypothesis of a balanced "
              "init dropped): sign det W_{L:1}(t) = sign det W_{L:1}(0) for all t; expected to fail for some init"))

register(CLAIMS["rc20.lemma.det_sign_gd"].drop(
    "small_step", id="rc20.neg.large_step",
    title="Negative control: the GD det-sign lemma with the step size drawn up to 1 (log scale)",
    statement="gradient descent, balanced init, depth L >= 3, step eta drawn up to 1 on a log scale (the hypothesis "
              "eta <= 10^-1.5 dropped), 2000 steps: sign det W_{L:1}(k) = sign det W_{L:1}(0) for every step k; "
              "expected to fail for some large step"))

register(CLAIMS["rmc21.low_tensor_rank"].drop(
    "small_init", id="rmc21.neg.large_init",
    title="Negative control: rmc21.low_tensor_rank from large init (component scale 0.3..3)",
    statement="the setting of rmc21.low_tensor_rank with the init's component scale drawn in 0.3..3 (the hypothesis "
              "of a small init dropped): P(the run ends near rank 1 and beats the linear baseline) >= 0.9, by the "
              "same sequential test; expected to be refuted (the test decides P < 0.9 at level 1e-7): the small- "
              "versus large-init contrast of RMC21 and RC20-Exp-TC"))

