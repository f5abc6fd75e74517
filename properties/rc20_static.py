"""The static parts of RC20's Theorems 1 and 2, proven exactly (claims ``rc20.thm1.static``, ``rc20.thm2.static``).

Theorems 1 and 2 of Razin & Cohen 2020 split into a *static* implication, true for every 2x2 matrix, and a
*dynamic* part about gradient flow (the det keeps its sign; the loss goes to 0). Catalog section 7: along any path
that keeps the det sign the bounds cannot fail, so checking them along a trajectory tests algebra, not dynamics.
This module proves the static implication once, for all matrices:

- **Theorem 2 (static).** Every ``W = [[x, w12], [w21, w22]]`` with ``sign det W = sign(z z')`` and
  ``s := sqrt(2 loss(W)) < min(|z|, |z'|)``, ``loss = ((w12 - z)^2 + (w21 - z')^2 + (w22 - eps)^2)/2``, satisfies
  ``|x| (|eps| + s) > (|z| - s)(|z'| - s)`` (so ``|w11| > (|z|-s)(|z'|-s)/(|eps|+s)``) and
  ``sigma_2(W) <= |eps| + s``.
- **Theorem 1 (static)** is its specialization ``z = z' = 1, eps = 0``: ``|w11| s > (1 - s)^2`` and
  ``sigma_2 <= s`` for every W with ``det W > 0`` and ``loss < 1/2``; the proof is re-verified after substituting.
  Every norm or quasi-norm then satisfies ``||W|| >= c |w11|`` with ``c = inf{||X|| : X_11 = 1}`` (definition).
- **Effective rank.** For every 2x2 matrix with ``rho = sigma_2/sigma_1`` in (0, 1]:
  ``erank - 1 <= 0.55 * 2 rho ln(e/rho)`` (so RC20's ``erank - 1 <= 2 rho ln(e/rho)`` with room), certified in
  ball arithmetic (python-flint ``arb``) over a geometric cover of ``[2^-20, 1]`` plus an analytic bound below.

How the polynomial part is proven (:class:`Certificates`): residuals are variables ``a, b, c`` (``w12 = zeta Z +
a``, ``w21 = zeta' Z' + b``, ``w22 = eta E + c`` with ``Z = |z|, Z' = |z'|, E = |eps|`` and signs ``zeta, zeta',
eta``), ``s`` with ``s^2 = a^2 + b^2 + c^2``, and ``mu`` the sign of x (so ``|x| = mu x``). Every fact
``p >= 0`` (or ``> 0``) is established by an identity ``p = sum_i c_i prod_j f_ij + sum_k c_k q_k^2`` with
rational ``c > 0`` and facts ``f`` already established, checked by sympy as a polynomial identity modulo the
ideal ``(s^2 - a^2 - b^2 - c^2, zeta^2 - 1, ...)`` (a Groebner-basis reduction), or by the two-sided lemma "if
``p q >= 0`` and ``p + q >= 0`` then ``p, q >= 0``". The one non-polynomial step is Courant-Fischer:
``sigma_min(W) |v| <= |W v|`` for any ``v != 0``, used with ``v = (-w12, x)``, for which ``W v = (0, det W)``
(checked symbolically). A step whose identity fails makes the proof fail (an engine failure, never a verdict).
Nothing here samples: the drawn inputs only pick the part and, for ablations, a rational matrix at which the
statement is evaluated exactly (``fractions.Fraction``).
"""

from __future__ import annotations

import functools
from fractions import Fraction

from hypothesis import strategies as st

from models.errors import EngineFailure

from .api import Outcome, claim, register

SRC = "Razin & Cohen 2020 (NeurIPS), arXiv 2005.06398"

ERANK_CONSTANT = Fraction(55, 100)   # certified: (erank - 1) / (2 rho ln(e/rho)) <= 0.55 on (0, 1] (max ~0.5422)
ERANK_CUT = 2.0 ** -20               # below it (~9.5e-7) the analytic bound e^h(q)/2 is used
ERANK_GRID_RATIO = 1.01              # consecutive cover points rho_{k+1} = fl(1.01 rho_k) (floats, exact in arb)


