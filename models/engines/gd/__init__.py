"""``gd``: batched full-batch gradient descent in torch float64 (CPU or CUDA), with analytic gradients.

The map iterated is plain gradient descent on the overparameterized objective,

    W_j  <-  W_j - lr * d phi / d W_j        (every layer, or every CP factor matrix, from the same iterate)

exactly what ``torch.optim.SGD(params, lr)`` does on the autograd loss ``loss_scale * sum(residual^2)``
(:func:`verify.bench.gd.autograd_gd_reference` is that loop; the tests check agreement to float64 rounding).

Kernels (chosen per run; option ``kernel``)
-------------------------------------------
- **elementwise** (deep matrix factorization with every width <= 8): the batch is the LAST axis, each layer a
  contiguous ``(d_j, d_{j-1}, B)`` tensor, and every small matrix product is unrolled into in-place broadcast
  ``mul``/``addcmul_`` calls on preallocated buffers (``C[i,k] (+)= A[i,j] * B[j,k]`` one batch vector at a time,
  one row at a time, or whole slices, whichever keeps each call below torch's parallel grain of 32768 elements:
  above it torch forks OpenMP threads per call, which costs more than it saves for these tiny calls and is
  disastrous when the cores are shared). Batches larger than that are cut into independent chunks. The layer
  updates are fused into the backward pass (``W_j += -lr * H_j P_{j-1}^T`` as ``addcmul_`` terms, computed after
  ``H_{j-1} = W_j^T H_j`` has used the old ``W_j``); entries of the end-to-end gradient that are structurally zero
  (unobserved entries of a completion problem) are skipped. The loop is a flat list of prebound calls.
- **matmul** (deep matrix factorization with a width > 8, or forced): batch-FIRST ``(B, d_j, d_{j-1})`` tensors
  and ``torch.bmm``/``baddbmm_`` with ``out=`` buffers.
- **cp** (CP tensor completion): batch-last factors ``(d_n, R, B)``; only the observed entries are formed
  (``index_select`` gathers of the factor rows, leave-one-out products from prefix/suffix products, so no
  division), the gradient rows are summed back with ``index_add_``, and batches are cut into chunks of bounded
  memory. Kernel ``kind`` "cp" (option ``kernel="elementwise"``; ``auto`` for one member, below
  ``CP_DENSE_BATCH`` = 16 members, on CUDA, or when the tensor has more than 8 entries per observation).
- **cp-dense** (CP tensor completion, batches on a CPU; option ``kernel="matmul"`` forces it): batch-first
  factors ``(B, d_n, R)``, the tensor as one ``bmm`` of the two modes groups' Khatri-Rao matrices, the residuals
  gathered and scattered into a dense ``E``, ``dK = E K`` by two more ``bmm``; it streams a few ``prod(dims)``
  arrays per member where **cp** streams ~14 ``(m, R)`` arrays, which outgrow the caches at large B (issue 12:
  2.4x faster than **cp** at B = 1000 and faster than torch autograd at B = 16 .. 1000; see
  :func:`.kernels.build_kernel`).

For completion problems the end-to-end gradient ``grad_scale * A^T r`` is formed sparsely (slices of the observed
entries); for sensing problems with ``torch.addmm``/``torch.mm`` on the measurement operator.

Recording and checks
--------------------
The loop runs uninterrupted between *checks* (every ``check_every`` steps, default 128, and at every recorded step).
A check evaluates every trajectory at the current step: a member whose factors, product or loss is non-finite is
*diverged* (its factors are put back to the last checked finite state and frozen; its recorded points stop at the
last finite record); a member whose loss is at or below ``until_loss`` is *done* (frozen there). Frozen members
are masked out of the update (their end-to-end gradient is multiplied by 0, so they stay exactly put) while the
rest continue. Points are recorded at step 0, every ``record_every`` steps (default: none in between) and at the
end; each member's final state (step ``final_step``) is evaluated once more at the end.

Error estimate
--------------
GD is an exact discrete map, so its only error is floating-point rounding. Each step perturbs each factor entry
by a few ulps of the factor scale (the update and the gradient's dot products: we count ``8 eps`` relative per
step), these perturbations accumulate at most linearly when the map is not expanding (``lr`` below the
stability threshold, the regime GD is used in), and a relative perturbation ``delta`` of every factor moves the
product by at most ``L * delta * prod_j ||W_j||_F``. Hence, at step ``k``,

    product_err = 8 * eps * L * (k + 1) * prod_j ||W_j||_F          (deep matrix; L = depth)
    product_err = 8 * eps * N * (k + 1) * sum_r prod_n ||w_r^n||_2   (CP; N = order)
    loss_err    = loss_scale * sum_i (2 |r_i| a_i product_err + (a_i product_err)^2) + 2 m eps loss

(``a_i`` the l1 norm of measurement i, 1 for completion). This is a deterministic first-order estimate, not a
rigorous bound: it ignores amplification of earlier rounding by an expanding map (unstable ``lr``), which is
what ``status="diverged"`` catches in the extreme.

Measured speed
--------------
See :func:`verify.bench.gd.bench_gd` (called by ``verify bench``) and the report of the commit that added this file.

Modules: :mod:`.kernels` (the elementwise, matmul and CP kernels and their choice), :mod:`.loop` (the batched
loop: checks, freezing, recording, the error estimate; its record :class:`~.loop.BatchResult`), :mod:`.engine`
(:class:`GradientDescent`: options; :meth:`models.engines.base.AbstractEngine.run` is its one entry point, for one
init or a batch).
"""

from __future__ import annotations

from .engine import GradientDescent, resolve_device
from .kernels import KERNELS
from .loop import BatchResult

__all__ = ["BatchResult", "GradientDescent", "KERNELS", "resolve_device"]
