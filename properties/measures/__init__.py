"""Measures on 2x2 (and general) matrices and on tensors: norms, quasi-norms, rank surrogates.

One namespace over three modules: :mod:`.norms` (norm-like measures), :mod:`.rank` (rank measures on matrices)
and :mod:`.tensor` (CP-ALS and rank-1 fits of tensors).

Every norm-like measure is a small frozen callable with a readable ``repr`` (``S_1``, ``l_inf``, ``||.||_{1->2}``,
``0.5*S_2 + 2*l_1``, ``||M vec(.)||_2``) and carries the constants the RC20 claims need:

- ``quasi_constant`` K: ``||A + B|| <= K (||A|| + ||B||)`` (K = 1 for a norm). Schatten-p and entrywise l_p with
  p < 1 have K = 2^(1/p - 1) (from the p-triangle inequality ``||A+B||^p <= ||A||^p + ||B||^p``, McCarthy/Rotfel'd
  for Schatten, elementary for l_p); a weighted sum has the largest K of its terms.
- ``c``: ``inf{ ||X|| : X in R^{2x2}, X_11 = 1 }``, the constant of RC20's norm bound ``||W|| >= c |w11|``.
  ``c_kind`` says whether it is a closed form (``"closed form"``) or a certified lower bound
  (``"lower bound"``): Schatten-p, entrywise l_p and induced p->q have c = 1 in closed form (each is >= |X_11| and
  equals 1 at E_11); the linear-map norm has c = 1/||M^{-T} e_1||_2 in closed form; a weighted sum has the lower
  bound sum_i w_i c_i (exact when all terms attain their infimum at the same X, as E_11 does for the first three).
- ``error(W, delta)``: a bound on ``| ||W'|| - ||W|| |`` over all W' with ``max|W' - W| <= delta`` (used to carry
  an engine's entry error through a norm): monotone gauges of singular values or entries are evaluated at the
  perturbed arguments; norms use their Lipschitz constant ``sum_ij ||E_ij||``.

Rank measures: :func:`sigma2`, :func:`erank` (Roy & Vetterli 2007: natural log, zero singular values dropped),
:func:`dist_rank1` (Eckart-Young: the Frobenius distance to the nearest rank-<=1 matrix), :func:`rank_subopt`
(RC20: ``max{dist to rank 1, erank - 1}``). Rank surrogates that are *not* norms (:class:`ERank`,
:class:`SmoothRank`) exist so that a claim whose hypothesis "is a norm" is dropped can draw them.

Tensors: :func:`best_rank1` (HOSVD-initialised higher-order power iteration, i.e. rank-1 ALS), :func:`dist_rank1_tensor`
(an upper bound on the distance to the best rank-1 tensor: the fit found is feasible), :func:`cp_als` and
:func:`cp_rank_estimate` (smallest r at which CP-ALS reaches a relative error below ``tol``: an upper-bound
estimate of the CP rank), :func:`component_norms` (RMC21).

Measures are described by plain dicts (:meth:`spec`) so that Hypothesis inputs stay JSON-ready;
:func:`from_spec` rebuilds one.
"""

from __future__ import annotations

from models.factorizations import component_norms

from .norms import (E11, INF, J, ERank, Entrywise, Induced, LinearL2, Measure, Schatten, SmoothRank, Weighted,
                    from_spec, lp, p_from, random_linear_l2)
from .rank import (dist_rank1, erank, erank_excess_from_ratio, erank_from_ratio, erank_of_singular_values,
                   rank_subopt, sigma2, svals)
from .tensor import best_rank1, cp_als, cp_rank_estimate, dist_rank1_tensor, rank1_tensor

__all__ = [
    "E11", "INF", "J", "ERank", "Entrywise", "Induced", "LinearL2", "Measure", "Schatten", "SmoothRank", "Weighted",
    "best_rank1", "component_norms", "cp_als", "cp_rank_estimate", "dist_rank1", "dist_rank1_tensor", "erank",
    "erank_excess_from_ratio", "erank_from_ratio", "erank_of_singular_values", "from_spec", "lp", "p_from",
    "random_linear_l2", "rank1_tensor", "rank_subopt", "sigma2", "svals",
]
