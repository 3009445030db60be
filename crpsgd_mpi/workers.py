"""The N workers as an algorithm sees them: minibatch gradients, averaging, evaluation; all counted."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .comm.base import Backend
from .data import Dataset
from .ledger import Ledger
from .problems import Regularizer, dense_minibatch_grads, gram_apply, loss_grad_sums, sparse_minibatch_grad
from .seeding import Stream, rng_for

RoundHook = Callable[[np.ndarray, bool], None]


class Workers:
    """Holds this process's shards and per-worker random streams; speaks to the others via a Backend.

    Arrays of per-worker vectors have shape (k, d): one row per worker simulated by this process
    (k = 1 under MPI, k = N in process). An algorithm written against this class runs unchanged on
    every backend, and the Ledger sees every SFO and every round.
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
        if data.sparse:
            self._X_all = None
        else:
            if self.k == 1:
                self._X_all, self._y_all = data.shards[0].X, data.shards[0].y
            else:  # one array for all local shards (stacked gathers); the shards become views of it
                self._X_all = np.concatenate([s.X for s in data.shards])
                self._y_all = np.concatenate([s.y for s in data.shards])
            self._offsets = [int(o) for o in np.cumsum([0] + self._sizes[:-1])]
            for shard, off in zip(data.shards, self._offsets):
                shard.X, shard.y = self._X_all[off:off + shard.n], self._y_all[off:off + shard.n]
        self._models = np.empty((self.k, self.d))
        self._grads = np.empty((self.k, self.d))
        self._batch = _BatchBuffers(self.k, self.d, 0)

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
        else:
            buf = self._batch if self._batch.batch == batch else self._resize(batch)
            if batch == 1:  # the scalar draw is 4x cheaper and consumes the stream identically
                idx = buf.idx
                for i, rng in enumerate(self._rngs):
                    idx[i] = rng.integers(0, self._sizes[i]) + self._offsets[i]
            else:
                for i, block in enumerate(buf.blocks):
                    block[:] = self._rngs[i].integers(0, self._sizes[i], size=batch)
                    if i:
                        block += self._offsets[i]
            self._X_all.take(buf.idx, axis=0, out=buf.X)
            self._y_all.take(buf.idx, out=buf.y)
            dense_minibatch_grads(buf.X3, buf.y2, models, grads, buf.z)
        self.reg.add_grad(models, grads)
        self.ledger.add_sfo(batch)
        return grads

    def _resize(self, batch: int) -> _BatchBuffers:
        self._batch = _BatchBuffers(self.k, self.d, batch, self._batch)
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
        for i, shard in enumerate(self.data.shards):
            loss, grad = loss_grad_sums(shard.X, shard.y, x)
            rows[i, 0] = loss
            rows[i, 1:] = grad
        total = self.backend.sum(rows)
        grad = total[1:] / self.m_total
        self.reg.add_grad(x, grad)
        return total[0] / self.m_total + self.reg.value(x), grad

    def gram_top_eigenvalue(self, seed: int, iterations: int = 200, rtol: float = 1e-7) -> float:
        """Largest eigenvalue of A^T A / M by power iteration over all shards."""
        v = rng_for(seed, Stream.POWER_ITERATION).standard_normal(self.d)
        v /= np.linalg.norm(v)
        lam = 0.0
        rows = np.empty((self.k, self.d))
        for _ in range(iterations):
            for i, shard in enumerate(self.data.shards):
                rows[i] = gram_apply(shard.X, v)
            w = self.backend.sum(rows) / self.m_total
            new = float(np.linalg.norm(w))
            if new == 0.0:
                return 0.0
            v = w / new
            if abs(new - lam) <= rtol * new:
                return new
            lam = new
        return lam



class _BatchBuffers:
    """Preallocated gather buffers and their views for one batch size (storage grows, never shrinks)."""

    def __init__(self, k: int, d: int, batch: int, previous: _BatchBuffers | None = None) -> None:
        n = k * batch
        if previous is not None and previous._Xs.shape[0] >= n:
            Xs, idxs, ys = previous._Xs, previous._idxs, previous._ys
        else:  # grow geometrically: a growing batch schedule reallocates O(log B) times
            cap = max(n, 2 * previous._Xs.shape[0]) if previous is not None else n
            Xs, idxs, ys = np.empty((cap, d)), np.empty(cap, dtype=np.int64), np.empty(cap)
        self._Xs, self._idxs, self._ys = Xs, idxs, ys
        self.batch = batch
        self.idx, self.X, self.y = idxs[:n], Xs[:n], ys[:n]
        self.X3 = self.X.reshape(k, batch, d)
        self.y2 = self.y.reshape(k, batch)
        self.z = np.empty((k, batch))
        self.blocks = [self.idx[i * batch:(i + 1) * batch] for i in range(k)]
