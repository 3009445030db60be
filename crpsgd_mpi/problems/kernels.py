"""Logistic-regression kernels: stable loss and gradient sums, minibatch gradients (einsum for small work, blocked
aligned BLAS for large), dense and sparse, with bits that depend neither on stacking nor on alignment nor on threads."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import scipy.sparse as sp
from scipy.special import expit

from ..memory import aligned_empty, is_aligned

Matrix = np.ndarray | sp.csr_matrix


# ---- dense kernels -------------------------------------------------------------------------------------
#
# Two kernels compute the same sums. einsum (small work): its result for a row or a worker does not depend on how
# many are stacked, on alignment or on threads. Blocked BLAS (large work, >= LARGE_ELEMENTS of X per worker or
# shard): rows in blocks of block_rows(d) from the top, each block read by one-threaded BLAS from a 64-byte-aligned
# address (gathered or copied into scratch when it is not already there), both products while the block is in
# cache, block results summed in block order. Which kernel runs depends only on (rows, d), so an MPI rank and the
# in-process backend always choose the same one and compute the same bits.

#: Rows x features at which a worker's batch (or a shard) switches from einsum to blocked BLAS.
LARGE_ELEMENTS = 1 << 17
#: Target bytes of X in one block: well inside L2, so the second product reads it from cache.
BLOCK_BYTES = 1 << 19


def uses_blas(rows: int, d: int) -> bool:
    """True when `rows` x `d` of X go to the blocked BLAS kernel (the same rule on every backend)."""
    return rows * d >= LARGE_ELEMENTS


def block_rows(d: int) -> int:
    """Rows per block of the blocked kernel: a multiple of 8 (so blocks of an aligned array stay aligned)."""
    return max(8, BLOCK_BYTES // (8 * d) // 8 * 8)


class BlockScratch:
    """Aligned buffers of the blocked kernel for d features: one block of X and y, the model, z and a block
    gradient. Kept between calls (fresh large buffers page-fault on every call)."""

    def __init__(self, d: int) -> None:
        self.d, self.rows = d, block_rows(d)
        self.X = aligned_empty((self.rows, d))
        self.y = aligned_empty(self.rows)
        self.z = aligned_empty(self.rows)
        self.v = aligned_empty(d)
        self.g = aligned_empty(d)


_SCRATCH: dict[int, BlockScratch] = {}


def block_scratch(d: int) -> BlockScratch:
    """This process's scratch for d features (a few MB at most per d)."""
    s = _SCRATCH.get(d)
    if s is None:
        if len(_SCRATCH) >= 4:
            _SCRATCH.clear()
        s = _SCRATCH[d] = BlockScratch(d)
    return s


_BLAS: list[object] = []


def _blas_libraries() -> object:
    """threadpoolctl's controller of the loaded BLAS libraries (found once)."""
    if not _BLAS:
        from threadpoolctl import ThreadpoolController

        _BLAS.append(ThreadpoolController().select(user_api="blas"))
    return _BLAS[0]


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """BLAS limited to one thread inside (a threaded gemv may split its sums differently): a no-op when it already
    runs one (crpsgd_mpi.threads sets that before numpy loads)."""
    ctl = _blas_libraries()
    if all(lib.num_threads == 1 for lib in ctl.lib_controllers):  # type: ignore[attr-defined]
        yield
        return
    with ctl.limit(limits=1):  # type: ignore[attr-defined]
        yield


#: Turns z = X_blk v (in place) into the block's coefficients c, given the block's labels; BLAS then adds X_blk^T c.
Coef = Callable[[np.ndarray, np.ndarray, int], None]


def blocked_xtc(X: np.ndarray, y: np.ndarray, v: np.ndarray, coef: Coef, out: np.ndarray,
                rows: np.ndarray | None = None) -> None:
    """out = sum over blocks of X_blk^T coef(X_blk v): the blocked BLAS kernel over the rows of X (or X[rows],
    gathered block by block), blocks summed in order. BLAS reads each block at a 64-byte-aligned address: X's own
    rows when X is aligned (its blocks then are too: block_rows is a multiple of 8), else a copy (or the gather)
    in the scratch: the same values at the same alignment either way. Call it under `one_blas_thread`."""
    n = X.shape[0] if rows is None else rows.size
    s = block_scratch(X.shape[1])
    np.copyto(s.v, v)
    direct = rows is None and is_aligned(X)
    R = s.rows
    for lo in range(0, n, R):
        hi = min(n, lo + R)
        blk, yb, z = (s.X, s.y, s.z) if hi - lo == R else (s.X[:hi - lo], s.y[:hi - lo], s.z[:hi - lo])
        if direct:
            blk, yb = X[lo:hi], y[lo:hi]
        elif rows is None:
            np.copyto(blk, X[lo:hi])
            yb = y[lo:hi]
        else:
            X.take(rows[lo:hi], axis=0, out=blk, mode="clip")  # 'raise' would buffer; the indices are valid
            y.take(rows[lo:hi], out=yb, mode="clip")
        np.matmul(blk, s.v, out=z)
        coef(z, yb, lo)
        np.matmul(z, blk, out=s.g)
        if lo:
            np.add(out, s.g, out=out)
        else:
            np.copyto(out, s.g)


def _minibatch_coef(batch: int) -> Coef:
    """c = -y expit(-y z) / B, the same operations as the einsum kernel."""
    def coef(z: np.ndarray, y: np.ndarray, lo: int) -> None:
        z *= y
        np.negative(z, out=z)
        expit(z, out=z)
        z *= y
        z *= -1.0 / batch
    return coef


