"""Evidence that a trajectory is gradient flow: the engine's tangent against the gradient-flow vector field.

A trajectory claim about gradient flow is evidence only if the engine integrated gradient flow. Every point a
gradient-flow engine records carries ``Point.tangent``, the engine's own ``dW/dt`` there (the right-hand side it
integrates, mapped to the end-to-end matrix). This module recomputes the vector field at the recorded state with
code that shares no formula with the engine (no chart, no ``factor_grads``, no ``problem.grad``), in mpmath:

- the loss gradient ``G = c * sum_i r_i A_i`` from the problem's raw data (``operator``, ``targets``,
  ``reduction``), ``r_i = <A_i, W> - y_i``;
- the factors: the recorded ones when the engine integrated the raw factors (gf-mp: ``hp["factors_work"]`` at
  its working precision where recorded; else ``Point.factors``), else the balanced factors rebuilt from ``W = U
  diag(sigma) V^T``: ``W_1 = diag(sigma)^(1/L) V^T``, ``W_j = diag(sigma)^(1/L)``, ``W_L = U diag(sigma)^(1/L)``
  (any balanced factorization of W gives the same end-to-end velocity, ACH18);
- each factor's gradient ``g_j = S_j^T G P_j^T`` (``S_j = W_L..W_{j+1}``, ``P_j = W_{j-1}..W_1``) and the
  end-to-end velocity ``F = -sum_j S_j g_j P_j``.

At each point the defect ``max|T - F| / max|F|`` is compared with ``FLOW_TOL`` (1e-2: far above rounding, and far
below what a wrong coefficient does: a chart whose log singular values move at half speed, or a gradient scaled by
2, gives defects of order 0.1-1). The defect's numerical error is the sensitivity of ``F`` to the rounding of the
recorded W (``F`` re-evaluated with each entry moved by its relative rounding, float64 or the engine's decimal
digits, summed, times 10), plus the rounding of the tangent; for gf-mp's raw path the field is formed from its
factors at the working precision (``hp["factors_work"]``, decimal strings; the float64 ``Point.factors`` where
those are not recorded) and each factor entry is moved by its rounding instead. The working precision matters
late in the flow: the residual ``r_i`` is ~``sqrt(loss)`` while the float64 rounding of the factors moves the
product by ~1e-16 ``||W||`` ~ 1e-16 / ``sqrt(loss)``, so from float64 factors the check is unresolved below loss
~1e-9 (measured, depth 4: its error 1.7 at loss 1e-10) and every run to loss 1e-30 would end inconclusive. The
claims and the other consumers read ``Point.factors``, ``product_work`` and ``factor_dets``, not
``factors_work``, so the check first asks that ``factors_work`` is the state those record (float64 rounding,
product and factor dets each within its rounding bound, :func:`_working_factors`), and that the loss and the float64
tangent the claims read are those of that state (:func:`record_ties`: ``Point.loss`` and ``hp["loss"]`` against the
loss recomputed from ``product_work`` and the raw data, :func:`state_loss`, within its rounding bound whatever
``loss_err`` says; ``Point.tangent`` the float64 rounding of ``hp["tangent"]``; ``Point.product`` and
``hp["product"]`` roundings of ``product_work``); a point where one is not raises
:class:`InconsistentRecord` (decisive: the field would be checked at a state the claims do not read, or the claims
would read a loss the checked state does not have, e.g. "reach" a loss never reached). A float64 engine's
``Point.loss`` is tied the same way to ``Point.product`` (gf forms it in float64 from that very product; the bound,
``(n_i + 1) EPS`` per residual, is twice the textbook one). A point whose defect clears ``FLOW_TOL`` beyond its
error shows the path is not gradient flow: :func:`validated` then raises :class:`NotGradientFlow` (the claim ends in
``error``, never ``holds``); a point without a tangent cannot be validated (also an error). The check is local
(the tangent at every recorded point, not the accumulated path error, which is the engine's own error estimate,
``product_err``).
"""

from __future__ import annotations

import math

import mpmath
import numpy as np

from models.errors import EngineFailure

