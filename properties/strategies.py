"""Hypothesis strategies of *settings* (plain JSON-ready values), never of trajectories.

Rules (style notes 1.8-1.11): scales, step sizes and perturbations are drawn as exponents and mapped
(``10 ** e``), so the search covers decades and shrinks toward round values; seeds are drawn explicitly for the
randomness Hypothesis does not control (``np.random.default_rng(seed)``), next to the meaningful knobs so that
shrinking still simplifies something; constrained settings (det sign, balancedness) are built by construction in
the check, never filtered. Nothing here integrates, allocates large arrays or calls an engine.
"""

from __future__ import annotations

from hypothesis import strategies as st

from models.errors import require

SEED_MAX = 2**31 - 1


def exponent(lo: float, hi: float):
    """A base-10 exponent in ``[lo, hi]`` (finite floats, shrinking toward the end nearest 0)."""
    require(lo <= hi, f"exponent range must have lo <= hi, got {lo!r}, {hi!r}")
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False, allow_subnormal=False)


def log_scale(lo_exp: float, hi_exp: float):
    """A positive number ``10 ** e`` with ``e`` in ``[lo_exp, hi_exp]``."""
    return exponent(lo_exp, hi_exp).map(lambda e: float(10.0 ** e))


def signed_log(lo_exp: float, hi_exp: float):
    """A nonzero number ``+-10 ** e``."""
    return st.tuples(st.sampled_from([1.0, -1.0]), exponent(lo_exp, hi_exp)).map(lambda se: se[0] * 10.0 ** se[1])


def seeds():
    return st.integers(0, SEED_MAX)


def depths(lo: int = 2, hi: int = 8):
    require(1 <= lo <= hi, f"depth range must satisfy 1 <= lo <= hi, got {lo!r}, {hi!r}")
    return st.integers(lo, hi)


def det_signs(positive_only: bool = True):
    """``"positive"``, or (when the hypothesis is dropped) either sign, negative first (it shrinks there)."""
    return st.just("positive") if positive_only else st.sampled_from(["negative", "positive"])


# ---------------------------------------------------------------------------------------------------------------
# Norms and quasi-norms as measure specs (rebuilt with properties.measures.from_spec)
# ---------------------------------------------------------------------------------------------------------------
def _p_values(quasi: bool):
    lo = -3.0 if quasi else 0.0
    finite = exponent(lo, 4.0).map(lambda e: float(2.0 ** e))
    return st.one_of(st.sampled_from([1.0, 2.0, "inf"]), finite)


def _induced_p():
    return st.one_of(st.sampled_from([1.0, 2.0, "inf"]), exponent(0.0, 4.0).map(lambda e: float(2.0 ** e)))


def base_measures(quasi: bool = True):
    """Schatten-p, entrywise l_p (p in (0, inf] when ``quasi``), induced p->q, random invertible map then l_2."""
    return st.one_of(
        _p_values(quasi).map(lambda p: {"kind": "schatten", "p": p}),
        _p_values(quasi).map(lambda p: {"kind": "entrywise", "p": p}),
        st.tuples(_induced_p(), _induced_p()).map(lambda pq: {"kind": "induced", "p": pq[0], "q": pq[1]}),
        seeds().map(lambda s: {"kind": "linear_l2", "seed": s}),
    )


def measures(quasi: bool = True, non_norms: bool = False):
    """Norm and quasi-norm specs: the base families and positive weighted sums of two of them.

    With ``non_norms`` the draw also includes rank surrogates that are not norms (for claims whose hypothesis
    "the measure is a norm or quasi-norm" is dropped); they come first so that shrinking lands on them.
    """
    base = base_measures(quasi)
    weighted = st.tuples(base, base, log_scale(-1, 1), log_scale(-1, 1)).map(
        lambda t: {"kind": "weighted", "terms": [t[0], t[1]], "weights": [t[2], t[3]]})
    norms = st.one_of(base, weighted)
    if not non_norms:
        return norms
    surrogates = st.one_of(st.just({"kind": "erank"}),
                           log_scale(-2, 0).map(lambda d: {"kind": "smooth_rank", "delta": d}))
    return st.one_of(surrogates, norms)


# ---------------------------------------------------------------------------------------------------------------
# Composite settings
# ---------------------------------------------------------------------------------------------------------------
def fixed_dicts(**fields):
    """``st.fixed_dictionaries`` with keys in the given order (values: strategies or plain constants)."""
    return st.fixed_dictionaries({k: v if isinstance(v, st.SearchStrategy) else st.just(v) for k, v in fields.items()})


def tensor_dims(orders=(3, 4), lo: int = 2, hi: int = 4):
    """Tensor shapes: an order from ``orders`` and each dimension in ``[lo, hi]``."""
    return st.sampled_from(list(orders)).flatmap(lambda n: st.lists(st.integers(lo, hi), min_size=n, max_size=n))


__all__ = ["SEED_MAX", "base_measures", "depths", "det_signs", "exponent", "fixed_dicts", "log_scale", "measures",
           "seeds", "signed_log", "tensor_dims"]
