"""Logistic-regression kernels in fixed-order arithmetic: the order of every sum is set by this code and by the
shapes, never by the CPU, the BLAS build, an array's alignment, the thread count or how many workers are stacked."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp
from scipy.special import expit
from scipy.special import log_expit as _log_expit

Matrix = np.ndarray | sp.csr_matrix

# ---- dense kernels -------------------------------------------------------------------------------------
#
# No BLAS: a BLAS kernel's summation order depends on the build, the CPU it dispatches for, the alignment and the
# threads. Two kernels, each with an order of its own, chosen by (rows, d) alone, so an MPI rank and the in-process
# backend always run the same one:
# - numpy (rows x d < COMPILED_ELEMENTS): elementwise products (exactly rounded, whatever the vector width), a row's
#   margin the pairwise sum of numpy's add.reduce along the row (a fixed tree of 8 accumulators and 128-element
#   blocks at every SIMD level), the gradient the sum over blocks of block_rows(d) rows, in row order within a block
#   (add.reduce down axis 0 adds row after row) and block after block;
# - compiled (larger): problems/compiled.py, one pass over X (what keeps a batch in DRAM near the read rate).

#: Rows x features of X per block of the numpy kernel: its temporaries (1 MiB) stay in cache.
BLOCK_ELEMENTS = 1 << 17
#: Rows x features of a worker's batch (or a shard) from which the compiled one-pass kernel runs.
COMPILED_ELEMENTS = 1 << 20
#: What a compiled pass makes of each row's margin z = a.v: the minibatch coefficient -y expit(-y z) / B, the loss
#: coefficient (y z kept for the loss), or z itself (a Gram product). Here, so that numba loads only when used.
MINIBATCH, LOSS, GRAM = 0, 1, 2


def loss_terms(yz: np.ndarray) -> np.ndarray:
    """log(1 + exp(-m)) of each margin m = y a.x by scipy's scalar log_expit (the C library's exp and log1p, one call
    per value), never numpy's SIMD transcendental loops, whose AVX-512 versions round differently."""
    out = _log_expit(yz)
    return np.negative(out, out=out)


def uses_compiled(rows: int, d: int) -> bool:
    """True when `rows` x `d` of X go to the compiled kernel (the same rule on every backend)."""
    return rows * d >= COMPILED_ELEMENTS


