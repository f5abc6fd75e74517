"""The escape gap of ``rmc21.incremental_learning``: one direction at a time, tested over independent ladders
under the suite's statistical rule (:mod:`properties.stats`; catalog RMC21-Thm1, "Escape gap").

Without a head start two components close in direction can escape together and share one target component, so
the escape of a *component* is no evidence that one direction is learned at a time. The tensor's own escapes are:
``e1``, the first step with ``||W|| >= 0.05`` (the tensor leaves zero), and ``e2``, the first step at which the
tensor is at distance ``>= theta2`` from matrix rank one in some unfolding, ``u(W) = max_n sqrt(||W||^2 -
sigma_1(W_(n))^2)`` (a lower bound on the distance to tensor rank one), with ``theta2`` half the target's own
``u``: a second direction is then half learned, however many components carry each direction.

Why the gap tests the exponent. While the tensor is small the factor dynamics is homogeneous of degree N - 1, so
scaling the init by c scales time by c^-(N-2); after the first direction is fitted (an O(1) time) the other
components are still O(alpha) and take again a time ``C alpha^-(1 - 2/N)`` to leave zero. So ``e2 - e1 = C
alpha^-(1-2/N) + O(1)``, and over the ladder ``a, a/10, a/100`` the differences of the gaps cancel the O(1) part:
``log10((g3 - g2) / (g2 - g1)) -> 1 - 2/N``. Were the rate exponent ``2 - 2/N`` of Theorem 1 replaced by 1 (each
component grows like ``exp(N g_r t)``), the gaps would grow like ``log(1/alpha)`` and the estimate would be near
0; were every direction learned together, there would be no gap to grow.

One ladder is a *trial*: it succeeds when both gap differences exceed twice the step resolution (otherwise the
estimate's error is infinite) and the estimate minus its error is at least half of ``1 - 2/N`` (the midpoint between
the theorem and the alternative exponent 1). A finite ladder sees the limit only when the two leading alignments are
separated, so single ladders fail at a measured rate (catalog). The test is of "P(success) <= 0.2" (no incremental
learning) against "P(success) >= 0.7" (measured: 0.75 to 0.96 per setting) over independent ladders (each its own target, observed entries and directions, from :func:`properties.rmc21.inc_setting`), decided
by :data:`GAP_TEST`: ``holds`` rejects ``p <= 0.2`` at level 1e-3 (it does not establish ``p >= 0.7``); its power
and its rate of red runs by chance are stated at ``p >= 0.7``; for a setting nearer ``p = 0.5`` the test would be
``violated`` about 1.6% and ``inconclusive`` about 7.5% of the time.

The ladders of one test run as one batch of plain gradient descent in float64, one problem per member, in one
compiled loop (:func:`_kernel`, numba: the escapes are evaluated after every step, so an order-4 ladder of ~30,000
steps costs a fraction of a second where a numpy step costs ~100 microseconds of call overhead).
:func:`cp_gd_batch` runs the same loop for a fixed number of steps; it also runs the negative control: the same
descent with each component's velocity scaled by ``||W_r||^(p - (2 - 2/N))``, so that ``d/dt ||W_r|| = N
||W_r||^p g_r`` (``p = 1``: exponential escape). ``tests/unit/test_rmc21_gaps.py`` checks the loop against the
suite's GD engine (order 3 and 4) and that ``p = 1`` is refuted at both orders.
"""

from __future__ import annotations

import math

import numpy as np

from models.factorizations import cp_tensor
from models.errors import EngineFailure

from .stats import ProportionAtLeast

GAP_THETA1 = 0.05
GAP_LR = 0.1
GAP_CHUNK = 1            # escapes are located to GAP_CHUNK steps
GAP_LADDER = (1.0, 0.1, 0.01)
#: step budget of a ladder per order (measured largest second escapes over 240 ladders each, alpha >= 10^-4.5:
#: order 3 2,701, order 4 30,848); a member that has not escaped by then makes the check an error, never a verdict
GAP_MAX_STEPS = {3: 12_000, 4: 100_000}
GAP_BLOCK = 8            # ladders per batched run (the test consumes them in order and stops when it decides)
#: the claim "P(success) >= 0.7" against "P(success) <= 0.2" (measured, catalog RMC21-Thm1 "Escape gap": 212 of
#: 240 order-3 ladders over 10 drawn settings succeed, 18/24 in the worst setting, and 228 of 240 order-4 ladders,
#: 21/24 in the worst; the exponent-1 dynamics: 0 of 120 at order 3, 1 of 120 at order 4); per-test level 1e-3
#: of a wrong holds, a red run by chance <= 7e-4 (<= stats.RUN_LEVEL), power P(holds)
#: >= 1 - 1e-7 at p = 0.7
GAP_TEST = ProportionAtLeast(p0=0.2, p1=0.7, alpha=1e-3, n_max=128)