class ProofFailure(EngineFailure):
    """A step of an exact proof did not verify (the proof is wrong or incomplete; this is not a disproof)."""


class Certificates:
    """A tiny checker of positivity certificates (see the module docstring).

    ``facts`` maps a name to ``(expression, strict, reason)``; :meth:`assume` adds a hypothesis or a definition,
    :meth:`certify` adds a fact proven by a certificate identity, :meth:`two_sided` the lemma ``pq >= 0, p + q >= 0
    => p, q >= 0``. ``subs`` specializes every expression (Theorem 1 from Theorem 2) before checking."""

    def __init__(self, relations, gens, subs=None):
        import sympy as sp

        self.sp = sp
        self.subs = dict(subs or {})
        rel = [sp.expand(r.subs(self.subs)) for r in relations]
        rel = [r for r in rel if r != 0]
        self.gens = [g for g in gens if g not in self.subs]
        self.basis = sp.groebner(rel, *self.gens, order="grevlex", domain="QQ") if rel else None
        self.facts: dict[str, tuple] = {}
        self.steps: list[str] = []

    def _poly(self, expr):
        return self.sp.expand(self.sp.sympify(expr).subs(self.subs))

    def is_zero(self, expr) -> bool:
        e = self._poly(expr)
        if e == 0:
            return True
        if self.basis is None:
            return False
        return self.basis.reduce(e)[1] == 0

    def assume(self, name, expr, strict, reason):
        self.facts[name] = (self._poly(expr), bool(strict), reason)
        self.steps.append(f"{name}: {self._poly(expr)} {'>' if strict else '>='} 0  [{reason}]")

    def certify(self, name, expr, terms, squares=()):
        """``expr = sum coef * prod(facts) + sum coef * square^2`` modulo the relations; strict when one product
        term consists of strict facts only."""
        total, strict = 0, False
        for coef, names in terms:
            coef = Fraction(coef)
            if coef <= 0:
                raise ProofFailure(f"{name}: non-positive coefficient {coef}")
            prod = self.sp.Rational(coef.numerator, coef.denominator)
            for n in names:
                if n not in self.facts:
                    raise ProofFailure(f"{name}: uses {n!r}, which is not established")
                prod = prod * self.facts[n][0]
            total += prod
            strict = strict or all(self.facts[n][1] for n in names)
        for coef, q in squares:
            coef = Fraction(coef)
            if coef <= 0:
                raise ProofFailure(f"{name}: non-positive coefficient {coef}")
            total += self.sp.Rational(coef.numerator, coef.denominator) * self._poly(q) ** 2
        if not self.is_zero(self.sp.sympify(expr) - total):
            raise ProofFailure(f"{name}: the certificate identity does not hold")
        self.facts[name] = (self._poly(expr), strict, "certificate")
        used = " + ".join(f"{Fraction(c)}*{'*'.join(ns) or '1'}" for c, ns in terms)
        sq = "".join(f" + {Fraction(c)}*({q})^2" for c, q in squares)
        self.steps.append(f"{name}: {self._poly(expr)} {'>' if strict else '>='} 0  [= {used}{sq}]")

    def two_sided(self, name_p, p, name_q, q, prod_squares, sum_terms):
        """``p, q >= 0`` from ``p q = sum of squares`` and ``p + q = sum of products of facts``."""
        self.certify(f"{name_p}*{name_q}", self.sp.sympify(p) * q, [], prod_squares)
        self.certify(f"{name_p}+{name_q}", self.sp.sympify(p) + q, sum_terms)
        for name, e in ((name_p, p), (name_q, q)):
            self.facts[name] = (self._poly(e), False, "two-sided lemma")
            self.steps.append(f"{name}: {self._poly(e)} >= 0  [pq >= 0 and p + q >= 0]")

    def holds(self, name, expr) -> bool:
        """Whether ``name`` is established and is exactly ``expr`` (after the specialization)."""
        return name in self.facts and self.is_zero(self.facts[name][0] - self._poly(expr))