from ._common import combine, point_outcome
from .api import Outcome

FLOW_TOL = 1e-2
SAFETY = 10.0
EPS = float(np.finfo(float).eps)
TINY = 2.0 ** -1074              # float64's rounding below its normal range is absolute, at most half of this


class NotGradientFlow(EngineFailure):
    """The recorded path's tangent is not the gradient-flow vector field (the engine is wrong)."""

    decisive = True


class InconsistentRecord(EngineFailure):
    """A point's values are not all of one state: its working-precision factors (``hp["factors_work"]``) are not the
    state the rest of the point records (``Point.factors``, ``product_work``, ``factor_dets``), or its loss
    (``Point.loss``, ``hp["loss"]``) is not the loss of ``product_work``, or ``Point.tangent`` is not the float64
    rounding of ``hp["tangent"]``: the field would be checked at a state the claims do not read (or the claims read
    values of another state), so the engine is wrong, not imprecise."""

    decisive = True


def _mat(rows, cols, vals):
    return mpmath.matrix([[vals[i * cols + j] for j in range(cols)] for i in range(rows)])


def _residuals(problem, W, scales=False):
    """``[(r_i, a_i, s_i)]``: each measurement's residual ``r_i = <A_i, W> - y_i`` from the problem's raw data, in
    mpmath (``W`` an mpmath matrix), with ``a_i`` the pairs ``(k, A_ik)`` of its nonzero weights (flat index ``k``)
    and ``s_i = |y_i| + sum_k |A_ik W_k|`` (the scale of the sum that forms ``r_i``; None unless ``scales``)."""
    d, dp = problem.shape
    flat = [W[i, j] for i in range(d) for j in range(dp)]
    out = []
    for row, y in zip(np.asarray(problem.operator), np.asarray(problem.targets)):
        a = [(int(k), mpmath.mpf(float(row[k]))) for k in np.flatnonzero(row)]
        y = mpmath.mpf(float(y))
        r = mpmath.fsum(c * flat[k] for k, c in a) - y
        out.append((r, a, abs(y) + mpmath.fsum(abs(c * flat[k]) for k, c in a) if scales else None))
    return out


def loss_gradient(problem, W):
    """``grad l(W)`` from the problem's raw data, in mpmath (``W`` an mpmath matrix)."""
    d, dp = problem.shape
    c = mpmath.mpf(1) if problem.reduction == "half_sum" else mpmath.mpf(2) / problem.m
    g = [mpmath.mpf(0)] * (d * dp)
    for r, a, _ in _residuals(problem, W):
        for k, w in a:
            g[k] += c * r * w
    return _mat(d, dp, g)


def state_loss(problem, W, u):
    """``(l(W), bound)``: the loss ``c sum_i r_i^2`` (``c`` = 1/2 for "half_sum", ``1/m`` for "mean", the
    problem's ``loss_scale``) from the raw data at ``W`` (mpmath), and a bound on how far an engine's loss of the
    state that ``W`` records (each entry to relative ``u``) can be from it when formed at that precision: each
    residual moves by at most ``rho_i = u (n_i + 1) s_i`` (``n_i`` nonzero weights; the entries' rounding and the
    sum's own), so the loss by ``c sum_i (2 |r_i| rho_i + rho_i^2)``, plus the rounding of the squares' sum,
    ``2 (m + 2) u l``."""
    c = mpmath.mpf(1) / 2 if problem.reduction == "half_sum" else mpmath.mpf(1) / problem.m
    res = _residuals(problem, W, scales=True)
    loss = c * mpmath.fsum(r * r for r, _, _ in res)
    rho = [u * (len(a) + 1) * s for _, a, s in res]
    bound = c * mpmath.fsum(2 * abs(r) * q + q * q for (r, _, _), q in zip(res, rho)) + 2 * (len(res) + 2) * u * loss
    return loss, bound