def _letters(N: int) -> str:
    return "ijklmnop"[:N]


def batch_tensor(factors) -> np.ndarray:
    """``(B, *dims)``: the CP tensor of every member of ``factors`` (N arrays (B, d_n, R))."""
    L = _letters(len(factors))
    return np.einsum(",".join(f"b{c}r" for c in L) + f"->b{L}", *factors)


def batch_unfolding_distance(T) -> np.ndarray:
    """``u(W) = max_n sqrt(max(0, ||W||^2 - sigma_1(W_(n))^2))`` of every member of ``T`` (B, *dims)."""
    T = np.asarray(T, dtype=float)
    B, dims = T.shape[0], T.shape[1:]
    sq = np.sum(T.reshape(B, -1) ** 2, axis=1)
    out = np.zeros(B)
    for n, d in enumerate(dims):
        M = np.moveaxis(T, n + 1, 1).reshape(B, d, -1)
        s1 = np.linalg.svd(M, compute_uv=False)[:, 0]
        out = np.maximum(out, np.sqrt(np.maximum(sq - s1 ** 2, 0.0)))
    return out


_COMPILED = None


def _kernel():
    """The compiled loop of :func:`cp_gd_batch` and :func:`ladder_escapes` (numba; compiled once per process and
    cached on disk when the package directory is writable). One member at a time: ``steps`` updates of plain (or,
    with ``use_p``, norm-growth-exponent) gradient descent, all modes from the same iterate; with ``track`` it
    also records the first steps ``e1`` (``||W|| >= theta1``) and ``e2`` (``u(W) >= theta2``, from ``e1`` on) and
    stops the member at ``e2``. ``status[b]``: 0 ran, 1 diverged (non-finite factors)."""
    global _COMPILED
    if _COMPILED is not None:
        return _COMPILED
    try:
        import numba
    except ImportError as exc:  # pragma: no cover -- numba is a declared dependency
        raise EngineFailure(f"the escape-gap loop needs numba ({exc}); pip install numba") from exc

    @numba.njit(cache=True, fastmath=False)
    def cp_loop(F, dims, idx, stride, obs, y, gscale, lr, steps, p, use_p, track, theta1, theta2, e1, e2, status):
        B, N, dmax, R = F.shape
        S = idx.shape[0]
        m = obs.shape[1]
        G = np.zeros((N, dmax, R))
        T = np.zeros(S)
        pw = p - (2.0 - 2.0 / N)
        for b in range(B):
            U = F[b]
            for k in range(steps + 1):
                # the tensor of iterate k (every entry: the residuals need the observed ones, u(W) all of them)
                sq = 0.0
                for s in range(S):
                    val = 0.0
                    for r in range(R):
                        q = 1.0
                        for n in range(N):
                            q *= U[n, idx[s, n], r]
                        val += q
                    T[s] = val
                    sq += val * val
                if track and k > 0:
                    if e1[b] < 0 and math.sqrt(sq) >= theta1:
                        e1[b] = k
                    if e1[b] >= 0:
                        u2 = 0.0
                        for n in range(N):
                            d = dims[n]
                            gram = np.zeros((d, d))
                            for s in range(S):
                                i = idx[s, n]
                                for i2 in range(d):
                                    gram[i, i2] += T[s] * T[s + (i2 - i) * stride[n]]
                            u2 = max(u2, sq - np.linalg.eigvalsh(gram)[d - 1])
                        if math.sqrt(u2) >= theta2[b]:
                            e2[b] = k
                            break
                if k == steps:
                    break
                for n in range(N):
                    for i in range(dmax):
                        for r in range(R):
                            G[n, i, r] = 0.0
                for j in range(m):
                    s = obs[b, j]
                    res = gscale * (T[s] - y[b, j])
                    for r in range(R):
                        for n in range(N):
                            q = res
                            for o in range(N):
                                if o != n:
                                    q *= U[o, idx[s, o], r]
                            G[n, idx[s, n], r] += q
                if use_p:
                    for r in range(R):
                        nr = 1.0
                        for n in range(N):
                            acc = 0.0
                            for i in range(dims[n]):
                                acc += U[n, i, r] * U[n, i, r]
                            nr *= math.sqrt(acc)
                        sc = nr ** pw if nr > 0 else 1.0
                        for n in range(N):
                            for i in range(dims[n]):
                                G[n, i, r] *= sc
                ok = True
                for n in range(N):
                    for i in range(dims[n]):
                        for r in range(R):
                            U[n, i, r] -= lr * G[n, i, r]
                            if not math.isfinite(U[n, i, r]):
                                ok = False
                if not ok:
                    status[b] = 1
                    break

    _COMPILED = cp_loop
    return cp_loop