@functools.lru_cache(maxsize=None)
def prove_static(theorem: str, det_hypothesis: bool = True, factor: int = 1) -> dict:
    """Prove the static implication of ``theorem`` ("thm1" or "thm2"); returns the proof record
    ``{"statements": [...], "steps": [...]}``. Raises :class:`ProofFailure` when a step does not verify (also
    when ``det_hypothesis`` is False: the det fact is then missing and the certificates cannot be built, and when
    ``factor`` != 1 asks for the wrong statement ``|w11| (|eps| + s) > factor (|z| - s)(|z'| - s)``)."""
    import sympy as sp

    x, a, b, c, s, Z, Zp, E = sp.symbols("x a b c s Z Zp E", real=True)
    zeta, zetap, eta, mu = sp.symbols("zeta zetap eta mu", real=True)
    relations = [s ** 2 - a ** 2 - b ** 2 - c ** 2, zeta ** 2 - 1, zetap ** 2 - 1, eta ** 2 - 1, mu ** 2 - 1]
    gens = [s, a, b, c, x, Z, Zp, E, zeta, zetap, eta, mu]
    subs = {Z: 1, Zp: 1, E: 0, zeta: 1, zetap: 1, eta: 1} if theorem == "thm1" else {}
    P = Certificates(relations, gens, subs)
    w12, w21, w22 = zeta * Z + a, zetap * Zp + b, eta * E + c
    det = x * w22 - w12 * w21
    tau = zeta * zetap                                         # sign(z z')
    # hypotheses and definitions
    P.assume("s", s, False, "s = sqrt(2 loss) >= 0; s^2 = a^2 + b^2 + c^2 is the loss")
    P.assume("Z-s", Z - s, True, "s < min(|z|, |z'|)" if theorem == "thm2" else "loss < 1/2, i.e. s < 1")
    P.assume("Zp-s", Zp - s, True, "s < min(|z|, |z'|)" if theorem == "thm2" else "loss < 1/2, i.e. s < 1")
    P.assume("E", E, False, "E = |eps| >= 0")
    P.assume("|x|", mu * x, False, "mu = sign(x), so mu x = |x|")
    if det_hypothesis:
        P.assume("tau*det", tau * det, True, "sign det W = sign(z z')" if theorem == "thm2" else "det W > 0")
    # |a|, |b| <= s (for either sign k, s - k a >= 0), and s - k c >= 0 for the sign k = tau mu used below
    P.two_sided("s+zeta*a", s + zeta * a, "s-zeta*a", s - zeta * a, [(1, b), (1, c)], [(2, ["s"])])
    P.two_sided("s+zetap*b", s + zetap * b, "s-zetap*b", s - zetap * b, [(1, a), (1, c)], [(2, ["s"])])
    k = tau * mu
    P.two_sided("s-k*c", s - k * c, "s+k*c", s + k * c, [(1, a), (1, b)], [(2, ["s"])])
    # zeta w12 >= |z| - s > 0 and zeta' w21 >= |z'| - s > 0
    P.certify("zeta*w12", zeta * w12, [(1, ["Z-s"]), (1, ["s+zeta*a"])])
    P.certify("zetap*w21", zetap * w21, [(1, ["Zp-s"]), (1, ["s+zetap*b"])])
    # T := tau w12 w21 - (|z| - s)(|z'| - s) >= 0
    T = tau * w12 * w21 - (Z - s) * (Zp - s)
    P.certify("T", T, [(1, ["s+zeta*a", "zetap*w21"]), (1, ["Z-s", "s+zetap*b"])])
    # E + s - k w22 >= 0 (|w22| <= |eps| + s), with 1 - k eta = (1 - k eta)^2 / 2 a square
    P.certify("1-k*eta", 1 - k * eta, [], [(Fraction(1, 2), 1 - k * eta)])
    P.certify("E+s-k*w22", E + s - k * w22, [(1, ["E", "1-k*eta"]), (1, ["s-k*c"])])
    if not det_hypothesis:
        raise ProofFailure("without the det hypothesis there is no fact tau*det > 0 to build the bound from")
    # (1) |x| (E + s) - (|z| - s)(|z'| - s) > 0
    bound1 = mu * x * (E + s) - (Z - s) * (Zp - s)
    P.certify("unobserved", bound1, [(1, ["|x|", "E+s-k*w22"]), (1, ["tau*det"]), (1, ["T"])])
    # (2) sigma_2 <= E + s: with v = (-w12, x), W v = (0, det) and |v|^2 = x^2 + w12^2 > 0; Courant-Fischer gives
    # sigma_2^2 |v|^2 <= det^2, and (E + s)^2 |v|^2 - det^2 >= 0 by the certificate below
    Wm = sp.Matrix([[x, w12], [w21, w22]])
    Wv = Wm * sp.Matrix([-w12, x])
    if not (P.is_zero(Wv[0]) and P.is_zero(Wv[1] - det)):
        raise ProofFailure("W v != (0, det W)")
    P.certify("tau*w12*w21", tau * w12 * w21, [(1, ["T"]), (1, ["Z-s", "Zp-s"])])
    P.certify("lhs-", mu * x * (E + s) - tau * det, [(1, ["|x|", "E+s-k*w22"]), (1, ["tau*w12*w21"])])
    P.certify("lhs+", mu * x * (E + s) + tau * det, [(1, ["|x|", "E"]), (1, ["|x|", "s"]), (1, ["tau*det"])])
    P.certify("sigma2", (E + s) ** 2 * (x ** 2 + w12 ** 2) - det ** 2, [(1, ["lhs-", "lhs+"])],
              [(1, (E + s) * w12)])
    if theorem == "thm1":
        statements = ["|w11| s > (1 - s)^2 for every 2x2 W with det W > 0 and s = sqrt(2 loss) < 1",
                      "sigma_2(W) <= s for the same W (via s^2 (w11^2 + w12^2) >= det^2 and Courant-Fischer)"]
        want1 = mu * x * s - factor * (1 - s) ** 2
    else:
        statements = ["|w11| (|eps| + s) > (|z| - s)(|z'| - s) for every 2x2 W with sign det W = sign(z z') and "
                      "s = sqrt(2 loss) < min(|z|, |z'|)",
                      "sigma_2(W) <= |eps| + s for the same W"]
        want1 = mu * x * (E + s) - factor * (Z - s) * (Zp - s)
    if not (P.holds("unobserved", want1) and P.facts["unobserved"][1]):
        raise ProofFailure("the proven fact is not the statement")
    return {"statements": statements, "steps": list(P.steps), "facts_checked": len(P.facts)}