def loss_grad_sums(X: Matrix, y: np.ndarray, x: np.ndarray) -> tuple[float, np.ndarray]:
    """Sum over the rows of log(1 + exp(-y a.x)) and of its gradient (no regulariser, no 1/M). Dense X: einsum,
    or blocked BLAS when `uses_blas` (see above); either way the bits do not depend on alignment or threads."""
    if not isinstance(X, np.ndarray):
        yz = y * (X @ x)
        return float(np.sum(np.logaddexp(0.0, -yz))), np.asarray(X.T @ (-y * expit(-yz))).ravel()
    if not uses_blas(*X.shape):
        loss, grad = stacked_loss_grad_sums(X[None], y[None], x)
        return float(loss[0]), grad[0]
    yz = np.empty(X.shape[0])

    def coef(z: np.ndarray, yb: np.ndarray, lo: int) -> None:
        z *= yb
        yz[lo:lo + z.size] = z
        np.negative(z, out=z)
        expit(z, out=z)
        z *= yb
        np.negative(z, out=z)

    grad = np.empty(X.shape[1])
    with one_blas_thread():
        blocked_xtc(X, y, x, coef, grad)
    return float(np.sum(np.logaddexp(0.0, -yz))), grad


def stacked_loss_grad_sums(X3: np.ndarray, y2: np.ndarray, x: np.ndarray,
                           sizes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`loss_grad_sums` (einsum kernel) of S dense shards X3 (S, n, d) at once; with `sizes`, shard s is the first
    sizes[s] rows of X3[s] and the rows after it are zero. The same bits per shard as S separate calls: each row's
    margin is computed alone, each shard's loss is the pairwise sum over its own rows, and a zero row (with a zero
    coefficient) adds an exact zero at the end of its shard's gradient sum (einsum accumulates rows in order)."""
    S, n, d = X3.shape
    yz = np.einsum("wbj,wj->wb", X3, np.broadcast_to(x, (S, d)))
    yz *= y2
    terms = np.logaddexp(0.0, -yz)
    coef = -y2 * expit(-yz)
    if sizes is None or bool(np.all(sizes == n)):
        return np.add.reduce(terms, axis=1), np.einsum("wbj,wb->wj", X3, coef)
    coef[np.arange(n) >= sizes[:, None]] = 0.0
    loss = np.empty(S)
    for m in np.unique(sizes).tolist():
        sel = np.flatnonzero(sizes == m)
        loss[sel] = np.add.reduce(terms[sel, :m], axis=1)
    return loss, np.einsum("wbj,wb->wj", X3, coef)


def gram_apply(X: Matrix, v: np.ndarray) -> np.ndarray:
    """X^T (X v): the shard's Gram matrix (unscaled) applied to v, one Lanczos product for L; dense X by the same two
    kernels as `loss_grad_sums`."""
    if not isinstance(X, np.ndarray):
        return np.asarray(X.T @ (X @ v)).ravel()
    if not uses_blas(*X.shape):
        return stacked_gram_apply(X[None], v)[0]
    out = np.empty(X.shape[1])
    with one_blas_thread():
        blocked_xtc(X, X[:0, 0], v, _identity_coef, out)
    return out


def _identity_coef(z: np.ndarray, y: np.ndarray, lo: int) -> None:
    return None


def stacked_gram_apply(X3: np.ndarray, v: np.ndarray) -> np.ndarray:
    """`gram_apply` (einsum kernel) of S dense shards (S, n, d) at once, the same bits per shard (zero padding rows
    add exact zeros at the end of a shard's sums)."""
    S, _, d = X3.shape
    return np.einsum("wbj,wb->wj", X3, np.einsum("wbj,wj->wb", X3, np.broadcast_to(v, (S, d))))


def dense_minibatch_grads(Xb: np.ndarray, yb: np.ndarray, models: np.ndarray, out: np.ndarray,
                          work: np.ndarray | None = None) -> None:
    """Mean data-gradient of each worker's batch: Xb (k,B,d), yb (k,B), models (k,d) -> out (k,d); `work` (k,B)
    is scratch space for the einsum kernel.

    Small batches (`uses_blas` false): one einsum over all k workers, whose result for one worker does not depend
    on how many are stacked with it. Large ones: the blocked BLAS kernel, worker by worker. Either way a worker's
    bits depend only on its own batch and model: the in-process backend is bit-identical to MPI.
    """
    k, B, d = Xb.shape
    if uses_blas(B, d):
        coef = _minibatch_coef(B)
        with one_blas_thread():
            for i in range(k):
                blocked_xtc(Xb[i], yb[i], models[i], coef, out[i])
        return
    z = np.einsum("wbj,wj->wb", Xb, models, out=work)
    z *= yb
    np.negative(z, out=z)
    expit(z, out=z)
    z *= yb
    z *= -1.0 / B
    np.einsum("wbj,wb->wj", Xb, z, out=out)


def gathered_minibatch_grad(X: np.ndarray, y: np.ndarray, rows: np.ndarray, model: np.ndarray,
                            out: np.ndarray) -> None:
    """Mean data-gradient of the batch X[rows], y[rows] (blocked BLAS kernel, `uses_blas` true) into out (d,),
    gathering block by block into cache: the bits of `dense_minibatch_grads` on the gathered batch."""
    with one_blas_thread():
        blocked_xtc(X, y, model, _minibatch_coef(rows.size), out, rows)


def sparse_minibatch_grad(Xb: sp.csr_matrix, yb: np.ndarray, model: np.ndarray, out: np.ndarray) -> None:
    """Mean data-gradient of one worker's sparse batch Xb (B,d) into out (d,)."""
    yz = yb * (Xb @ model)
    coef = (-1.0 / yb.size) * yb * expit(-yz)
    out[:] = Xb.T @ coef
