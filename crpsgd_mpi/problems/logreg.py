"""Logistic regression with labels +-1 (dense or sparse features, three regularisers) as a problem: `--model logreg`,
the default and the paper's first experiment."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..config import Config
from ..data import Dataset, Shard, load
from ..registry import Setting
from ..seeding import Stream, rng_for
from .base import Problem, Reduce, Smoothness, register_problem
from .kernels import (
    block_rows,
    dense_minibatch_grads,
    gathered_minibatch_grad,
    gram_apply,
    loss_grad_sums,
    sparse_minibatch_grad,
    stacked_gram_apply,
    stacked_loss_grad_sums,
    uses_compiled,
)
from .lanczos import top_eigenvalue
from .regularizers import make_regularizer

#: Bytes of gathered batch rows per kernel call on the numpy path (workers are taken in chunks of about this
#: much, so the kernel reads what the gather just wrote from cache and memory stays bounded at any N).
GATHER_BYTES = 1 << 22
#: Bytes of shards per stacked evaluation step (both passes over a chunk while it is in cache).
EVAL_BYTES = 1 << 21


def optimum_cache_key(cfg: Config, fingerprint: str, n_workers: int) -> str:
    """What f*, to the last bit, depends on: the data, the regulariser, lambda, the intercept, the storage, the
    solver (the fixed-order L-BFGS of theory.py), the reduction that sums the shards' terms, and the partition into
    shards (the seed and N): each shard's terms are summed in the shard, so another partition may round
    differently (the exact reduction makes only the sum over shards independent of order and placement), and a
    run's f* must not depend on which run filled the cache first."""
    return (f"{fingerprint}|{cfg.regularizer}|{cfg.lam!r}|intercept={cfg.intercept}|{cfg.storage}"
            f"|solver=fixed-order|reduction={cfg.reduction}|partition=seed{cfg.seed},N{n_workers}")