@functools.lru_cache(maxsize=None)
def certify_erank(constant: Fraction = ERANK_CONSTANT) -> dict:
    """Certify ``(erank - 1) / (2 rho ln(e/rho)) <= constant`` for every rho in (0, 1] (2x2 matrices).

    With ``q = rho/(1+rho)``, ``h(q) = -q ln q - (1-q) ln(1-q)`` and ``erank - 1 = e^h - 1``: the numerator
    ``N(rho) = e^h - 1`` increases with rho (h increases on [0, 1/2]) and ``D(rho) = 2 rho (1 - ln rho)``
    increases on (0, 1] (``D' = -2 ln rho >= 0``), so on ``[lo, hi]`` the ratio is at most ``N(hi)/D(lo)``,
    evaluated in arb (rigorous balls). Below ``ERANK_CUT``: ``e^h - 1 <= h e^h``, ``h(q) <= q(1 + ln(1/q))``
    (as ``-(1-q) ln(1-q) <= q``), ``q <= rho`` and ``q (1 + ln(1/q))`` increasing, so the ratio is at most
    ``e^{h(q)}/2 <= e^{h(q(ERANK_CUT))}/2``. The cover points are floats, exactly representable in arb."""
    import flint

    def N(r):
        q = r / (1 + r)
        return (-(q * q.log()) - (1 - q) * (1 - q).log()).exp() - 1

    def D(r):
        return 2 * r * (1 - r.log())

    C = flint.arb(constant.numerator) / constant.denominator
    cut = flint.arb(ERANK_CUT)
    qc = cut / (1 + cut)
    tail = (-(qc * qc.log()) - (1 - qc) * (1 - qc).log()).exp() / 2
    if not tail < C:
        raise ProofFailure(f"erank tail bound {tail} is not below {constant}")
    worst = tail
    lo, cells = ERANK_CUT, 0
    while lo < 1.0:
        hi = min(lo * ERANK_GRID_RATIO, 1.0)   # the next cell starts exactly here: the cover has no gap
        r = N(flint.arb(hi)) / D(flint.arb(lo))
        if not r < C:
            raise ProofFailure(f"erank ratio bound {r} on [{lo:.6g}, {hi:.6g}] is not below {constant}")
        if r.upper() > worst.upper():
            worst = r
        lo, cells = hi, cells + 1
    return {"statement": f"(erank - 1) <= {constant} * 2 rho ln(e/rho) for every rho = sigma_2/sigma_1 in (0, 1]",
            "cells": cells, "largest_upper_bound": float(worst.upper()), "tail_bound_below_cut": float(tail.upper()),
            "cut": ERANK_CUT}


