"""The balanced end-to-end flow of any ``d x d'`` in block-SVD coordinates (the ``gf`` engine's ``svd`` path).

Why. :mod:`models.engines.e2e_flow` stores ``W`` itself, so a singular value below ``eps * s_max`` is rounding
noise: a square problem whose smallest singular value decays (the RC20 family, catalog RC20-Ext-Larger) stops
with ``precision_lost`` once float64 could flip the det. Here the state is

    W = U blockdiag(e^{mu_1} D_1, ..., e^{mu_m} D_m) V^T,   U = U0 cay(A),  V = V0 cay(B),
    cay(A) = (I - A/2)^{-1} (I + A/2),

with the singular values split into blocks, each within ``1/SMALL`` (1e3) of its block's largest; block ``b`` is
a general matrix ``D_b`` of norm about 1 with its own log scale ``mu_b`` (the last block also holds the null
directions of a rectangular ``W``); ``A``, ``B`` skew (strict upper triangles are unknowns) carry only the
rotations *between* blocks (rotations inside a block are carried by ``D_b``); ``U0``, ``V0`` are orthogonal
reference frames. Each block is stored to its own scale, so every singular value keeps a relative accuracy
whatever its size (even below the smallest float: the logs are never exponentiated where it matters), the
orthogonal factors stay orthogonal to rounding (the Cayley map is rational and exactly orthogonal) and the det
sign of a square ``W`` is ``sign det U0 * sign det V0 * prod_b sign det D_b``, known without resolving ``W``'s
entries.

Why blocks and not one log singular value each (the 2x2 chart of :mod:`models.chart`): a full SVD chart needs
the rotation between every pair of singular vectors, which divides by ``s_k^{2/N} - s_l^{2/N}``; singular values
that meet (the RC20 family's limit has ``d - 2`` of them equal to 1) make it singular. Between blocks the gap is
at least ``1/SMALL``, so the chart is regular. The blocks are remade (and the frames moved to the current point,
``U0 <- U``, ``A <- 0``) when a block spreads over more than ``10/SMALL``, two blocks come within a factor 10, or
``|A|``, ``|B|`` pass ``RECENTRE``.

The flow. With ``G = grad l(W)``, the full singular basis ``U Bu``, ``V Bv`` (``Bu``, ``Bv`` block-diagonal, from
the SVDs of the blocks), ``Gh = (U Bu)^T G (V Bv)`` and ``K`` of :func:`models.engines.e2e_flow.kernel`, the
end-to-end flow is ``(U Bu)^T (dW/dt) (V Bv) = -(Gh o K)``. Its diagonal blocks move the ``D_b`` (split into
``mu_b`` and a direction); the rotations are, for ``i``, ``j`` in different blocks (``s_j = 0`` past
``min(d, d')``),

    Om_ij = (Gh_ij s_j + Gh_ji s_i) / (s_i^{2/N} - s_j^{2/N}),   Pi_ij = (Gh_ij s_i + Gh_ji s_j) / (s_i^{2/N} - s_j^{2/N})

(from ``K_ij (s_i^{2/N} - s_j^{2/N}) = s_i^2 - s_j^2``; evaluated in logarithms), taken back to the frames, and
``dA = (I + A/2) Om (I - A/2)`` (the Cayley map's derivative).

The ``gf`` engine's ``auto`` path starts square runs on :mod:`models.engines.e2e_flow` and moves here when
``s_min / s_max`` falls below ``SWITCH_RATIO``; ``path="svd"`` runs here from the start. Stiff linear algebra:
BDF with a forward-difference Jacobian (:meth:`SVDChart.jacobian`; the block SVDs are not complex-analytic), dense, so the path is
offered up to ``MAX_UNKNOWNS`` unknowns. Absolute tolerance: :meth:`SVDChart.atol`.

Known limits (measured, 2 loaded cores, init 1e-2, rtol 1e-10): rc20_larger 3x3 depth 2 reaches loss ~3e-9 in
60 s (t ~ 3e11; the loss falls like ``t^{-2/3}`` there) and 5x5 depth 2 ~6e-7 before BDF's step collapses
(scipy's adaptive finite differences once ended them at ~5e-6 and ~1e-2 on a non-finite Jacobian, see
:meth:`SVDChart.jacobian`). Late in those runs the step shrinks to ~1e-4 in log-time: the largest singular value
grows (~e^9) while the residual shrinks (~1e-4), so the residual, hence the rhs, carries a relative rounding error
~ eps s_max / residual ~ 1e-8, above rtol; at rtol 1e-7 the 3x3 run reaches 4e-13. At depth >= 3 the chart is
slow too (the ``auto`` path's hand-over at s_min / s_max = 1e-6 crawls on rc20_larger 5x5 depth 3).
"""