class LogisticRegression(Problem):
    """f(x) = (1/M) sum_i log(1 + exp(-y_i a_i.x)) + r(x) over the workers' shards.

    Dense shards live in one array of k slots of `_slot` rows each (a shard of one row fewer than the largest ends
    with a zero row), so that the in-process backend can run many workers' minibatches and evaluations at once with
    stacked kernels whose per-worker bits are those of one worker alone (what an MPI rank computes)."""

    name = "logreg"
    dtype = np.dtype(np.float64)

    def __init__(self, cfg: Config, n_workers: int, workers: range) -> None:
        self.cfg = cfg
        self.data: Dataset = load(cfg, n_workers, workers)
        self.n_workers = n_workers
        self.reg = make_regularizer(cfg.regularizer, cfg.lam)
        self.dim, self.n_samples, self.data_name = self.data.n_features, self.data.n_samples, self.data.name
        self.shard_sizes = [s.n for s in self.data.shards]
        self.k = len(self.shard_sizes)
        if not self.data.sparse:
            self._X_all, self._y_all, self._slot = _slots(self.data.shards, self.dim)
            self._offsets = np.asarray([i * self._slot for i in range(self.k)], dtype=np.int64)
            self._sizes_arr = np.asarray(self.shard_sizes)
            for shard, off in zip(self.data.shards, self._offsets.tolist()):
                shard.X, shard.y = self._X_all[off:off + shard.n], self._y_all[off:off + shard.n]
        self._batch = _BatchBuffers(self.dim, 0, 0)
        self._rows = np.empty(0, dtype=np.int64)

    def initial_point(self) -> np.ndarray:
        return np.zeros(self.dim)

    # -- minibatch gradients ----------------------------------------------------------------------------
    def gradients(self, models: np.ndarray, batches: np.ndarray, out: np.ndarray) -> None:
        B = batches.shape[1]
        if self.data.sparse:
            for i, shard in enumerate(self.data.shards):
                idx = batches[i]
                sparse_minibatch_grad(shard.X[idx], shard.y[idx], models[i], out[i])
        elif uses_compiled(B, self.dim):
            self._compiled_gradients(models, batches, out)
        else:
            self._numpy_gradients(models, batches, out)

    def _numpy_gradients(self, models: np.ndarray, batches: np.ndarray, out: np.ndarray) -> None:
        """Small batches: workers in chunks of about GATHER_BYTES, each gathered and passed to the numpy kernel."""
        B = batches.shape[1]
        chunk = max(1, min(self.k, GATHER_BYTES // (8 * B * self.dim)))
        buf = self._batch if (self._batch.batch, self._batch.k) == (B, chunk) else self._resize(B, chunk)
        for a in range(0, self.k, chunk):
            b = min(self.k, a + chunk)
            n = (b - a) * B
            np.add(batches[a:b], self._offsets[a:b, None], out=buf.idx[:n].reshape(b - a, B))
            self._X_all.take(buf.idx[:n], axis=0, out=buf.X[:n], mode="clip")  # 'raise' would buffer
            self._y_all.take(buf.idx[:n], out=buf.y[:n], mode="clip")
            dense_minibatch_grads(buf.X3[:b - a], buf.y2[:b - a], models[a:b], out[a:b], buf.work[:b - a])

    def _compiled_gradients(self, models: np.ndarray, batches: np.ndarray, out: np.ndarray) -> None:
        """Large batches: worker by worker, each row read where it lies by the compiled one-pass kernel."""
        B = batches.shape[1]
        if self._rows.size != B:
            self._rows = np.empty(B, dtype=np.int64)
        for i in range(self.k):
            np.add(batches[i], self._offsets[i], out=self._rows)
            gathered_minibatch_grad(self._X_all, self._y_all, self._rows, models[i], out[i])

    def _resize(self, batch: int, chunk: int) -> _BatchBuffers:
        self._batch = _BatchBuffers(self.dim, batch, chunk, self._batch)
        return self._batch

    # -- evaluations -----------------------------------------------------------------------------------
    def loss_sums(self, x: np.ndarray, with_gradient: bool) -> np.ndarray:
        rows = np.empty((self.k, self.dim + 1))
        for a, b in self._shard_chunks():
            if b - a == 1:
                rows[a, 0], rows[a, 1:] = loss_grad_sums(self.data.shards[a].X, self.data.shards[a].y, x)
            else:
                X3 = self._X_all[a * self._slot:b * self._slot].reshape(b - a, self._slot, self.dim)
                y2 = self._y_all[a * self._slot:b * self._slot].reshape(b - a, self._slot)
                rows[a:b, 0], rows[a:b, 1:] = stacked_loss_grad_sums(X3, y2, x, self._sizes_arr[a:b])
        return rows if with_gradient else rows[:, :1].copy()

    def regularizer(self, x: np.ndarray) -> float:
        return self.reg.value(x)

    def add_regularizer_grad(self, x: np.ndarray, out: np.ndarray) -> None:
        self.reg.add_grad(x, out)

    def smoothness(self, reduce: Reduce) -> Smoothness:
        """L <= lambda_max(A^T A)/(4M) + (the regulariser's curvature bound). lambda_max by Lanczos in fixed-order
        arithmetic (problems/lanczos.py) to a relative residual of 1e-10, from a start vector that is the same for
        every seed, each product A^T A v one ordered reduction over all shards (every process runs the same
        iterations in step)."""
        rows = np.empty((self.k, self.dim))
        chunks = self._shard_chunks()

        def gram(v: np.ndarray) -> np.ndarray:
            for a, b in chunks:
                if b - a == 1:
                    rows[a] = gram_apply(self.data.shards[a].X, v)
                else:
                    X3 = self._X_all[a * self._slot:b * self._slot].reshape(b - a, self._slot, self.dim)
                    rows[a:b] = stacked_gram_apply(X3, v)
            return reduce(rows) / self.n_samples

        v0 = rng_for(0, Stream.POWER_ITERATION).standard_normal(self.dim)  # one start for every seed
        top = top_eigenvalue(gram, v0)
        return Smoothness(top.value / 4.0 + self.reg.curvature_bound(), "Lanczos (fixed order)", top.converged,
                          {"L_products": float(top.products)})

    def _shard_chunks(self) -> list[tuple[int, int]]:
        """Consecutive shard ranges for evaluation: single shards where a shard is larger than one block of the
        numpy kernel (or is sparse, or d = 1), else runs of about EVAL_BYTES evaluated together, stacked."""
        if self.data.sparse or self.dim == 1 or self._slot > block_rows(self.dim):
            return [(i, i + 1) for i in range(self.k)]
        per = max(1, EVAL_BYTES // (8 * self._slot * self.dim))
        return [(a, min(self.k, a + per)) for a in range(0, self.k, per)]

    def fingerprint(self) -> str | None:
        return self.data.fingerprint

    def optimum_key(self) -> str | None:
        return _optimum_key(Setting(self.cfg, self.n_workers), lambda: self.data.fingerprint)

    def describe(self) -> str:
        return f"{self.data_name} ({self.n_samples} x {self.dim}, {self.reg.name} lam={self.cfg.lam:g})"


def _optimum_key(setting: Setting, fingerprint: Callable[[], str]) -> str | None:
    """f* is known (cached, else computed by L-BFGS) for the strongly convex l2-regularised problem only."""
    if setting.cfg.regularizer != "l2":
        return None
    return optimum_cache_key(setting.cfg, fingerprint(), setting.n_workers)


@register_problem("logreg", optimum_key=_optimum_key)
def _logreg(setting: Setting) -> Problem:
    """Logistic regression, labels +-1 (--regularizer l2 | nonconvex | none, --lam; the default)."""
    return LogisticRegression(setting.cfg, setting.n_workers, setting.local_workers)


def _slots(shards: list[Shard], d: int) -> tuple[np.ndarray, np.ndarray, int]:
    """All dense shards in one (k * slot, d) array, shard i in rows i*slot.. with slot the largest shard; zero rows
    pad the shorter ones. Shards that already lie so (one shard; equal shards loaded as one matrix) are not copied."""
    slot = max(s.n for s in shards)
    parts = [s.X for s in shards if isinstance(s.X, np.ndarray)]
    if len(parts) < len(shards):
        raise TypeError("only dense shards are laid out in slots")
    X = _consecutive(parts, slot)
    y = _consecutive([s.y for s in shards], slot)
    if X is not None and y is not None:
        return X, y, slot
    X, y = np.empty((slot * len(shards), d)), np.ones(slot * len(shards))
    for i, (s, part) in enumerate(zip(shards, parts, strict=True)):
        X[i * slot:i * slot + s.n] = part
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

    _Xs: np.ndarray
    _idxs: np.ndarray
    _ys: np.ndarray

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
        self.work = np.empty((k, batch, d))
