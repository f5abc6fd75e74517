"""The ``gf-mp`` rows of ``verify bench`` (moved here from :mod:`models.engines.gf_mp`)."""

from __future__ import annotations

import math
from typing import Sequence

from models import inits
from models.engines.gf_mp import GradientFlowMP
from models.engines.gf_mp.arith import make_context
from models.factorizations import DeepMatrix
from models.problems import rc20


# ---------------------------------------------------------------------------------------------------------------
# Benchmark (for ``verify bench``).
# ---------------------------------------------------------------------------------------------------------------
def bench_gf_mp(depths: Sequence[int] = (2, 3, 4, 6), until_loss: float = 1e-30, *, digits: int = 40,
                scale: float = 0.1, seed: int = 0, wall_budget: float = 300.0, per_decade: int = 4) -> list[dict]:
    """One gf-mp run per depth on RC20 ``[[*, 1], [1, 0]]`` from a balanced start (``scale``, det > 0), down to
    ``until_loss``. Rows: ``workload, depth, seconds`` (main + reference run), ``loss`` (final), ``status``,
    ``w11_rel_err`` (the error estimate ``product_err / |w11|`` at the end: 1e-20 means 20 correct digits),
    ``w11_digits`` (correct decimal digits of w11 by that estimate), ``w11_times_s`` (``|w11| sqrt(2 loss)`` as a
    20-digit string: it tends to 1, and at loss 1e-30 differs from it by less than 1e-14), ``steps`` (main run),
    ``w11`` (decimal string), ``main_seconds`` (the main run alone), ``stages`` (Radau stages of the main run),
    ``per_decade`` (loss levels recorded per decade: each is found inside a step by about two stage solves)."""
    rows = []
    for L in depths:
        model = DeepMatrix(int(L), (2, 2))
        init = inits.balanced(model, scale, seed=seed, det="positive")
        tr = GradientFlowMP(digits=digits).run(rc20(), model, init, until_loss=until_loss, wall_budget=wall_budget,
                                               per_decade=per_decade)
        fin = tr.final
        ctx = make_context(digits + 10)
        w11 = ctx.mpf(fin.hp["product"][0][0]) if fin.hp else ctx.mpf(float(fin.product[0, 0]))
        loss = ctx.mpf(fin.hp["loss"]) if fin.hp else ctx.mpf(fin.loss)
        rel = float(fin.product_err / abs(w11)) if w11 else math.inf
        rows.append({
            "workload": f"gf-mp {digits} digits rc20 balanced s={scale:g} to loss {until_loss:g}",
            "depth": int(L), "seconds": round(tr.seconds, 3), "loss": float(loss), "status": tr.status.value,
            "main_seconds": tr.stats.get("seconds"),
            "stages": tr.stats.get("stages"), "per_decade": int(per_decade),
            "w11_rel_err": rel,
            "w11_digits": int(math.floor(-math.log10(rel))) if 0 < rel < 1 else 0,
            "w11_times_s": ctx.nstr(abs(w11) * ctx.sqrt(2 * loss), 20),
            "steps": tr.stats.get("steps"),
            "w11": ctx.nstr(w11, 25),
        })
    return rows


def bench_gf_mp_raw(depths: Sequence[int] = (4, 8), until_loss: float = 1e-30, *, digits: int = 30,
                    scale: float = 1e-2, seed: int = 0, wall_budget: float = 45.0) -> list[dict]:
    """How deep gf-mp's raw-factor path (``path="raw"``, the engine of ``rc20.lemma.det_sign_raw``) gets on RC20
    from an exactly balanced start (:func:`properties.balanced_exact.balanced_exact`, ``scale``, det > 0) towards
    ``until_loss`` within ``wall_budget`` seconds, with its reference run, 2 levels per decade (the claim's
    recording). Rows: ``workload, depth, seconds`` (wall, main + reference), ``cpu_seconds`` (this process: on a
    loaded machine the wall figure is noisy, the CPU one is not), ``main_seconds``, ``loss`` reached, ``status``
    (``budget``: stopped by the wall budget; ``precision_lost``: ``|det W| / ||W||^2`` left what the digits
    resolve), and the main run's ``steps``, ``njev`` (Jacobians), ``nlu`` (Newton matrices) and ``newton``
    (iterations)."""
    import time

    from properties.balanced_exact import balanced_exact

    rows = []
    for L in depths:
        model = DeepMatrix(int(L), (2, 2))
        init = balanced_exact(model, scale, seed, "positive")
        c0 = time.process_time()
        tr = GradientFlowMP(digits=digits, path="raw").run(rc20(), model, init, until_loss=until_loss,
                                                           per_decade=2, wall_budget=wall_budget)
        rows.append({
            "workload": f"gf-mp raw {digits} digits rc20 balanced_exact s={scale:g} to loss {until_loss:g} in "
                        f"{wall_budget:g} s",
            "depth": int(L), "seconds": round(tr.seconds, 3), "cpu_seconds": round(time.process_time() - c0, 3),
            "main_seconds": tr.stats.get("seconds"), "loss": float(tr.final.loss), "status": tr.status.value,
            **{k: tr.stats.get(k) for k in ("steps", "njev", "nlu", "newton")},
        })
    return rows