def balanced_factors(W, depth: int):
    """A balanced factorization of ``W`` (mpmath, d x d'), rebuilt from its thin SVD: widths min(d, d')."""
    U, S, V = mpmath.svd_r(W)         # W = U diag(S) V (V is already transposed; k = min(d, d') columns/rows)
    n = len(S)
    root = mpmath.diag([S[i] ** (mpmath.mpf(1) / depth) for i in range(n)])
    if depth == 1:
        return [W]
    return [root * V] + [root.copy() for _ in range(depth - 2)] + [U * root]


def field(problem, W, factors):
    """``dW/dt`` of gradient flow on ``factors`` (first layer first, mpmath matrices) whose product is ``W``."""
    G = loss_gradient(problem, W)
    L = len(factors)
    n_out = factors[-1].rows
    F = mpmath.zeros(W.rows, W.cols)
    for j in range(L):
        S = mpmath.eye(n_out)
        for k in range(L - 1, j, -1):
            S = S * factors[k]
        P = mpmath.eye(factors[0].cols)
        for k in range(j):
            P = factors[k] * P
        g = S.T * G * P.T                 # d phi / d W_j
        F -= S * g * P
    return F


def _decimal_matrix(rows):
    """An mpmath matrix from rows of decimal strings (gf-mp's ``hp``), parsed at the current precision."""
    return mpmath.matrix([[mpmath.mpf(v) for v in row] for row in rows])


def _product(fs):
    """``W_L .. W_1`` of mpmath factors, first layer first."""
    W = fs[0]
    for f in fs[1:]:
        W = f * W
    return W


def _point_matrix(p, key, fallback):
    hp = getattr(p, "hp", None)
    if hp and key in hp:
        return _decimal_matrix(hp[key]), int(hp["digits"])
    if fallback is None:
        return None, None
    return mpmath.matrix(np.asarray(fallback, dtype=float).tolist()), None


def _max(M):
    return max(abs(M[i, j]) for i in range(M.rows) for j in range(M.cols))


def _rounding_ratio(fine, coarse, rel):
    """``(ratio, (i, j))``: the largest ``|coarse - fine| / (rel |fine| + 2^-1074)`` over the entries and where;
    ``coarse`` (floats, or an mpmath matrix of parsed decimal strings) is a rounding of ``fine`` (mpmath) to
    relative ``rel`` where the ratio is at most 1 (the absolute ``2^-1074`` is float64's rounding below its normal
    range, at most half of it)."""
    if isinstance(coarse, mpmath.matrix):
        def entry(i, j):
            return coarse[i, j]
    else:
        arr = np.asarray(coarse, dtype=float)

        def entry(i, j):
            return mpmath.mpf(float(arr[i, j]))
    worst, at = mpmath.mpf(0), (0, 0)
    for i in range(fine.rows):
        for j in range(fine.cols):
            gap = abs(fine[i, j] - entry(i, j))
            ratio = gap / (rel * abs(fine[i, j]) + TINY) if mpmath.isfinite(gap) else mpmath.inf
            if ratio > worst or not ratio <= worst:
                worst, at = ratio, (i, j)
    return worst, at


def _rounding_link(where, fine, fine_name, coarse, name, rel) -> float:
    """:func:`_rounding_ratio` of ``coarse`` (named ``name``: floats, or parsed decimal strings) against ``fine``
    (``fine_name``), with their shapes checked; above 1 (not a rounding of ``fine``) raises
    :class:`InconsistentRecord`."""
    shape = (coarse.rows, coarse.cols) if isinstance(coarse, mpmath.matrix) else np.shape(coarse)
    if shape != (fine.rows, fine.cols):
        raise InconsistentRecord(f"{where}: {name} has shape {shape}, {fine_name} {fine.rows}x{fine.cols}")
    ratio, at = _rounding_ratio(fine, coarse, rel)
    if not ratio <= 1:
        c = (mpmath.nstr(coarse[at], 20) if isinstance(coarse, mpmath.matrix)
             else repr(float(np.asarray(coarse)[at])))
        raise InconsistentRecord(f"{where}: {name} entry {at} is not a rounding of {fine_name}: "
                                 f"{mpmath.nstr(fine[at], 20)} there, {c} in {name}")
    return float(ratio)


