"""Rank measures on matrices: :func:`sigma2`, :func:`erank` (Roy & Vetterli 2007: natural log, zero singular values
dropped), :func:`dist_rank1` (Eckart-Young: the Frobenius distance to the nearest rank-<=1 matrix),
:func:`rank_subopt` (RC20: ``max{dist to rank 1, erank - 1}``), and :func:`erank_of_singular_values`, the same
effective rank from singular values already computed (the report's figure data uses it)."""

from __future__ import annotations

import math

import numpy as np


def svals(W) -> np.ndarray:
    """The singular values of ``W`` (float64, descending)."""
    return np.linalg.svd(np.asarray(W, dtype=float), compute_uv=False)


def sigma2(W) -> float:
    """Second singular value (for 2x2: the distance to the nearest rank-1 matrix, spectral or Frobenius)."""
    s = svals(W)
    return float(s[1]) if s.size > 1 else 0.0


def dist_rank1(W) -> float:
    """Frobenius distance to the nearest matrix of rank <= 1 (Eckart-Young): ``sqrt(sum_{i>=2} sigma_i^2)``."""
    s = svals(W)
    return float(np.sqrt(np.sum(s[1:] ** 2)))


def erank_of_singular_values(s) -> float:
    """Effective rank from singular values ``s`` (Roy & Vetterli 2007; zero values dropped; 0 when all are 0)."""
    s = np.asarray(s, dtype=float)
    s = s[s > 0]
    if s.size == 0:
        return 0.0
    p = s / np.sum(s)
    return float(np.exp(-np.sum(p * np.log(p))))


def erank(W) -> float:
    """Effective rank (Roy & Vetterli 2007): ``exp(H(p))``, ``p_i = sigma_i / sum sigma``, natural log, zero
    singular values dropped. In ``[1, rank W]`` (0 for the zero matrix)."""
    return erank_of_singular_values(svals(W))


def erank_from_ratio(rho: float) -> float:
    """Effective rank of a 2x2 matrix with ``sigma_2/sigma_1 = rho`` (in [0, 1])."""
    return 1.0 + erank_excess_from_ratio(rho)


def erank_excess_from_ratio(rho: float) -> float:
    """``erank - 1`` of a 2x2 matrix with ``sigma_2/sigma_1 = rho``, to full relative precision also for tiny rho
    (``expm1`` of the entropy ``h = -(q ln q + (1-q) ln(1-q))``, ``q = rho/(1+rho)``; ``erank - 1 ~ rho ln(e/rho)``)."""
    rho = float(rho)
    if rho <= 0:
        return 0.0
    q = rho / (1.0 + rho)
    h = -(q * math.log(q) + (1 - q) * math.log1p(-q))
    return math.expm1(h)


def rank_subopt(W, inf_erank: float = 1.0) -> float:
    """RC20's rank suboptimality ``max{dist to rank 1, erank(W) - inf_erank}`` (inf_erank = 1 on their problem)."""
    return max(dist_rank1(W), erank(W) - inf_erank)


__all__ = ["dist_rank1", "erank", "erank_excess_from_ratio", "erank_from_ratio", "erank_of_singular_values",
           "rank_subopt", "sigma2", "svals"]
