"""Toy claims of each kind for the evidence-chain tests (imported with ``--claims PATH``): one exact (sympy), one
dynamic (a real float64 gradient-flow run of 2x2 depth 2 to loss 1e-2, validated by
:func:`properties.flow_check.validated`), one statistical (an exact binomial test stating level and power)."""

from __future__ import annotations

from hypothesis import strategies as st

from properties.api import Outcome, claim


@claim("toychain.exact", title="(sqrt x)^2 = x for x = 2", source="Toy 2024, Lemma 10", kind="exact",
       statement="sqrt(2)^2 - 2 = 0", strategy=st.just({"x": 2}),
       rests_on=("sqrt(2)^2 = 2 proven exactly (sympy)",))
def exact(inputs, dropped):
    """sympy simplifies sqrt(x)^2 - x to 0; margin 1 when it does."""
    import sympy
    x = sympy.Integer(inputs["x"])
    return Outcome(1.0 if sympy.simplify(sympy.sqrt(x) ** 2 - x) == 0 else -1.0, 0.0, {}, "sympy")


@claim("toychain.dynamic", title="gradient flow lowers the loss", source="Toy 2024, Lemma 11", kind="trajectory",
       statement="loss(t) <= loss(0) along gradient flow", strategy=st.just({"scale": 0.1}),
       rests_on=("the trajectory is gradient flow (flow_check)", "loss(end) below loss(0) (dynamic)"))
def dynamic(inputs, dropped):
    """gf (rtol 1e-10) on RC20's 2x2 problem, depth 2, balanced init, to loss 1e-2; margin loss(0) - loss(end)
    against the engine's loss error, behind the gradient-flow check of every recorded point."""
    from models import inits
    from models.engines import get_engine
    from models.factorizations import DeepMatrix
    from models.problems import rc20
    from properties.flow_check import validated

    problem, model = rc20(), DeepMatrix(2, (2, 2))
    init = inits.balanced(model, inputs["scale"], seed=0, det="positive")
    traj = get_engine("gf", rtol=1e-10).run(problem, model, init, until_loss=1e-2)

    def evaluate(tr):
        a, b = tr.points[0], tr.points[-1]
        parts = {"static": "toychain.exact proven (sympy)", "loss_decreased": "holds"}
        return Outcome(a.loss - b.loss, a.loss_err + b.loss_err, {"rests_on": parts}, "gf rtol=1e-10")

    return validated(evaluate, problem, 2)(traj)


@claim("toychain.stat", title="a fair coin is not two-headed", source="Toy 2024, Remark 12", kind="statistical",
       statement="P(heads) < 1", strategy=st.just({"n": 20, "heads": 9}))
def stat(inputs, dropped):
    """Exact one-sided binomial test of H0 P(heads) = 1 on n fixed draws (9 heads of 20): rejected at level 1e-3
    whenever a tail shows; power 1 against any P(heads) <= 0.9 with 20 draws (1 - 0.9^20 > 0.87)."""
    n, k = inputs["n"], inputs["heads"]
    p_value = 1.0 if k == n else 0.0
    return Outcome(1e-3 - p_value, 0.0, {"test": "exact one-sided binomial, H0 P(heads) = 1", "level": 1e-3,
                                          "power_vs_p_0.9": "0.878", "n": n, "p_value": p_value},
                   "exact count")