def record_ties(p, problem, W, u, digits: int | None = None, tangent=None) -> dict:
    """The links from a point's recorded state ``W`` (mpmath: gf-mp's ``product_work``, parsed, each entry to
    relative ``u = 10^(1 - work_digits)``; a float64 engine's ``Point.product``, ``u = EPS``) to the values the claims
    read besides the factors, as ratios of each discrepancy to its bound (at most 1 on a consistent record); a ratio
    above 1 raises :class:`InconsistentRecord`. Both engines that record tangents form their loss from the very
    entries they record (gf-mp's ``observe``, gf's ``_state``), so:

    - ``loss``: ``Point.loss`` against the loss recomputed from ``W`` and the problem's raw data
      (:func:`state_loss`: ``u`` covers the decimal rounding of each entry, ``5 10^-work``, and the engine's sums at
      ``10^-work``; for float64, ``(n_i + 1) EPS`` is twice the textbook bound on a sum of ``n_i + 1`` terms):
      ``|Point.loss - l(W)| <= SAFETY bound + EPS |Point.loss| + 2^-1074`` (float64's rounding of the loss, with a
      factor 2 to spare). The bound is ~``u s_i |r_i|``, ``s_i`` the size of the entries measurement ``i`` reads:
      for completion the observed entries (~``|y_i|``), so for float64 about 7e-14 of the loss all along RC20's
      flow (measured: gf, depth 3, to loss 1e-12; the recorded losses are within 2e-16 relative); a measurement
      that reads the entries growing late in the flow loosens it (honest, only loose);
    - ``hp_loss`` (with ``digits``): ``hp["loss"]`` (``digits`` decimal digits, read by the claims that work in
      decimal strings) against the same: ``<= SAFETY bound + 10^(1 - digits) |hp["loss"]|``;
    - ``tangent`` (with ``digits``): ``Point.tangent`` is the float64 rounding of ``hp["tangent"]`` (the check uses
      the decimal strings, other readers the floats), entry by entry within ``(EPS + 10^(1 - digits)) |hp| +
      2^-1074``;
    - ``product``, ``hp_product`` (gf-mp: ``product_work`` recorded): ``Point.product`` (float64) and ``hp["product"]``
      (``digits`` decimal digits), which the claims read for the end-to-end matrix, are roundings of
      ``product_work``, entry by entry within ``(EPS + u) |W| + 2^-1074`` and ``(10^(1 - digits) + u) |W| +
      2^-1074``.

    The loss is tied whatever ``loss_err`` says: ``loss_err`` bounds the distance of the recorded loss from the
    exact flow's, not from the recorded state's, which the engine computes to rounding. ``tangent``: ``hp["tangent"]``
    already parsed (the caller's), else it is parsed here."""
    hp = p.hp or {}
    where = f"the point at t = {p.t}"
    out = {}
    loss, b = state_loss(problem, W, mpmath.mpf(u))
    pairs = [("loss", mpmath.mpf(float(p.loss)), EPS * abs(mpmath.mpf(float(p.loss))) + TINY, "Point.loss")]
    if digits is not None and "loss" in hp:
        hl = mpmath.mpf(hp["loss"])
        pairs.append(("hp_loss", hl, mpmath.mpf(10) ** (1 - digits) * abs(hl), 'hp["loss"]'))
    for key, v, rnd, name in pairs:
        bound = SAFETY * b + rnd
        if mpmath.isfinite(loss):
            gap = abs(v - loss) if mpmath.isfinite(v) else mpmath.inf
        else:                # a state with an infinite entry: its loss is infinite, and so must be the record's
            gap = mpmath.mpf(0) if v == loss else mpmath.inf
        out[key] = float(gap / bound) if bound > 0 else (0.0 if gap == 0 else math.inf)
        if not out[key] <= 1:
            raise InconsistentRecord(f"{where}: {name} is {mpmath.nstr(v, 20)} but the loss of the recorded state "
                                     f"is {mpmath.nstr(loss, 20)}: they differ by "
                                     f"{mpmath.nstr(gap, 3)}, beyond the rounding bound {mpmath.nstr(bound, 3)}")
    # (key, the finer value, its name, the rounding of it the claims read, its name, relative rounding bound)
    links = []
    if "product_work" in hp and p.product is not None:
        # the product the claims read (Point.product, float64; hp["product"], `digits` decimal digits) is a
        # rounding of the state product_work records (itself within 5 10^-work of it, u = 10^(1 - work))
        links.append(("product", W, "product_work", p.product, "Point.product", EPS + u))
        if digits is not None and "product" in hp:      # compared at its own decimal precision
            links.append(("hp_product", W, "product_work", _decimal_matrix(hp["product"]), 'hp["product"]',
                          mpmath.mpf(10) ** (1 - digits) + u))
    if digits is not None and "tangent" in hp and p.tangent is not None:
        # Point.tangent is the float64 rounding of hp["tangent"] (the check uses the decimal strings)
        T = tangent if tangent is not None else _decimal_matrix(hp["tangent"])
        links.append(("tangent", T, 'hp["tangent"]', p.tangent, "Point.tangent", EPS + mpmath.mpf(10) ** (1 - digits)))
    for key, fine, fine_name, coarse, name, rel in links:
        out[key] = _rounding_link(where, fine, fine_name, coarse, name, rel)
    return out


