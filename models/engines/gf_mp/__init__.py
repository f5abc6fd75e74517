"""``gf-mp``: high-precision gradient flow (mpmath, with FLINT for the linear algebra): 20+ correct digits.

Measured (``verify bench --only gf-mp``, 2-core machine, 40 digits, tol 1e-30, balanced start at scale 0.1):
RC20 down to loss 1e-30 in 34 / 40 / 42 / 43 s at depths 2 / 3 / 4 / 6, *including* the reference run of the
error estimate (the main run alone: ~15 s), with 30 .. 34 correct digits of ``w11`` by that estimate.
With the stage count chosen from the tolerance (issue 12; ``verify bench --only gf-mp --mp-digits D``, RC20,
balanced start at scale 0.1, on the shared 2-core machine at load 2 .. 6, so the seconds vary up to 2x between
runs). Before the changes below: 60 digits (tol 1e-50, 19 stages), 4 levels per decade, depth 2: 421 steps, 62 ..
174 s with the estimate (main run 21 .. 89 s); 100 digits to loss 1e-60 (34 stages): 346 s at 1 level per
decade, and at 4 per decade not done in 600 s. Two causes, both fixed: every recorded loss level *ended a step*
(the step towards it clipped, a passing step undone and redone onto the level, the next one restarted from it:
421 steps where the natural sequence takes 97), and the ``s n x s n`` stage system was eliminated at the working
precision in every Newton iteration. Now a level is recorded inside the step that passes it (``Radau.side``,
see Events: two stage solves per level, no step) and the Newton matrix is factorized once in float64 where its
condition number allows (``radau.StageMatrix``; early in the flow and on the raw path). After: 60 digits, 4
levels per decade, depths 2 / 3 / 4 / 6: 97 .. 107 steps, 35 / 46 / 41 / 31 s with the estimate (main 14 .. 23
s), 38 .. 52 correct digits of ``w11`` by the estimate (fewer than the 59 of the old run, whose many short
landing steps integrated more finely than the tolerance asks); 100 digits to loss 1e-60 at 1 level per decade:
128 steps, 276 s with the estimate (main 145 s), 73 correct digits of ``w11``. The raw path at 30 digits: depth
4 to loss 1e-3 in 8 s (main run; 38 s before), depth 3 to 1e-4 in 6 s (12.5 s before).
Then (``radau.StageMatrix``: the working-precision Newton matrix assembled entry by entry, and eliminated at 128
bits with one refinement where that resolves it; CPU seconds of the whole run with its estimate, since the
shared machine's load made wall times vary 2x): 100 digits to loss 1e-60, depth 2, 4 levels per decade: 208 ->
123 s CPU (399 -> 301 s wall at load 4 .. 7), 128 steps, 73 correct digits of ``w11`` by the estimate; at 1 level
per decade: 59 s CPU (91 s wall); 60 digits to 1e-30 at depths 2 / 3 / 4 / 6: 23.5 / 21.4 / 22.1 / 22.7 -> 16.7
/ 15.5 / 16.3 / 17.8 s CPU, same step counts.

Solver.
    :class:`Radau`: the ``s``-stage Radau IIA collocation method (option ``stages``, by default chosen from the
    tolerance so that the step count does not grow with the digits, see :mod:`models.engines.gf_mp.radau`: order
    ``2s - 1``, stiffly accurate, L-stable), solved by Newton's method on the full ``s n x s n`` stage system with
    one Jacobian per stage (the chart: forward differences at 2/3 of the working precision; the raw path: in
    closed form, see Raw path). The stage Jacobians are taken at
    the predicted stages and recomputed (up to 3 times) when the iteration contracts slowly: the flow's stiffness
    grows like ``loss^-(L-1)/L`` and changes by O(1) factors within one step late in the flow, which is why a
    single Jacobian per step (simplified Newton) does not converge at useful step sizes. On the raw path they are
    also recomputed after every correction ``nd > 1`` (tolerance units) with ``h max|J| nd tol > 0.01`` where ``h
    max|J| >= 1e20`` (``J`` the solve's first Jacobian of its last stage; ``Radau.FULL_NEWTON``, ``STIFF``: the
    stiff directions turn by ~``nd tol`` between iterates, which a kept Jacobian multiplies by ``h lambda_max``,
    ~1e40 at depth 6 near loss 1e-22); a correction 1000x the previous such one fails the solve (a shorter step),
    and a converged solve is still accepted only by the contraction test. Each stage Jacobian is formed from the
    slope the iterate implies at that stage, and the Jacobian at an accepted point from its step's collocation
    slope there (none after a step at rest: then the state's own). The Newton matrix is
    factorized once in float64 and serves every correction when ``cond * eps < 1e-6`` (a Newton matrix need only
    approximate: the residual is at the working precision), else it is a FLINT ``arb_mat`` eliminated at 128 bits
    with one refinement from the working-precision residual, accepted when the refinement estimates the
    correction's relative error below 1e-6, and otherwise (``cond`` beyond ~1e38 = 2^128 after equilibration,
    late in a stiff flow) by Gaussian elimination at the working precision
    (:class:`models.engines.gf_mp.radau.StageMatrix`); the chart's
    right-hand side is evaluated in FLINT ``arb`` arithmetic (:class:`_FlintKit`), converted exactly from and to
    mpf.
    Step-size control by step doubling: each step is done once with ``h`` and twice with ``h / 2`` (the half
    steps' Jacobians are interpolated from the full step's), the half-step result is kept and its error is
    estimated as the difference over ``2^p - 1``, ``p = 2s - 1``. The predictor is the last full-length step's
    collocation polynomial (the constant predictor when that leaves the chart's domain). About 45 evaluations of
    the right-hand side per step, ~100 steps from the start to loss 1e-30 (60 digits).

Chart path (balanced, full-width, 2x2 deep factorization, the RC20 setting).
    The *scaled* chart of :mod:`models.chart`: ``W = R(theta) diag(s1 e^rho1, s2 e^rho2) R(phi)^T`` with state
    ``(p, q, rho1, rho2) = (e^rho1 theta, e^rho1 phi, rho1, rho2)``, integrated in log-time ``tau = log(1 + t)``
    (``dz/dtau = e^tau f(z)``). The det sign is fixed by construction, the tiny singular value is stored through
    its logarithm (``rho2`` falls without bound: to about -1e26 near loss 1e-27 at depth 2), the residuals are
    formed without cancellation, and late in the flow the fast (stiff) modes are the coordinates ``p, q``
    themselves (they are nearly ``w21, w12``), so the Jacobian is well conditioned although ``h * lambda_max``
    reaches ``1e60`` at loss 1e-30: a handful of guard digits suffices. A start with (nearly) equal singular
    values (``alpha * I``, where the chart is singular) is first integrated on the raw factors until the relative
    gap ``1 - (sigma2/sigma1)^(2/L)`` exceeds 1e-3.

Events.
    Explicit times (``record_at``, ``t_max``) are step ends. A loss level ``10^(-k/per_decade)`` (and the final
    ``until_loss``) is recorded *inside* the step that passes it, and the trajectory goes on from that step's end
    (issue 12: ending a step on every level, as before, cost 421 steps where the natural sequence takes 97, 60
    digits to loss 1e-30 at 4 levels per decade). The crossing's ``tau`` is found by Newton/secant iterations
    (safeguarded by the step's bracket), started from the cubic Hermite interpolant of ``log loss`` over the
    step and its collocation polynomials; each iterate is an exact Radau step of the remaining length from the
    start of the half step that holds it (``Radau.side``: its local error is at most that half step's, so the
    point is as accurate as a step end), its stage equations solved to ``LAND_KAPPA`` (1e-6) tolerances with
    fresh stage Jacobians so that it is smooth in ``tau``. About two such stage solves per level (no step,
    no error estimate). A level is recorded with its loss in ``[level (1 - 1e-3 tol), level]`` (``LAND_TIGHT``;
    after several stalled iterations within ``LAND_SLACK = 1e4`` tolerances, counted in the stats as
    ``loose_landings``); the record holds the loss actually reached. On the raw path the det's precision checks
    run on the step's end before anything inside it is recorded, and on every recorded level.

Depth 1 (the linear model).
    The closed form of :mod:`models.engines.linear_flow_mp` (exact up to the working precision; no integration).

Raw path (everything else deep-matrix: unbalanced inits, other shapes).
    The flattened factors with the same solver, in log-time. The det sign (square factors) is the product of the
    factor dets, exact in mpmath; the run stops with ``Status.PRECISION_LOST`` when a watched det falls below
    its floor, or changes sign within one step from below the floor's square root (a decaying det can jump over
    the band in one step): with ``path="raw"`` and square factors *every factor's* ``|det W_j| / ||W_j||_F^n``
    against ``max(10^(10 - digits), sqrt(tol))`` (each factor det's rounding is ~``10^-dps ||W_j||^n``, and the
    steps break balance by ~``tol``, which ties the factor dets together only down to ~``sqrt(tol)``; see
    :meth:`.systems.RawSystem.precision_problem`), else (a chart run's raw start, non-square factors) ``|det W| /
    ||W||_F^n`` against ``10^(10 - digits)``. It also stops where the loss's rounding bound (the residual is
    formed from a product of factors: ~``10^-dps ||W|| |r|``) exceeds 1e-20 of the loss; that bound is part of
    every raw point's ``loss_err``. Its Jacobian is the loss Hessian in the factors in closed
    form (:meth:`.systems.RawSystem.jacobian`, FLINT at the working precision, ``O(L^2)`` small products; forward
    differences cost ``4 L`` field evaluations: 6.7 -> 0.8 ms CPU per Jacobian at depth 8, 40 digits), its
    residual term formed with the loss gradient that each stage's collocation slope implies, not the one at the
    Newton iterate (:meth:`.systems.RawSystem.zjac`, ``slope``): late in the flow ``w12, w21`` are stiff beyond
    ``h lambda ~ 1e29`` and an iterate slightly off the slow manifold has their residuals wrong by orders of
    magnitude, which made Newton diverge and depths 6, 7 end ``solver_failed`` (issue 11); the gradient at the
    iterate is kept where the slope does not resolve that fit (``RawSystem.implied_gradient``, ball arithmetic:
    every factor near-singular at once), and a stage solve that fails with those Jacobians is
    retried with the ones at the iterate before the step is halved, and a point recorded inside a step that
    fails is redone whole with them (``Radau.solve_stages_any``, ``Radau.side``: depth 3 at 70 digits needed that
    near loss 1e-27, where all factors are near-singular). Where ``h max|J| >= 1e20`` each stage of every Newton
    iterate is first moved along its stiff directions onto the slow manifold its collocation slope implies
    (:meth:`.systems.RawSystem.slow_projection`, ``Radau.PROJECT``): the stiff directions turn with the state, so
    an iterate's stiff offset, multiplied by ``h lambda`` (1e57 at depth 8 near loss 1e-29), corrupts the
    correction in the other directions; without the move depth 8 crept from loss 1e-29 towards 1e-30 in steps
    of 0.02 in log-time, with it the claim's check reached 1e-30 (issue 11). It is there for unbalanced starts, the raw-factor det-sign check and cross-checks; measured (``verify bench --only
    gf-mp-raw``, 30 digits, main run without the reference, loaded 2-core machine): depth 4 to loss 1e-6 in 4.3
    s CPU, depth 8 to 1e-2 in 10 s CPU, the Newton matrix's factorization and solves being most of it. Since
    ``det W / ||W||^2`` falls like ``loss^(L/(L-2))`` from a balanced start (RC20; 1e-87 at depth 3, 3.6e-59 at
    depth 4, 5e-40 at depth 8 at loss 1e-30), the old end-to-end stop needed about ``10 + 30 L/(L-2)`` digits
    for loss 1e-30 (97 at depth 3, 70 at depth 4, 50 at depth 8); the per-factor stop needs ~43 digits (the
    loss) and ``tol`` below the square of the factor ratio ``(det W / ||W||^2)^(1/L)`` (1e-58 at depth 3,
    6e-30 at depth 4, 1.4e-10 at depth 8).

Precision.
    Everything happens in a private ``mpmath.MPContext``; the global ``mpmath.mp`` is never read or changed, and
    FLINT's (global) precision is set only for the duration of each FLINT call, under a lock (:func:`arb_prec`).
    The working precision is ``digits + guard`` decimal digits, ``guard`` defaulting to ``10 +
    decades(until_loss)/2`` (the residuals ``w12 - 1`` etc. lose ``-log10 sqrt(loss)`` digits to cancellation).

Error estimate.
    A *reference* run repeats the integration with ``extra_digits`` more digits and a tolerance ``tighter``
    times smaller, recording the same events (the same loss levels, the same times). At each point the
    reference is moved along the flow to the main record's time, ``W'(tau) ~ W' + dW'/dtau (tau - tau')`` (loss
    levels are landed on within ``LAND_TIGHT`` tolerances, so the two runs' records of a level sit at slightly
    different times), and ``product_err = 2 max_ij (|W_ij - W'_ij(tau)| + |dW_ij/dtau - dW'_ij/dtau| |tau -
    tau'|) + |W| 10^-digits`` (the second term bounds the first-order move's remainder); likewise ``loss_err``.
    The reference is far more accurate than the main run, so the difference is the main run's error at its
    recorded time; the factor 2 covers the reference's own error.

Modules: :mod:`.arith` (mpmath contexts, FLINT ``arb`` helpers, dense mpf linear algebra), :mod:`.radau` (the
Radau IIA solver and its FLINT kernels), :mod:`.systems` (the chart and raw systems), :mod:`.driver` (one
integration: events, landing on loss levels, stops), :mod:`.engine` (:class:`GradientFlowMP`: options, the
reference run and the error estimate).
"""

from __future__ import annotations

from .engine import PATHS, GradientFlowMP

__all__ = ["PATHS", "GradientFlowMP"]
