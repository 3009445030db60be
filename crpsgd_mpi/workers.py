"""The N workers as an algorithm sees them: minibatch gradients, averaging, evaluation; all counted."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .comm.base import Backend
from .data import Dataset, Shard
from .ledger import Ledger
from .memory import aligned_empty, is_aligned
from .problems import (
    Regularizer,
    dense_minibatch_grads,
    gathered_minibatch_grad,
    gram_apply,
    loss_grad_sums,
    one_blas_thread,
    sparse_minibatch_grad,
    stacked_gram_apply,
    stacked_loss_grad_sums,
    uses_blas,
)
from .seeding import Stream, rng_for

RoundHook = Callable[[np.ndarray, bool], None]


#: Bytes of gathered batch rows per kernel call on the einsum path (workers are taken in chunks of about this
#: much, so the kernel reads what the gather just wrote from cache and memory stays bounded at any N).
GATHER_BYTES = 1 << 22
#: Bytes of shards per stacked evaluation step (both einsum passes over a chunk while it is in cache).
EVAL_BYTES = 1 << 21


class Workers:
    """Holds this process's shards and per-worker random streams; speaks to the others via a Backend.

    Arrays of per-worker vectors have shape (k, d): one row per worker simulated by this process
    (k = 1 under MPI, k = N in process). An algorithm written against this class runs unchanged on
    every backend, and the Ledger sees every SFO and every round.

    Dense shards live in one array of k slots of `_slot` rows each (a shard of one row fewer than the largest
    ends with a zero row), so that evaluations can run over many small shards at once with stacked kernels
    whose per-shard bits are those of one shard alone (what an MPI rank computes).
    """

    def __init__(self, backend: Backend, data: Dataset, reg: Regularizer, seed: int, ledger: Ledger) -> None:
        self.backend = backend
        self.data = data
        self.reg = reg
        self.ledger = ledger
        self.n = backend.n_workers
        self.dtype = np.dtype(np.float64)
        self.k = len(data.shards)
        self.d = data.n_features
        self.m_total = data.n_samples
        self.on_round: RoundHook | None = None
        self._rngs = [rng_for(seed, Stream.SAMPLING, s.worker) for s in data.shards]
        self._sizes = [s.n for s in data.shards]
        if not data.sparse:
            self._X_all, self._y_all, self._slot = _slots(data.shards, self.d)
            self._offsets = [i * self._slot for i in range(self.k)]
            self._sizes_arr = np.asarray(self._sizes)
            for shard, off in zip(data.shards, self._offsets):
                shard.X, shard.y = self._X_all[off:off + shard.n], self._y_all[off:off + shard.n]
        self._models = np.empty((self.k, self.d))
        self._grads = np.empty((self.k, self.d))
        self._batch = _BatchBuffers(self.d, 0, 0)
        self._draws = np.empty(0, dtype=np.int64)

    # -- stochastic first-order oracle ----------------------------------------------------------
    def gradients(self, x: np.ndarray, batch: int) -> np.ndarray:
        """Each local worker's mean stochastic gradient of f over `batch` fresh samples drawn i.i.d.
        (with replacement) from its own shard; x is shared (d,) or per worker (k, d). Returns (k, d),
        valid until the next call. Costs `batch` SFO per worker."""
        models = self._models
        models[:] = x
        grads = self._grads
        if self.data.sparse:
            for i, shard in enumerate(self.data.shards):
                idx = self._rngs[i].integers(0, self._sizes[i], size=batch)
                sparse_minibatch_grad(shard.X[idx], shard.y[idx], models[i], grads[i])
        elif uses_blas(batch, self.d):
            self._blas_gradients(batch)
        else:
            self._einsum_gradients(batch)
        self.reg.add_grad(models, grads)
        self.ledger.add_sfo(batch)
        return grads

    def _draw(self, i: int, batch: int, out: np.ndarray) -> None:
        """Worker i's next `batch` row indices (into the stacked array) into out."""
        if batch == 1:  # the scalar draw is 4x cheaper and consumes the stream identically
            out[0] = self._rngs[i].integers(0, self._sizes[i]) + self._offsets[i]
        else:
            np.add(self._rngs[i].integers(0, self._sizes[i], size=batch), self._offsets[i], out=out)

    def _draw_chunk(self, a: int, b: int, batch: int, buf: _BatchBuffers) -> None:
        """Workers a..b-1 draw their next batches into buf.idx (the loop of `_draw`, inlined: it runs k times a round)."""
        rngs, sizes, offsets = self._rngs, self._sizes, self._offsets
        if batch == 1:
            idx = buf.idx
            for j, i in enumerate(range(a, b)):
                idx[j] = rngs[i].integers(0, sizes[i]) + offsets[i]
            return
        for i, block in zip(range(a, b), buf.blocks):
            np.add(rngs[i].integers(0, sizes[i], size=batch), offsets[i], out=block)

    def _einsum_gradients(self, batch: int) -> None:
        """Small batches: workers in chunks of about GATHER_BYTES, each gathered and passed to one stacked einsum."""
        chunk = max(1, min(self.k, GATHER_BYTES // (8 * batch * self.d)))
        buf = self._batch if (self._batch.batch, self._batch.k) == (batch, chunk) else self._resize(batch, chunk)
        for a in range(0, self.k, chunk):
            b = min(self.k, a + chunk)
            self._draw_chunk(a, b, batch, buf)
            n = (b - a) * batch
            self._X_all.take(buf.idx[:n], axis=0, out=buf.X[:n], mode="clip")  # 'raise' would buffer
            self._y_all.take(buf.idx[:n], out=buf.y[:n], mode="clip")
            dense_minibatch_grads(buf.X3[:b - a], buf.y2[:b - a], self._models[a:b], self._grads[a:b], buf.z[:b - a])

    def _blas_gradients(self, batch: int) -> None:
        """Large batches: worker by worker, gathered block by block into cache by the blocked BLAS kernel."""
        if self._draws.size != batch:
            self._draws = np.empty(batch, dtype=np.int64)
        with one_blas_thread():
            for i in range(self.k):
                self._draw(i, batch, self._draws)
                gathered_minibatch_grad(self._X_all, self._y_all, self._draws, self._models[i], self._grads[i])

    def _resize(self, batch: int, chunk: int) -> _BatchBuffers:
        self._batch = _BatchBuffers(self.d, batch, chunk, self._batch)
        return self._batch

    # -- communication ---------------------------------------------------------------------------
    def average(self, rows: np.ndarray) -> np.ndarray:
        """Mean over all N workers of their rows (k, d): one communication round of d floats.
        Returns (d,), identical on every worker, valid until the next call."""
        out = self.backend.mean(rows)
        self.ledger.add_round(rows.shape[1] * rows.itemsize)
        return out

    def end_round(self, x: np.ndarray, stage_end: bool = False) -> None:
        """The algorithm's consensus iterate after the round just counted (for evaluation and checks)."""
        if self.on_round is not None:
            self.on_round(x, stage_end)

    def set_stage(self, stage: int) -> None:
        """Label the following rounds with an outer-loop index (Catalyst's k; 0 otherwise)."""
        self.ledger.stage = stage

    # -- exact full-data quantities (not counted as SFO or rounds) ---------------------------------
    def objective(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """f(x) and grad f(x) of the full objective, reduced over all shards in worker order."""
        rows = np.empty((self.k, self.d + 1))
        for a, b in self._shard_chunks():
            if b - a == 1:
                rows[a, 0], rows[a, 1:] = loss_grad_sums(self.data.shards[a].X, self.data.shards[a].y, x)
            else:
                self._stacked_loss_grads(a, b, x, rows[a:b])
        total = self.backend.sum(rows)
        grad = total[1:] / self.m_total
        self.reg.add_grad(x, grad)
        return total[0] / self.m_total + self.reg.value(x), grad

    def _stacked_loss_grads(self, a: int, b: int, x: np.ndarray, out: np.ndarray) -> None:
        """loss_grad_sums of shards a..b-1 at once (einsum kernel): padding rows get a zero coefficient and
        add exact zeros to the gradient; each shard's loss is summed over its own rows only."""
        X3 = self._X_all[a * self._slot:b * self._slot].reshape(b - a, self._slot, self.d)
        y2 = self._y_all[a * self._slot:b * self._slot].reshape(b - a, self._slot)
        out[:, 0], out[:, 1:] = stacked_loss_grad_sums(X3, y2, x, self._sizes_arr[a:b])

    def gram_top_eigenvalue(self, seed: int, iterations: int = 200, rtol: float = 1e-7) -> float:
        """Largest eigenvalue of A^T A / M by power iteration over all shards."""
        v = rng_for(seed, Stream.POWER_ITERATION).standard_normal(self.d)
        v /= np.linalg.norm(v)
        lam = 0.0
        rows = np.empty((self.k, self.d))
        chunks = self._shard_chunks()
        for _ in range(iterations):
            for a, b in chunks:
                if b - a == 1:
                    rows[a] = gram_apply(self.data.shards[a].X, v)
                else:
                    X3 = self._X_all[a * self._slot:b * self._slot].reshape(b - a, self._slot, self.d)
                    rows[a:b] = stacked_gram_apply(X3, v)
            w = self.backend.sum(rows) / self.m_total
            new = float(np.linalg.norm(w))
            if new == 0.0:
                return 0.0
            v = w / new
            if abs(new - lam) <= rtol * new:
                return new
            lam = new
        return lam

    def _shard_chunks(self) -> list[tuple[int, int]]:
        """Consecutive shard ranges for evaluation: single shards where a shard goes to the blocked kernel (or is
        sparse, or d = 1), else runs of about EVAL_BYTES evaluated together by the stacked einsum kernel."""
        if self.data.sparse or self.d == 1 or uses_blas(self._slot, self.d):
            return [(i, i + 1) for i in range(self.k)]
        per = max(1, EVAL_BYTES // (8 * self._slot * self.d))
        return [(a, min(self.k, a + per)) for a in range(0, self.k, per)]


def _slots(shards: list[Shard], d: int) -> tuple[np.ndarray, np.ndarray, int]:
    """All dense shards in one (k * slot, d) array, shard i in rows i*slot..; zero rows pad the shorter ones. slot
    is the largest shard, rounded up to a multiple of 8 when shards go to the blocked BLAS kernel, so that in an
    aligned array every shard starts on a 64-byte boundary (BLAS then reads it in place, not block by block through
    a copy). Shards that already lie so (one shard; equal shards loaded as one matrix) are not copied."""
    slot = max(s.n for s in shards)
    large = len(shards) > 1 and uses_blas(slot, d)
    if large:
        slot = -(-slot // 8) * 8
    X = _consecutive([s.X for s in shards], slot)
    y = _consecutive([s.y for s in shards], slot)
    if X is not None and y is not None and not (large and not is_aligned(X)):
        return X, y, slot
    X, y = aligned_empty((slot * len(shards), d)), np.ones(slot * len(shards))
    for i, s in enumerate(shards):
        X[i * slot:i * slot + s.n] = s.X
        X[i * slot + s.n:(i + 1) * slot] = 0.0
        y[i * slot:i * slot + s.n] = s.y
    return X, y, slot


def _consecutive(parts: list[np.ndarray], rows: int) -> np.ndarray | None:
    """The parts as one array (a view, no copy) when each has `rows` rows and they lie one after another in one
    C-contiguous buffer (or there is one part), else None."""
    first = parts[0]
    if len(parts) == 1:
        return first
    base = first.base
    if not isinstance(base, np.ndarray) or not base.flags.c_contiguous or not first.flags.c_contiguous:
        return None
    shape, step, addr = (rows, *first.shape[1:]), first.strides[0], first.ctypes.data
    for i, part in enumerate(parts):
        if part.base is not base or part.shape != shape or part.ctypes.data != addr + i * rows * step:
            return None
    offset = addr - base.ctypes.data
    if offset < 0 or offset + len(parts) * rows * step > base.nbytes:
        return None
    return np.ndarray((len(parts) * rows, *first.shape[1:]), dtype=first.dtype, buffer=base, offset=offset,
                      strides=first.strides)


class _BatchBuffers:
    """Preallocated gather buffers and their views for `k` workers' batches of one size (storage grows, never
    shrinks)."""

    def __init__(self, d: int, batch: int, k: int, previous: _BatchBuffers | None = None) -> None:
        n = k * batch
        if previous is not None and previous._Xs.shape[0] >= n:
            Xs, idxs, ys = previous._Xs, previous._idxs, previous._ys
        else:  # grow geometrically: a growing batch schedule reallocates O(log B) times
            cap = max(n, 2 * previous._Xs.shape[0]) if previous is not None else n
            Xs, idxs, ys = np.empty((cap, d)), np.empty(cap, dtype=np.int64), np.empty(cap)
        self._Xs, self._idxs, self._ys = Xs, idxs, ys
        self.batch, self.k = batch, k
        self.idx, self.X, self.y = idxs[:n], Xs[:n], ys[:n]
        self.X3 = self.X.reshape(k, batch, d)
        self.y2 = self.y.reshape(k, batch)
        self.z = np.empty((k, batch))
        self.blocks = [self.idx[i * batch:(i + 1) * batch] for i in range(k)]