def _working_factors(p, depth: int, work: int | None, digits: int | None, Wp):
    """gf-mp raw path's factors at the working precision (``hp["factors_work"]``, mpmath matrices), checked to be
    the state the rest of the point records, else :class:`InconsistentRecord`. The check forms the field from these
    factors, while the claims read ``Point.factors``, ``product_work`` and ``factor_dets``; without this binding an
    engine recording factors_work (and a tangent) of another state would pass (measured on c4bf31a: a depth-4 run
    to loss 1e-11 whose factors_work and tangent are the next point's holds with defect 2e-30; one entry moved by
    1e-20 relative past loss 1e-8 holds with defect 2.4e-5). Three links, each within its rounding bound (``u =
    10^-work``, ``D = digits``), times ``SAFETY``:

    - ``Point.factors`` is their float64 rounding: ``|f - float64(f)| <= EPS |f| + 2^-1074`` entry by entry
      (float64 rounding is ``EPS / 2`` relative, ``2^-1075`` absolute below the normal range; the decimal strings'
      ``5 u`` is far below);
    - ``product_work`` is their product: ``max|W_L .. W_1 - product_work| <= SAFETY 5 u (2 (L - 1) k + L + 1)
      prod_j ||W_j||_F`` (``k`` the largest dimension: the engine's product ``2 (L - 1) k u prod ||W_j||``, as in
      ``RawSystem.loss_rounding``; the decimal rounding of each factor, ``L 5 u prod ||W_j||``, and of the product,
      ``5 u ||W||``);
    - ``factor_dets`` (square factors) are their dets: ``|det W_j - factor_dets_j| <= SAFETY ((4 n + 5 n^1.5) u
      prod_i ||row_i|| + 10^(1 - D) |factor_dets_j|)`` (the engine's det rounding ``4 n u prod ||row_i||``,
      ``RawSystem.factor_det_floors``; the decimal rounding of the entries, ``n^1.5 5 u prod ||row_i||`` by
      Hadamard's bound on the cofactors; the D-digit string of the det).

    ``Wp``: the point's ``product_work``, as the caller parsed it."""
    hp = p.hp
    where = f"the point at t = {p.t}"
    if work is None or digits is None or "product_work" not in hp:
        raise InconsistentRecord(f"{where} records factors_work without product_work and its digits")
    fw = hp["factors_work"]
    if len(fw) != depth or len(p.factors) != depth \
            or any(np.shape(f) != np.shape(g) for f, g in zip(fw, p.factors)):
        raise InconsistentRecord(f"{where}: factors_work has shapes {[np.shape(f) for f in fw]}, Point.factors "
                                 f"{[np.shape(g) for g in p.factors]} (depth {depth})")
    fs = [_decimal_matrix(f) for f in fw]
    u = mpmath.mpf(10) ** -work
    for k, (f, g) in enumerate(zip(fs, p.factors)):      # Point.factors: the float64 rounding of factors_work
        _rounding_link(where, f, f"factor {k + 1} of factors_work", g, "Point.factors", EPS)
    W = _product(fs)
    inner = max([f.rows for f in fs] + [f.cols for f in fs])
    bound = SAFETY * 5 * u * (2 * (depth - 1) * inner + depth + 1) * mpmath.fprod(mpmath.mnorm(f, "f") for f in fs)
    if (W.rows, W.cols) != (Wp.rows, Wp.cols) or _max(W - Wp) > bound:
        gap = _max(W - Wp) if (W.rows, W.cols) == (Wp.rows, Wp.cols) else math.inf
        raise InconsistentRecord(f"{where}: the product of factors_work differs from product_work by "
                                 f"{mpmath.nstr(gap, 3)}, beyond its rounding bound {mpmath.nstr(bound, 3)}")
    for k, (f, d) in enumerate(zip(fs, hp.get("factor_dets") or [])):
        if f.rows != f.cols:
            continue
        n, d = f.rows, mpmath.mpf(d)
        rows = mpmath.fprod(mpmath.sqrt(mpmath.fsum(f[i, j] ** 2 for j in range(n))) for i in range(n))
        bound = SAFETY * ((4 * n + 5 * n ** 1.5) * u * rows + mpmath.mpf(10) ** (1 - digits) * abs(d))
        if abs(mpmath.det(f) - d) > bound:
            raise InconsistentRecord(f"{where}: factor {k + 1}'s det is {mpmath.nstr(mpmath.det(f), 20)} from "
                                     f"factors_work but factor_dets records {mpmath.nstr(d, 20)} (bound "
                                     f"{mpmath.nstr(bound, 3)})")
    return fs