def kernel_signatures() -> list:
    """The argument types the compiled loop has been specialized for in this process: one, whatever the inputs'
    flags (:func:`_run` passes fresh writable copies), so it is compiled once."""
    return list(_kernel().signatures)


def _pack(factors):
    """N arrays (B, d_n, R) -> one float64 array (B, N, max d_n, R) (zero-padded), the dims, the entries'
    multi-indices (row-major) and the modes' strides."""
    fs = [np.asarray(F, dtype=float) for F in factors]
    B, R = fs[0].shape[0], fs[0].shape[2]
    dims = np.array([F.shape[1] for F in fs], dtype=np.int64)
    P = np.zeros((B, len(fs), int(dims.max()), R))
    for n, F in enumerate(fs):
        P[:, n, :F.shape[1]] = F
    idx = np.stack(np.unravel_index(np.arange(int(np.prod(dims))), tuple(dims)), axis=1).astype(np.int64)
    stride = np.array([int(np.prod(dims[n + 1:])) for n in range(len(dims))], dtype=np.int64)
    return P, dims, idx, stride


def _run(factors, obs, targets, grad_scale, lr, steps, exponent, track, theta2):
    P, dims, idx, stride = _pack(factors)
    B = P.shape[0]
    e1, e2, status = np.full(B, -1, dtype=np.int64), np.full(B, -1, dtype=np.int64), np.zeros(B, dtype=np.int64)
    # fresh writable C copies: numba's array types include the read-only flag, so a read-only input (a broadcast
    # theta2, a caller's frozen array) would cost a second compilation of the loop
    th2 = np.array(np.broadcast_to(np.asarray(theta2, dtype=float), (B,)), dtype=float, order="C")
    obs, targets = np.array(obs, dtype=np.int64, order="C"), np.array(targets, dtype=float, order="C")
    _kernel()(P, dims, idx, stride, obs, targets, float(grad_scale), float(lr), int(steps),
              0.0 if exponent is None else float(exponent), exponent is not None, bool(track), GAP_THETA1, th2, e1,
              e2, status)
    if np.any(status != 0):
        raise EngineFailure(f"gradient descent diverged (members {np.nonzero(status)[0].tolist()})")
    return [P[:, n, :d] for n, d in enumerate(dims)], e1, e2


def cp_gd_batch(factors, obs, targets, grad_scale: float, lr: float, steps: int, exponent: float | None = None):
    """``steps`` steps of gradient descent on tensor completion for every member: ``factors`` N arrays (B, d_n, R),
    ``obs`` (B, m) flat observed indices, ``targets`` (B, m), loss ``grad_scale / 2 sum r^2`` per member.
    ``exponent`` p (None: plain gradient descent): each component's velocity scaled by ``||W_r||^(p - (2 - 2/N))``
    (the negative control of the module docstring). Returns the new factors (the compiled loop :func:`_kernel`,
    the same one :func:`ladder_escapes` runs)."""
    return _run(factors, obs, targets, grad_scale, lr, steps, exponent, False, np.inf)[0]


def ladder_escapes(factors, obs, targets, grad_scale, theta2, lr=GAP_LR, max_steps=GAP_MAX_STEPS[3], exponent=None):
    """``(e1, e2)`` per member (arrays of steps, each located exactly: the first iterate at which it holds, the
    predicates evaluated after every step); raises when a member reaches neither within ``max_steps``."""
    _, e1, e2 = _run(factors, obs, targets, grad_scale, lr, max_steps, exponent, True, theta2)
    if np.any(e2 < 0):
        raise EngineFailure(f"members {np.nonzero(e2 < 0)[0].tolist()}: no second escape in {max_steps} steps")
    return e1, e2