def block_rows(d: int) -> int:
    """Rows per block of the numpy kernel."""
    return max(1, BLOCK_ELEMENTS // d)


def _compiled(X: np.ndarray, y: np.ndarray, v: np.ndarray, mode: int, scale: float, out: np.ndarray,
              rows: np.ndarray | None = None, margins: np.ndarray | None = None) -> None:
    from . import compiled

    idx = rows if rows is not None else np.empty(0, dtype=np.int64)
    compiled.one_pass(X, idx, rows is not None, y, np.ascontiguousarray(v, dtype=np.float64), mode, scale, out,
                      margins if margins is not None else np.empty(0))


def _margins(X: np.ndarray, v: np.ndarray, out: np.ndarray, work: np.ndarray) -> None:
    """out[..., i] = X[..., i, :] . v[..., :] (v broadcast over rows) by the pairwise row sums; `work` like X."""
    np.multiply(X, v, out=work)
    np.add.reduce(work, axis=-1, out=out)


def _xtc(X: np.ndarray, c: np.ndarray, out: np.ndarray, work: np.ndarray) -> None:
    """out[..., :] = sum over the rows i, in order, of c[..., i] X[..., i, :] (one block)."""
    np.multiply(X, c[..., None], out=work)
    np.add.reduce(work, axis=-2, out=out)


def _minibatch_coef(z: np.ndarray, y: np.ndarray, batch: int) -> None:
    """z (margins) -> c = -y expit(-y z) / B in place."""
    z *= y
    np.negative(z, out=z)
    expit(z, out=z)
    z *= y
    z *= -1.0 / batch


def _blocked(X: np.ndarray, y: np.ndarray, v: np.ndarray, coef: Callable[[np.ndarray, np.ndarray, int], None],
             out: np.ndarray) -> None:
    """out = sum over blocks of block_rows(d) rows, in order, of X_blk^T c_blk, c_blk = coef(margins, y_blk, lo)
    (the numpy kernel's order for one worker or shard of any size)."""
    n, d = X.shape
    R = min(n, block_rows(d))
    work, z, part = np.empty((R, d)), np.empty(R), np.empty(d)
    for lo in range(0, n, R):
        hi = min(n, lo + R)
        m = hi - lo
        _margins(X[lo:hi], v, z[:m], work[:m])
        coef(z[:m], y[lo:hi], lo)
        _xtc(X[lo:hi], z[:m], part if lo else out, work[:m])
        if lo:
            out += part


def dense_minibatch_grads(Xb: np.ndarray, yb: np.ndarray, models: np.ndarray, out: np.ndarray,
                          work: np.ndarray | None = None) -> None:
    """Mean data-gradient of each worker's batch: Xb (k,B,d), yb (k,B), models (k,d) -> out (k,d); `work` (k,B,d)
    is scratch space for the numpy kernel.

    A worker's bits depend only on its own batch and model (not on k, alignment or threads): batches within one
    block run stacked, larger ones worker by worker, the largest through the compiled kernel."""
    k, B, d = Xb.shape
    if uses_compiled(B, d):
        for i in range(k):
            _compiled(Xb[i], yb[i], models[i], MINIBATCH, 1.0 / B, out[i])
        return
    if B > block_rows(d):
        for i in range(k):
            _blocked(Xb[i], yb[i], models[i], lambda z, y, lo: _minibatch_coef(z, y, B), out[i])
        return
    work = np.empty(Xb.shape) if work is None else work
    z = np.empty((k, B))
    _margins(Xb, models[:, None, :], z, work)
    _minibatch_coef(z, yb, B)
    _xtc(Xb, z, out, work)


def gathered_minibatch_grad(X: np.ndarray, y: np.ndarray, rows: np.ndarray, model: np.ndarray,
                            out: np.ndarray) -> None:
    """Mean data-gradient of the batch X[rows], y[rows] into out (d,) by the compiled kernel (`uses_compiled`
    true), reading the rows where they lie: the bits of `dense_minibatch_grads` on the gathered batch."""
    _compiled(X, y, model, MINIBATCH, 1.0 / rows.size, out, rows=rows)


def loss_grad_sums(X: Matrix, y: np.ndarray, x: np.ndarray) -> tuple[float, np.ndarray]:
    """Sum over the rows of log(1 + exp(-y a.x)) and of its gradient (no regulariser, no 1/M); the loss is the
    pairwise sum of the rows' terms."""
    if not isinstance(X, np.ndarray):
        yz = y * (X @ x)
        return float(np.add.reduce(loss_terms(yz))), np.asarray(X.T @ (-y * expit(-yz))).ravel()
    n, d = X.shape
    yz, grad = np.empty(n), np.empty(d)
    if uses_compiled(n, d):
        _compiled(X, y, x, LOSS, 1.0, grad, margins=yz)
    else:
        def coef(z: np.ndarray, yb: np.ndarray, lo: int) -> None:
            z *= yb
            yz[lo:lo + z.size] = z
            np.negative(z, out=z)
            expit(z, out=z)
            z *= yb
            np.negative(z, out=z)

        _blocked(X, y, x, coef, grad)
    return float(np.add.reduce(loss_terms(yz))), grad


def stacked_loss_grad_sums(X3: np.ndarray, y2: np.ndarray, x: np.ndarray,
                           sizes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`loss_grad_sums` of S dense shards X3 (S, n, d) of one block at most (n <= block_rows(d)) at once; with
    `sizes`, shard s is the first sizes[s] rows of X3[s] and the rows after it are zero. The same bits per shard
    as S separate calls: each row's margin is computed alone, each shard's loss is the pairwise sum over its own
    rows, and a zero row (with a zero coefficient) adds an exact zero at the end of its shard's gradient sum."""
    S, n, d = X3.shape
    work, yz = np.empty(X3.shape), np.empty((S, n))
    _margins(X3, x, yz, work)
    yz *= y2
    terms = loss_terms(yz)
    coef = -y2 * expit(-yz)
    grad = np.empty((S, d))
    if sizes is None or bool(np.all(sizes == n)):
        _xtc(X3, coef, grad, work)
        return np.add.reduce(terms, axis=1), grad
    coef[np.arange(n) >= sizes[:, None]] = 0.0
    loss = np.empty(S)
    for m in np.unique(sizes).tolist():
        sel = np.flatnonzero(sizes == m)
        loss[sel] = np.add.reduce(terms[sel, :m], axis=1)
    _xtc(X3, coef, grad, work)
    return loss, grad


def gram_apply(X: Matrix, v: np.ndarray) -> np.ndarray:
    """X^T (X v): the shard's Gram matrix (unscaled) applied to v, one Lanczos product for L; dense X by the same two
    kernels as `loss_grad_sums`."""
    if not isinstance(X, np.ndarray):
        return np.asarray(X.T @ (X @ v)).ravel()
    out = np.empty(X.shape[1])
    if uses_compiled(*X.shape):
        _compiled(X, X[:0, 0], v, GRAM, 1.0, out)
    else:
        _blocked(X, X[:0, 0], v, lambda z, y, lo: None, out)
    return out


def stacked_gram_apply(X3: np.ndarray, v: np.ndarray) -> np.ndarray:
    """`gram_apply` of S dense shards (S, n, d) of one block at most at once, the same bits per shard (zero padding
    rows add exact zeros at the end of a shard's sums)."""
    S, n, d = X3.shape
    work, z, out = np.empty(X3.shape), np.empty((S, n)), np.empty((S, d))
    _margins(X3, v, z, work)
    _xtc(X3, z, out, work)
    return out


def sparse_minibatch_grad(Xb: sp.csr_matrix, yb: np.ndarray, model: np.ndarray, out: np.ndarray) -> None:
    """Mean data-gradient of one worker's sparse batch Xb (B,d) into out (d,)."""
    yz = yb * (Xb @ model)
    coef = (-1.0 / yb.size) * yb * expit(-yz)
    out[:] = Xb.T @ coef