def point_defect(p, problem, depth: int) -> tuple[float, float]:
    """``(defect, error)`` at one recorded point (see the module docstring)."""
    if p.tangent is None and not (p.hp and "tangent" in p.hp):
        raise EngineFailure(f"the point at t = {p.t} carries no tangent: it cannot be shown to be gradient flow")
    hp = p.hp or {}
    digits = int(hp["digits"]) if "digits" in hp else None
    work = int(hp["work_digits"]) if "product_work" in hp else digits
    rnd = EPS if work is None else 10.0 ** -work                          # rounding of the recorded W
    rnd_t = EPS if digits is None else max(10.0 ** -digits, 10.0 ** -(work // 2))   # of the tangent
    raw = p.factors is not None and len(p.factors) == depth
    with mpmath.workdps(max(50, (work or 16) + 25)):   # the decimal strings are parsed at this precision
        W, _ = _point_matrix(p, "product_work" if "product_work" in hp else "product", p.product)
        T, _ = _point_matrix(p, "tangent", p.tangent)
        # the loss (and gf-mp's float64 tangent) the claims read are those of the state checked
        if W is not None:
            record_ties(p, problem, W, EPS if work is None else 10.0 ** (1 - work), digits,
                        T if "tangent" in hp else None)
        fw = hp.get("factors_work") if raw else None
        if fw is not None:     # gf-mp's raw path: the factors at its working precision (decimal strings)
            fs0 = _working_factors(p, depth, work, digits, W)   # checked to be the state the point records
            frnd = 10.0 ** (1 - work)        # a decimal string of `work` significant digits: < 5 10^-work
        else:
            fs0 = [mpmath.matrix(np.asarray(f, dtype=float).tolist()) for f in p.factors] if raw else None
            frnd = EPS

        def F_raw(fs):
            return field(problem, _product(fs), fs)

        def F_of(Wm):
            return F_raw(fs0) if raw else field(problem, Wm, balanced_factors(Wm, depth))

        F = F_of(W)
        scale = _max(F)
        if scale == 0:
            return (0.0 if _max(T) == 0 else math.inf), 0.0
        defect = _max(T - F) / scale
        sens = mpmath.mpf(0)
        if raw and digits is not None:   # gf-mp: the recorded factors are a rounding of its state (gf: its state)
            for k, f in enumerate(fs0):
                for i in range(f.rows):
                    for j in range(f.cols):
                        fs = [g.copy() for g in fs0]
                        fs[k][i, j] += frnd * abs(f[i, j])
                        sens += _max(F_raw(fs) - F)
        if not raw:   # each recorded entry is rounded relatively (float64, or decimal strings of `digits`)
            for i in range(W.rows):
                for j in range(W.cols):
                    Wd = W.copy()
                    Wd[i, j] += rnd * abs(W[i, j])
                    sens += _max(F_of(Wd) - F)
        err = SAFETY * (sens / scale + 64 * rnd_t * (1 + _max(T) / scale))
        return float(defect), float(err)


def flow_outcome(traj, problem, depth: int) -> Outcome:
    """The gradient-flow check of every recorded point, combined (margin ``FLOW_TOL - defect``)."""
    outs = []
    for k, p in enumerate(traj.points):
        defect, err = point_defect(p, problem, depth)
        outs.append(point_outcome(FLOW_TOL - defect, err, FLOW_TOL, point=k, t=p.t, loss=p.loss,
                                  part="tangent = gradient-flow field", defect=defect))
    return combine(outs, engine=traj.engine)


def check_start(traj, init_factors) -> None:
    """The trajectory starts where the claim asked: its first point is at ``t = 0`` and its ``Point.factors`` are
    (the float64 rounding of) ``init_factors``, else :class:`InconsistentRecord`. The gradient-flow check is local,
    so without this an engine that ran from another init (measured: gf-mp always from a det-positive balanced init,
    whatever was drawn) records a genuine gradient flow and passes it; a claim that reads its initial values from
    the first point (rc20.lemma.det_sign_raw's initial factor det signs) then holds for a draw it never ran."""
    if not traj.points:
        return
    p = traj.points[0]
    where = f"the first point (t = {p.t})"
    if p.t != 0 or p.factors is None or len(p.factors) != len(init_factors):
        raise InconsistentRecord(f"{where}: the trajectory does not start at the init (t = 0, "
                                 f"{len(init_factors)} factors)")
    for k, (F, G) in enumerate(zip(init_factors, p.factors)):
        fine = mpmath.matrix(np.asarray(F, dtype=float).tolist())
        _rounding_link(where, fine, f"factor {k + 1} of the init", G, "Point.factors", EPS)


def validated(evaluate, problem, depth: int, init_factors=None):
    """``evaluate`` with the gradient-flow check of the trajectory first: raises :class:`NotGradientFlow` when
    a point's tangent is not the gradient-flow field beyond its error, else returns the claim's outcome combined
    with the check (an inconclusive check leaves the claim inconclusive), with the largest defect in the detail.
    With ``init_factors``, the trajectory must also start there (:func:`check_start`)."""
    def ev(traj):
        if init_factors is not None:
            check_start(traj, init_factors)
        flow = flow_outcome(traj, problem, depth)
        if flow.status == "violated":
            d = flow.detail
            raise NotGradientFlow(f"the trajectory is not gradient flow: at point {d.get('point')} (t = "
                                  f"{d.get('t')}, loss {d.get('loss')}) the engine's tangent differs from the "
                                  f"gradient-flow field by {d.get('defect'):.3g} (relative; tolerance {FLOW_TOL:g})")
        out = evaluate(traj)
        summary = {"points": flow.detail.get("points_checked"), "tolerance": FLOW_TOL,
                   "largest_defect": max((o for o in [flow.detail.get("defect")] if o is not None), default=None),
                   "status": flow.status}
        res = combine([out, Outcome(flow.margin, flow.error, {}, flow.engine, flow.scale)])
        if res.status == out.status:
            res = out
        return Outcome(res.margin, res.error, {**out.detail, "gradient_flow_check": summary}, out.engine,
                       res.scale)

    return ev


__all__ = ["FLOW_TOL", "InconsistentRecord", "NotGradientFlow", "balanced_factors", "check_start", "field",
           "flow_outcome", "loss_gradient", "point_defect", "record_ties", "state_loss", "validated"]
