"""Open the source a configuration names, shard it with the seeded permutation, load this process's shards."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from ..config import Config
from ..errors import InputError
from ..registry import DATASETS, Setting
from ..seeding import Stream, rng_for
from .base import Dataset, Shard, Source, binary_labels, check_finite, check_source, to_storage
from .files import HDF5_SUFFIXES, HDF5Source, LibsvmSource, hdf5_inputs


def open_source(cfg: Config) -> Source:
    """The Source named by `cfg.dataset`: a registered name ('name' or 'name:ARGUMENT'), else a file path."""
    name, _, arg = cfg.dataset.partition(":")
    if name in DATASETS:
        return DATASETS.build(name, Setting(cfg, argument=arg or None), cfg.dataset)
    if cfg.dataset.lower().endswith(HDF5_SUFFIXES):
        return HDF5Source(cfg.dataset)
    if not Path(cfg.dataset).exists():
        raise InputError("dataset", cfg.dataset, f"no such file, and not a registered data set ({', '.join(DATASETS.names())})")
    return LibsvmSource(cfg.dataset)


def input_places(cfg: Config) -> list[Path]:
    """The files or folders the data set of `cfg` reads, without opening it: a registered data set's answer (its
    `inputs`; else the argument after 'name:', if any), else the file and, for HDF5, the files it links to."""
    name, _, arg = cfg.dataset.partition(":")
    if name in DATASETS:
        default = lambda setting: [Path(arg)] if arg else []  # noqa: E731
        return list(DATASETS.answer(name, "inputs", default)(Setting(cfg, argument=arg or None)))
    if cfg.dataset.lower().endswith(HDF5_SUFFIXES):
        return [Path(cfg.dataset), *hdf5_inputs(cfg.dataset)]
    return [Path(cfg.dataset)]


def shard_bounds(n_rows: int, n_workers: int) -> np.ndarray:
    """Offsets of the N contiguous shards of the shuffled rows (sizes differ by at most one)."""
    return np.array([(w * n_rows) // n_workers for w in range(n_workers + 1)], dtype=np.int64)


def shuffle(n_rows: int, seed: int) -> np.ndarray:
    """The seeded permutation of all rows (independent of N)."""
    return rng_for(seed, Stream.SHUFFLE).permutation(n_rows)


def load(cfg: Config, n_workers: int, workers: Sequence[int]) -> Dataset:
    """Load the shards of `workers` (this process's workers) out of N, validating the data. The source is asked
    once for all of them (so e.g. each synthetic block is generated once); the shards are consecutive row slices
    of that one matrix (views where it is dense), each checked as if loaded alone."""
    source = open_source(cfg)
    check_source(cfg, source, n_workers, len(workers))
    n_rows = source.n_rows  # check_source refused more workers than samples
    perm = shuffle(n_rows, cfg.seed)
    bounds = shard_bounds(n_rows, n_workers)
    workers = list(workers)
    sizes = [int(bounds[w + 1] - bounds[w]) for w in workers]
    X_all, y_raw = source.rows(_local_rows(perm, bounds, workers), cfg.intercept)
    offsets = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)]).tolist()
    y_all = _labels(y_raw, offsets, cfg.dataset)
    check_finite(X_all, cfg.dataset)
    shards = []
    for i, w in enumerate(workers):
        X = to_storage(X_all[offsets[i]:offsets[i + 1]], cfg.storage)
        shards.append(Shard(worker=w, X=X, y=y_all[offsets[i]:offsets[i + 1]]))
    n_features = shards[-1].X.shape[1] if shards else 0
    return Dataset(
        name=source.name, n_samples=n_rows, n_features=int(n_features),
        sparse=bool(shards) and sp.issparse(shards[-1].X), shards=shards, fingerprint=source.fingerprint(),
    )


def _local_rows(perm: np.ndarray, bounds: np.ndarray, workers: list[int]) -> np.ndarray:
    """The permuted row indices of `workers`' shards, in the order of `workers` (one slice when consecutive)."""
    if workers and workers == list(range(workers[0], workers[-1] + 1)):
        return perm[bounds[workers[0]]:bounds[workers[-1] + 1]]
    return np.concatenate([perm[bounds[w]:bounds[w + 1]] for w in workers] or [perm[:0]])


def _labels(y_raw: np.ndarray, offsets: list[int], where: str) -> np.ndarray:
    """Labels in {-1, +1}. Each shard's labels are checked on their own (as a process holding only that shard
    would); when the union of all passes, every shard passes, so one check serves them all."""
    try:
        return binary_labels(y_raw, where)
    except InputError:
        parts = [binary_labels(y_raw[a:b], where) for a, b in zip(offsets[:-1], offsets[1:])]
        return np.concatenate(parts) if parts else y_raw