from __future__ import annotations

import numpy as np

from ..problems import MatrixProblem
from .e2e_flow import kernel

#: the engine moves from the stored-W flow to this chart once ``s_min / s_max`` is below this
SWITCH_RATIO = 1e-6
#: a singular value below ``SMALL * s_max`` goes to the small block (split remade outside 1/10..10 of it)
SMALL = 1e-3
#: frames are re-anchored when an entry of a Cayley parameter exceeds this
RECENTRE = 0.5
#: the absolute tolerances relative to rtol (see :meth:`SVDChart.atol`)
ATOL_RATIO = 1e-2
#: the relative forward-difference step of :meth:`SVDChart.jacobian`
FD_STEP = float(np.sqrt(np.finfo(float).eps))
#: the largest chart (unknowns) the engine uses: its Jacobian is dense
MAX_UNKNOWNS = 1300


def unknowns(shape) -> int:
    """An upper bound on the chart's unknowns for a ``d x d'`` problem."""
    d, dp = shape
    return d * (d - 1) // 2 + dp * (dp - 1) // 2 + d * dp + min(d, dp)


def _cayley(A):
    eye = np.eye(A.shape[-1])
    return np.linalg.solve(eye - A / 2, eye + A / 2)


def _skew(a, idx, m):
    S = np.zeros((m, m))
    S[idx[0], idx[1]] = a
    return S - S.T


def _sign(M) -> int:
    return 1 if M.size == 0 else int(np.sign(np.linalg.det(M)))


