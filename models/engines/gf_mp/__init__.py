"""``gf-mp``: high-precision gradient flow (mpmath, with FLINT for the linear algebra): 20+ correct digits.

Measured (``verify bench --only gf-mp``, 2-core machine, 40 digits, tol 1e-30, balanced start at scale 0.1):
RC20 down to loss 1e-30 in 34 / 40 / 42 / 43 s at depths 2 / 3 / 4 / 6, *including* the reference run of the
error estimate (the main run alone: ~15 s), with 30 .. 34 correct digits of ``w11`` by that estimate.
With the stage count chosen from the tolerance (issue 12; ``verify bench --only gf-mp --mp-digits D``, depth 2,
on the shared machine at load 4 .. 9, so the seconds vary 2x between runs): 40 digits, 11 stages: 377 steps, 49 s
(main run 23 s); 60 digits (tol 1e-50), 19 stages: 421 steps, 149 .. 174 s (main run 41 .. 89 s), 59 digits of
``w11`` by the estimate, where 10 stages used to stall (loss 1.8e-2 after 634 steps and 60 s); 100 digits to
loss 1e-60, 34 stages: the main run's 40% share (240 s) of a 600 s budget ended at loss 3e-4 after 135 steps
(1.8 s per step: the ``136 x 136`` elimination of the stage system at 465 bits dominates). Depth 6 at 60
digits: status budget at loss 5.6e-19 with a 300 s budget. Most of those steps land on the recorded loss levels
(``per_decade`` 4, each ended a step; see Events for how levels are recorded now): with ``per_decade=1`` the 60-digit depth-2 run takes 171 steps and 32.5 s
*with* its error estimate (main 14.3 s, reference 18.2 s; 44 correct digits of ``w11`` by it), under the issue's
60 s; 100 digits to loss 1e-60 (34 stages) completes in 346 s with its estimate (main 158 s, 275 steps; 90
correct digits of ``w11``), above the issue's 300 s. With the default 4 levels per decade neither issue-12
target (60 digits in 60 s, 100 digits in 5 min) is met.

Solver.
    :class:`Radau`: the ``s``-stage Radau IIA collocation method (option ``stages``, by default chosen from the
    tolerance so that the step count does not grow with the digits, see :mod:`models.engines.gf_mp.radau`: order
    ``2s - 1``, stiffly accurate, L-stable), solved by Newton's method on the full ``s n x s n`` stage system with
    one Jacobian per stage (forward differences at 2/3 of the working precision). The stage Jacobians are taken at
    the predicted stages and recomputed (up to 3 times) when the iteration contracts slowly: the flow's stiffness
    grows like ``loss^-(L-1)/L`` and changes by O(1) factors within one step late in the flow, which is why a
    single Jacobian per step (simplified Newton) does not converge at useful step sizes. The Newton matrix is a
    FLINT ``arb_mat`` solved by Gaussian elimination at the working precision, and the chart's right-hand side is
    evaluated in FLINT ``arb`` arithmetic (:class:`_FlintKit`); both are converted exactly from and to mpf.
    Step-size control by step doubling: each step is done once with ``h`` and twice with ``h / 2`` (the half
    steps' Jacobians are interpolated from the full step's), the half-step result is kept and its error is
    estimated as the difference over ``2^p - 1``, ``p = 2s - 1``. The predictor is the last full-length step's
    collocation polynomial (the constant predictor when that leaves the chart's domain). About 45 evaluations of
    the right-hand side per step, ~410 .. 470 steps from the start to loss 1e-30.

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
    factor dets, exact in mpmath; the run stops with ``Status.PRECISION_LOST`` when ``|det W| / ||W||_F^n``
    falls below ``10^(10 - digits)``, or changes sign within one step from below ``10^((10 - digits)/2)`` (a
    decaying det can jump over the band in one step). It is slow (a Jacobian costs ``4 L`` extra evaluations): it is there for
    unbalanced starts and cross-checks at moderate loss.

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