def gap_trial(e1s, e2s, order: int, chunk: int = GAP_CHUNK) -> tuple[bool, dict]:
    """One ladder's trial (module docstring): ``(success, detail)``. Each escape is known to ``chunk`` steps, so
    each gap to ``chunk`` (same grid) and each difference of gaps to ``2 chunk``; the estimate's error is
    ``(2 chunk / D1 + 2 chunk / D2) / ln 10`` (infinite unless both differences exceed ``2 chunk``)."""
    g = [float(b - a) for a, b in zip(e1s, e2s)]
    d1, d2 = g[1] - g[0], g[2] - g[1]
    want = 1.0 - 2.0 / order
    if d1 <= 2 * chunk or d2 <= 2 * chunk:
        est, err = (math.log10(d2 / d1) if d1 > 0 and d2 > 0 else -math.inf), math.inf
    else:
        est, err = math.log10(d2 / d1), (2 * chunk / d1 + 2 * chunk / d2) / math.log(10.0)
    ok = bool(math.isfinite(err) and est - err >= want / 2)
    return ok, {"gaps": g, "estimate": est, "error": err, "e1": [int(x) for x in e1s], "e2": [int(x) for x in e2s]}


def ladder_members(settings, alpha: float, ladder=GAP_LADDER):
    """Stack the ladders of ``settings`` (a list of :func:`properties.rmc21.inc_setting` results) at the scales
    ``alpha x ladder`` into one batch: ``(factors, obs, targets, grad_scale, theta2)``."""
    N = settings[0][1].order
    fs = [[] for _ in range(N)]
    obs, tg, th = [], [], []
    for problem, model, dirs, c, T in settings:
        flat = np.ravel_multi_index(tuple(np.asarray(problem.indices).T), model.dims)
        u = float(batch_unfolding_distance(T[None])[0])
        for s in ladder:
            for n, U in enumerate(dirs):
                fs[n].append(U * (alpha * s * c) ** (1.0 / N))
            obs.append(flat)
            tg.append(np.asarray(problem.targets, dtype=float))
            th.append(0.5 * u)
    scales = {float(p.grad_scale) for p, *_ in settings}
    if len(scales) != 1 or len({len(o) for o in obs}) != 1:
        raise ValueError("the ladders of one batch must share the loss reduction and the number of observations")
    return [np.stack(F) for F in fs], np.stack(obs), np.stack(tg), scales.pop(), np.array(th)


def gap_decision(make_setting, alpha: float, order: int, test=GAP_TEST, block=GAP_BLOCK, exponent=None):
    """Run ladders ``make_setting(0), make_setting(1), ...`` in batches of ``block`` and feed their trials to
    ``test`` in order until it decides; returns the :class:`properties.stats.Decision`."""
    def trials():
        i = 0
        while i < test.n_max:
            sets = [make_setting(i + j) for j in range(min(block, test.n_max - i))]
            fs, obs, tg, gs, th = ladder_members(sets, alpha)
            e1, e2 = ladder_escapes(fs, obs, tg, gs, th, max_steps=GAP_MAX_STEPS[order], exponent=exponent)
            k = len(GAP_LADDER)
            for j in range(len(sets)):
                ok, d = gap_trial(e1[j * k:(j + 1) * k], e2[j * k:(j + 1) * k], order)
                yield ok, {"ladder": i + j, **d}
            i += len(sets)

    return test.decide(trials())


def escape_gap_outcome(inputs, alpha: float, exponent: float | None = None):
    """The statistical escape-gap part of ``rmc21.incremental_learning`` (module docstring): ladders ``alpha x (1, 0.1,
    0.01)`` on independent instances (:func:`properties.rmc21.inc_setting` with seeds derived from the drawn one,
    tilted as the claim's own when ``balanced`` is dropped), decided by ``GAP_TEST``. ``exponent`` p != None runs
    the negative-control dynamics ``d/dt ||W_r|| = N ||W_r||^p g_r``."""
    from .rmc21 import inc_setting

    order = len(inputs["dims"])
    lam = float(inputs.get("lam", 1.0))     # dropping "balanced" tilts the ladders as the claim's own
    tilt = [lam, 1.0 / lam] + [1.0] * (order - 2)

    def setting(i):
        seed = int(np.random.SeedSequence((int(inputs["seed"]), 11, i)).generate_state(1)[0])
        problem, model, dirs, c, T = inc_setting({**inputs, "seed": seed})
        return problem, model, [U * t for U, t in zip(dirs, tilt)], c, T

    dec = gap_decision(setting, alpha, order, exponent=exponent)
    return GAP_TEST.outcome(dec, engine=f"numpy gd lr={GAP_LR}", part="escape gap over independent ladders",
                            alternative="exponent 1 or no gap: P(success) <= 0.2", ladders=dec.trials)


__all__ = ["GAP_BLOCK", "GAP_CHUNK", "GAP_LADDER", "GAP_LR", "GAP_MAX_STEPS", "GAP_TEST", "GAP_THETA1",
           "batch_tensor", "batch_unfolding_distance", "cp_gd_batch", "escape_gap_outcome", "gap_decision",
           "gap_trial", "kernel_signatures", "ladder_escapes", "ladder_members"]