# ----------------------------------------------------------------------------------------------------------------
# The claims
# ----------------------------------------------------------------------------------------------------------------
def _rationals(lo: int, hi: int):
    return st.tuples(st.integers(lo, hi), st.integers(1, 20)).map(lambda t: [t[0], t[1]])


def _static_strategy(theorem: str):
    def strategy(dropped):
        parts = ["unobserved_entry", "sigma_2"] + (["erank"] if theorem == "thm1" else [])
        d = {"part": st.sampled_from(parts),
             # a rational matrix (residuals a = b = 0, so s = |c| is rational) at which the statement is also
             # evaluated exactly; with the det hypothesis dropped its det may have either sign
             "x": _rationals(-40, 40), "c": _rationals(-19, 19)}
        if theorem == "thm2":
            d.update(z=_rationals(-40, 40).filter(lambda r: r[0] != 0), z_prime=_rationals(-40, 40).filter(
                lambda r: r[0] != 0), eps=_rationals(-10, 10))
        return st.fixed_dictionaries(d)

    return strategy


def _exact_point(inputs: dict, require_det: bool):
    """The statement at ``W = [[x, z], [z', eps + c]]`` (residuals ``a = b = 0``, so ``s = |c|``), exactly:
    ``None`` when W is outside the hypotheses, else two Fractions whose signs are those of
    ``|x| (|eps| + s) - (|z| - s)(|z'| - s)`` and of ``|eps| + s - sigma_2(W)``."""
    x, c = Fraction(*inputs["x"]), Fraction(*inputs["c"])
    z, zp, e = (Fraction(*inputs[k]) if k in inputs else Fraction(d) for k, d in (("z", 1), ("z_prime", 1),
                                                                                   ("eps", 0)))
    s = abs(c)
    if not s < min(abs(z), abs(zp)):
        return None
    det = x * (e + c) - z * zp
    sign = 1 if z * zp > 0 else -1
    if require_det and not det * sign > 0:
        return None
    m1 = abs(x) * (abs(e) + s) - (abs(z) - s) * (abs(zp) - s)
    # sigma_2^2 <= t^2 (t = |eps| + s) iff F <= 2 t^2 or t^4 - F t^2 + det^2 <= 0 (F = ||W||_F^2; sigma_1^2 and
    # sigma_2^2 are the roots of l^2 - F l + det^2): a margin with the exact sign of t - sigma_2
    t2 = (abs(e) + s) ** 2
    F = x * x + z * z + zp * zp + (e + c) ** 2
    m2 = 2 * t2 - F if F <= 2 * t2 else -(t2 * t2 - F * t2 + det * det)
    return m1, m2