class SVDChart:
    """The flow of one problem at one depth in block-SVD coordinates (see the module docstring)."""

    def __init__(self, problem: MatrixProblem, depth: int, W0: np.ndarray):
        self.problem, self.depth = problem, int(depth)
        self.shape = problem.shape
        d, dp = self.shape
        self.r = min(d, dp)
        self.iu, self.iv = np.triu_indices(d, 1), np.triu_indices(dp, 1)
        self.na, self.nb = len(self.iu[0]), len(self.iv[0])
        c = problem.grad_scale
        if problem.observed is not None:
            self.mask2d = np.zeros(self.shape)
            self.Y = np.zeros(self.shape)
            for (i, j), v in zip(problem.observed, problem.targets):
                self.mask2d[i, j] = c
                self.Y[i, j] = v
            self.A = None
        else:
            self.A, self.c, self.y = problem.operator, c, np.asarray(problem.targets, dtype=float)
        self.recentres = 0
        U, s, Vt = np.linalg.svd(np.asarray(W0, dtype=float), full_matrices=True)
        if not (np.all(np.isfinite(s)) and s[-1] > 0):
            raise np.linalg.LinAlgError("the SVD chart needs W of full rank")
        self.y0 = self._anchor(U, np.log(s), Vt.T)

    # ----- frames and blocks --------------------------------------------------------------------------------
    def _anchor(self, U, logs, V) -> np.ndarray:
        """Frames ``U``, ``V`` (a full singular basis, log singular values ``logs`` descending, logarithms since
        a small one may be far below the smallest float); blocks of singular values within ``1/SMALL`` of their
        block's largest. Returns the state."""
        d, dp, r = self.shape[0], self.shape[1], self.r
        starts = [0]
        for i in range(1, r):
            if logs[i] < logs[starts[-1]] + np.log(SMALL):
                starts.append(i)
        self.starts = starts + [r]
        self.rows = [(a, b if b < r else d) for a, b in zip(self.starts[:-1], self.starts[1:])]
        self.cols = [(a, b if b < r else dp) for a, b in zip(self.starts[:-1], self.starts[1:])]
        self.block_r = np.concatenate([np.full(b - a, k) for k, (a, b) in enumerate(self.rows)])
        self.block_c = np.concatenate([np.full(b - a, k) for k, (a, b) in enumerate(self.cols)])
        self.U0, self.V0 = U, V
        parts = [np.zeros(self.na + self.nb)]
        for (a, b), (ra, rb), (ca, cb) in zip(zip(self.starts[:-1], self.starts[1:]), self.rows, self.cols):
            mu = float(logs[a])
            D = np.zeros((rb - ra, cb - ca))
            D[np.arange(b - a), np.arange(b - a)] = np.exp(logs[a:b] - mu)
            parts += [[mu], D.ravel()]
        y = np.concatenate(parts)
        self.n = y.shape[0]
        return y

    def blocks(self, y):
        """``[(mu, D)]`` per block."""
        out, o = [], self.na + self.nb
        for (ra, rb), (ca, cb) in zip(self.rows, self.cols):
            m = (rb - ra) * (cb - ca)
            out.append((y[o], y[o + 1: o + 1 + m].reshape(rb - ra, cb - ca)))
            o += 1 + m
        return out

    def basis(self, y):
        """``(U, V, Bu, Bv, logs, sd, blocks, A, B)``: the frames, the block-diagonal singular bases ``Bu``, ``Bv``
        of the blocks (so ``U Bu``, ``V Bv`` is a full singular basis of ``W``), the log singular values, each
        block's normalized singular values, the blocks and the Cayley parameters."""
        y = np.asarray(y, dtype=float)
        d, dp = self.shape
        A = _skew(y[: self.na], self.iu, d)
        B = _skew(y[self.na: self.na + self.nb], self.iv, dp)
        U, V = self.U0 @ _cayley(A), self.V0 @ _cayley(B)
        Bu, Bv = np.zeros((d, d)), np.zeros((dp, dp))
        logs, sds = [], []
        tiny = np.finfo(float).tiny
        blocks = self.blocks(y)
        for (mu, D), (ra, rb), (ca, cb) in zip(blocks, self.rows, self.cols):
            Ud, sd, Vdt = np.linalg.svd(D, full_matrices=True)
            Bu[ra:rb, ra:rb], Bv[ca:cb, ca:cb] = Ud, Vdt.T
            logs.append(mu + np.log(np.maximum(sd, tiny)))
            sds.append(sd)
        return U, V, Bu, Bv, np.concatenate(logs), sds, blocks, A, B

    def log_singular_values(self, y) -> np.ndarray:
        return self.basis(y)[4]

    def det_sign(self, y) -> int:
        """The det sign of a square ``W`` from its factors (never from ``W``'s entries)."""
        sign = int(np.sign(np.linalg.det(self.U0)) * np.sign(np.linalg.det(self.V0)))
        for _, D in self.blocks(np.asarray(y, dtype=float)):
            sign *= _sign(D)
        return sign

    def _full(self, y):
        U, V, Bu, Bv, logs, sds, blocks, A, B = self.basis(y)
        r = self.r
        Ub, Vb = U @ Bu, V @ Bv
        s = np.exp(logs)
        W = (Ub[:, :r] * s) @ Vb[:, :r].T
        return Ub, Vb, s, W, Bu, Bv, sds, blocks, A, B, logs

    def matrix(self, y) -> np.ndarray:
        return self._full(y)[3]

    def recentre(self, y: np.ndarray) -> np.ndarray:
        """Re-anchor at the state ``y`` (same ``W``): frames at its singular basis, blocks remade."""
        U, V, Bu, Bv, logs, sds, blocks, A, B = self.basis(y)
        Ub, Vb = U @ Bu, V @ Bv
        order = np.argsort(-logs, kind="stable")
        r = self.r
        Ub[:, :r], Vb[:, :r] = Ub[:, :r][:, order], Vb[:, :r][:, order]
        self.recentres += 1
        return self._anchor(Ub, logs[order], Vb)

    def needs_recentre(self, y) -> bool:
        """Cayley parameters past ``RECENTRE``, a block spread over more than ``10 / SMALL``, or two blocks
        within a factor 10 of each other."""
        if float(np.max(np.abs(y[: self.na + self.nb]), initial=0.0)) > RECENTRE:
            return True
        logs = self.log_singular_values(y)
        tops, bottoms = [], []
        for a, b in zip(self.starts[:-1], self.starts[1:]):
            tops.append(np.max(logs[a:b]))
            bottoms.append(np.min(logs[a:b]))
            if bottoms[-1] < tops[-1] + np.log(0.1 * SMALL):
                return True
        return any(tops[k + 1] > bottoms[k] - np.log(10.0) for k in range(len(tops) - 1))

    def atol(self, rtol: float, y=None) -> float:
        """The absolute tolerance: ``ATOL_RATIO * rtol`` on the Cayley parameters, the ``mu`` and the normalized
        blocks (all O(1)). A tighter one (1e-14, as on the 2x2 chart) makes BDF's Newton iteration chase the
        rounding noise of the rotations and the step collapse (measured on the 5x5 RC20 family)."""
        return ATOL_RATIO * rtol

    # ----- the flow -----------------------------------------------------------------------------------------
    def grad(self, W):
        if self.A is None:
            return self.mask2d * (W - self.Y)
        return (self.c * ((W.reshape(-1) @ self.A.T - self.y) @ self.A)).reshape(W.shape)

    def _padded(self, s):
        d, dp = self.shape
        sr, sq = np.zeros(d), np.zeros(dp)
        sr[: self.r], sq[: self.r] = s, s
        return sr, sq

    def rhs(self, y):
        """``dy/dt``."""
        d, dp, r, N = self.shape[0], self.shape[1], self.r, self.depth
        Ub, Vb, s, W, Bu, Bv, sds, blocks, A, B, logs = self._full(y)
        Gh = Ub.T @ self.grad(W) @ Vb
        parts = []
        for (mu, D), sd, (ra, rb), (ca, cb) in zip(blocks, sds, self.rows, self.cols):
            # a block's motion divided by e^mu without dividing (e^mu may underflow in a rejected trial state):
            # K is homogeneous of degree 2 - 2/N in the singular values
            ssr, ssq = np.zeros(rb - ra), np.zeros(cb - ca)
            ssr[: sd.shape[0]], ssq[: sd.shape[0]] = sd, sd
            Ud, Vd = Bu[ra:rb, ra:rb], Bv[ca:cb, ca:cb]
            dD = -(Ud @ (Gh[ra:rb, ca:cb] * kernel(ssr, ssq, N)) @ Vd.T) * np.exp(mu * (1.0 - 2.0 / N))
            dmu = float(np.sum(D * dD)) / float(np.sum(D * D))
            parts += [[dmu], (dD - D * dmu).ravel()]
        # rotations between blocks, in the singular basis (null directions belong to the last block)
        m = max(d, dp)
        Ghp = np.zeros((m, m))
        Ghp[:d, :dp] = Gh
        # in logarithms: the singular values of two blocks may both underflow (depth 2 decays exponentially);
        # with h = max(l_i, l_j) the quotient is (G_ij e^{l_j - 2h/N} + G_ji e^{l_i - 2h/N})
        # / (e^{2(l_i - h)/N} - e^{2(l_j - h)/N})
        lr, lq = np.full(d, -np.inf), np.full(dp, -np.inf)
        lr[:r], lq[:r] = logs, logs
        q = 2.0 / N

        def rotation(G, l, blk, rows_first):
            hi = np.maximum(l[:, None], l[None, :])
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                if rows_first:   # Om_ij = (G_ij s_j + G_ji s_i) / (s_i^q - s_j^q)
                    num = G * np.exp(l[None, :] - q * hi) + G.T * np.exp(l[:, None] - q * hi)
                else:            # Pi_ij = (G_ij s_i + G_ji s_j) / (s_i^q - s_j^q)
                    num = G * np.exp(l[:, None] - q * hi) + G.T * np.exp(l[None, :] - q * hi)
                den = np.exp(q * (l[:, None] - hi)) - np.exp(q * (l[None, :] - hi))
                return np.where(blk[:, None] != blk[None, :], num / den, 0.0)

        Om = rotation(Ghp[:d, :d], lr, self.block_r, True)
        Pi = rotation(Ghp[:dp, :dp], lq, self.block_c, False)
        Om, Pi = Bu @ Om @ Bu.T, Bv @ Pi @ Bv.T
        dA = (np.eye(d) + A / 2) @ Om @ (np.eye(d) - A / 2)
        dB = (np.eye(dp) + B / 2) @ Pi @ (np.eye(dp) - B / 2)
        return np.concatenate([dA[self.iu], dB[self.iv]] + [np.ravel(q) for q in parts])

    def jacobian(self, y) -> np.ndarray:
        """``d rhs / dy`` by forward differences with steps ``sqrt(eps) max(|y_k|, 1)`` (the block SVDs are not
        complex-analytic). Not scipy's adaptive ``num_jac``: at depth 2 the rhs does not depend on a block's
        ``mu`` (``K`` is homogeneous of degree 1), num_jac saw a zero column, grew its step by 10 per call and
        stepped ``mu ~ -6e4`` to ``-9e307`` and then ``-inf``: a non-finite Jacobian ended 3x3 depth-2 runs at
        loss ~5e-6 with ``solver_failed``."""
        y = np.asarray(y, dtype=float)
        f0 = self.rhs(y)
        J = np.empty((f0.shape[0], y.shape[0]))
        for k in range(y.shape[0]):
            yk = y.copy()
            yk[k] += FD_STEP * max(abs(y[k]), 1.0)
            J[:, k] = (self.rhs(yk) - f0) / (yk[k] - y[k])
        return J

    def velocity(self, y):
        """``dW/dt = -P_W(grad l(W))`` at a state, from the chart's singular basis."""
        Ub, Vb, s, W, *_ = self._full(y)
        sr, sq = self._padded(s)
        return -(Ub @ ((Ub.T @ self.grad(W) @ Vb) * kernel(sr, sq, self.depth)) @ Vb.T)


__all__ = ["ATOL_RATIO", "FD_STEP", "MAX_UNKNOWNS", "RECENTRE", "SMALL", "SVDChart", "SWITCH_RATIO", "unknowns"]