def _static_check(theorem: str):
    def check(inputs, dropped):
        with_det = "det_positive" not in dropped and "det_matches" not in dropped
        detail = {"part": inputs["part"]}
        point = _exact_point(inputs, with_det) if inputs["part"] != "erank" else None
        margin = None
        if point is not None:
            m = point[0] if inputs["part"] == "unobserved_entry" else point[1]
            detail["exact_point"] = {k: inputs[k] for k in ("x", "c", "z", "z_prime", "eps") if k in inputs}
            detail["exact_point"]["margin"] = str(m)
            margin = float(m)
            if m < 0:   # cannot happen under the hypotheses (proven below); reported as the violation it is
                return Outcome(min(margin, -1e-300), 0.0, detail, "exact rationals", 1.0)
        if inputs["part"] == "erank":   # true of every 2x2 matrix: no hypothesis involved
            rec = certify_erank()
            detail["certificate"] = rec
            return Outcome(1.0 - rec["largest_upper_bound"], 0.0, detail, "python-flint arb", 1.0)
        if with_det:
            rec = prove_static(theorem)
            detail["proof"] = rec
            return Outcome(1.0, 0.0, detail, "sympy certificates", 1.0)
        # a hypothesis dropped: no proof exists; only the exact evaluation at the drawn rational matrix decides
        if margin is None:
            return Outcome(1.0, 0.0, {**detail, "note": "outside the remaining hypotheses (s >= min(|z|, |z'|))"},
                           "exact rationals", 1.0)
        return Outcome(margin if margin != 0 else 1e-300, 0.0, detail, "exact rationals", 1.0)

    return check


_HOW = ("Exact, no sampling: a chain of positivity certificates (each fact an identity 'expression = sum of "
        "positive multiples of products of established facts + squares', checked by sympy modulo s^2 = a^2 + b^2 "
        "+ c^2 and sign^2 = 1) and Courant-Fischer with v = (-w12, w11); the erank part by python-flint arb over a "
        "geometric cover of (0, 1]. The drawn rational matrix is also evaluated exactly (Fractions); with the det "
        "hypothesis dropped only that evaluation remains (a negative control then finds an exact counterexample).")


_THM1_STMT = ("every 2x2 W with det W > 0 and loss(W) = ((w12-1)^2 + (w21-1)^2 + w22^2)/2 < 1/2, s = sqrt(2 loss): "
              "|w11| s > (1-s)^2 (so |w11| > (1-s)^2/s and every norm ||W|| >= c (1-s)^2/s), sigma_2(W) <= s, "
              "and erank(W) - 1 <= 0.55 * 2 rho ln(e/rho) with rho = sigma_2/sigma_1")
_THM2_STMT = ("every 2x2 W with sign det W = sign(z z') and s = sqrt(2 loss(W)) < min(|z|, |z'|) (loss of the "
              "observations [[*, z], [z', eps]]): |w11| (|eps| + s) > (|z| - s)(|z'| - s) and sigma_2(W) <= |eps| + s")

thm1_static = claim(
    "rc20.thm1.static",
    title="Theorem 1's static part: det > 0 and loss < 1/2 imply the bounds, for every 2x2 matrix (proven)",
    source=SRC + ", Theorem 1; catalog section 7 (what each RC20 bound rests on) and RC20-Thm1",
    statement=_THM1_STMT, kind="exact", strategy=_static_strategy("thm1"),
    hypotheses=[("det_positive", "det W > 0")], how=_HOW, cost=0.05)(_static_check("thm1"))

thm2_static = claim(
    "rc20.thm2.static",
    title="Theorem 2's static part: sign det = sign(z z') and s < min(|z|,|z'|) imply the bounds (proven)",
    source=SRC + ", Theorem 2; catalog section 7 and RC20-Thm-Perturbed",
    statement=_THM2_STMT, kind="exact", strategy=_static_strategy("thm2"),
    hypotheses=[("det_matches", "sign det W = sign(z z')")], how=_HOW, cost=0.05)(_static_check("thm2"))

__all__ = ["Certificates", "ProofFailure", "certify_erank", "prove_static"]

# Negative controls: without the det hypothesis no proof exists, and an exact rational counterexample is found.
register(thm1_static.drop("det_positive", id="rc20.neg.static_det_any",
                          title="Negative control: rc20.thm1.static without det W > 0 (exact counterexample)"))
register(thm2_static.drop("det_matches", id="rc20.neg.static2_det_any",
                          title="Negative control: rc20.thm2.static without sign det W = sign(z z')"))
