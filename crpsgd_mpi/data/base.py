"""What every data source provides, the shards a process holds, and the checks every source's rows pass."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from .. import limits
from ..errors import InputError
from ..launchers import processes_on_this_host
from ..limits import MAX_MAGNITUDE
from ..registry import ALGORITHMS
from ..schedules import schedule_bound

if TYPE_CHECKING:
    from ..config import Config

Matrix = np.ndarray | sp.csr_matrix


@dataclass
class Shard:
    """One worker's rows: features X (dense float64 or CSR) and labels y in {-1, +1}."""

    worker: int
    X: Matrix
    y: np.ndarray

    @property
    def n(self) -> int:
        """Number of rows."""
        return int(self.y.shape[0])


@dataclass
class Dataset:
    """The shards held by this process, plus facts about the whole dataset."""

    name: str
    n_samples: int
    n_features: int
    sparse: bool
    shards: list[Shard]
    fingerprint: str


class Source(ABC):
    """A dataset on disk or generated: its shape, and the rows asked for."""

    name: str

    @property
    @abstractmethod
    def n_rows(self) -> int:
        """Number of rows in the whole dataset."""

    @abstractmethod
    def rows(self, index: np.ndarray, intercept: bool = False) -> tuple[Matrix, np.ndarray]:
        """Rows `index` (any order) as (X float64, raw labels); with `intercept`, X ends with a
        constant-1 column (built in place where the source can, so no second copy of the shard)."""

    @abstractmethod
    def fingerprint(self) -> str:
        """A short string that changes when the data changes (used to cache f*)."""

    @property
    def n_columns(self) -> int | None:
        """Feature columns before any intercept (None: the source does not say; see `check_source`)."""
        return None

    @property
    def nnz(self) -> int | None:
        """Stored non-zeros of a sparse source held whole in memory (LIBSVM); None for a dense one."""
        return None

    def all_zero(self) -> bool | None:
        """True when every feature value of every row is 0 (`check_source` refuses such data), None when the
        source cannot tell cheaply. The same answer on every process: it is a fact of the whole data set."""
        return None

    def size_options(self, cfg: Config) -> tuple[tuple[str, object], tuple[str, object]]:
        """(option, value) that sets the number of rows, and the one that sets the number of columns: what the memory
        plan names when the data would not fit. Default: --dataset for both."""
        return ("dataset", cfg.dataset), ("dataset", cfg.dataset)

    def working_needs(self) -> list[limits.Need]:
        """Memory the source itself uses while it produces rows (a generator's blocks); default none."""
        return []


def binary_labels(y: np.ndarray, where: str) -> np.ndarray:
    values = np.unique(y)
    if values.size > 2 or not (set(values.tolist()) <= {-1.0, 1.0} or set(values.tolist()) <= {0.0, 1.0}):
        shown = ", ".join(f"{v:g}" for v in values[:5]) + (", ..." if values.size > 5 else "")
        raise InputError("dataset", where, f"labels must be binary (-1/+1 or 0/1); found {shown}")
    return np.where(y > 0, 1.0, -1.0)


def to_storage(X: Matrix, storage: str) -> Matrix:
    if storage == "dense" or (storage == "auto" and sp.issparse(X) and _density(X) >= 0.25):
        return X.toarray() if sp.issparse(X) else np.ascontiguousarray(X, dtype=np.float64)
    if storage == "sparse":
        return sp.csr_matrix(X)
    return sp.csr_matrix(X) if sp.issparse(X) else np.ascontiguousarray(X, dtype=np.float64)


def _density(X: sp.csr_matrix) -> float:
    cells = X.shape[0] * X.shape[1]
    return X.nnz / cells if cells else 1.0


def check_finite(X: Matrix, where: str) -> None:
    """Features must be finite, and every row's squared norm below MAX_MAGNITUDE: the smoothness constant
    L <= max ||a_i||^2 / 4 (+ the regulariser's) is then finite and gamma = 1/L > 0."""
    values = X.data if sp.issparse(X) else X
    if not np.all(np.isfinite(values)):
        raise InputError("dataset", where, "features contain NaN or inf")
    if values.size == 0:
        return
    with np.errstate(over="ignore"):
        if sp.issparse(X):
            norms = np.asarray(sp.csr_matrix((values * values, X.indices, X.indptr), shape=X.shape).sum(axis=1)).ravel()
        else:
            norms = np.einsum("ij,ij->i", X, X)
    worst = int(np.argmax(np.where(np.isfinite(norms), norms, np.inf))) if norms.size else 0
    if norms.size and not norms[worst] < MAX_MAGNITUDE:
        peak = float(np.max(np.abs(X[worst].data if sp.issparse(X) else X[worst])))
        raise InputError("dataset", where, f"feature values too large: a row's squared norm is {norms[worst]:.3g} "
                                           f"(largest value {peak:.3g}); it must be below {MAX_MAGNITUDE:g}, or the "
                                           "smoothness constant L is not finite and gamma = 1/L learns nothing")


def add_intercept(X: Matrix) -> Matrix:
    ones = np.ones((X.shape[0], 1))
    if sp.issparse(X):
        return sp.hstack([X, sp.csr_matrix(ones)], format="csr")
    return np.hstack([X, ones])


def file_digest(path: Path) -> str:
    h = hashlib.blake2b(digest_size=8)
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_source(cfg: Config, source: Source, n_workers: int, local_workers: int) -> None:
    """Before any row is read: the source holds rows, there are no more workers than rows, the run's memory
    plan (`limits.plan_run`: permutation, data, batch buffers for the largest batch the algorithm says it draws,
    vectors, workers, what the source itself needs) fits this machine, times the
    processes of this job on this host, and its features are not all zero (where the source can tell)."""
    n_rows = source.n_rows
    if n_rows == 0:
        raise InputError("dataset", cfg.dataset, "holds no samples")
    if n_workers > n_rows:
        raise InputError("workers", n_workers, f"more workers than samples ({n_rows})")
    columns = source.n_columns if source.n_columns is not None else cfg.features
    d = columns + cfg.intercept
    nnz = source.nnz
    sparse = nnz is not None and (cfg.storage == "sparse" or (cfg.storage == "auto" and nnz < 0.25 * n_rows * d))
    ask = ALGORITHMS.answer(cfg.algorithm, "largest_batch", None)
    batch = ask(cfg, n_workers) if callable(ask) else schedule_bound(cfg, n_workers, cfg.T)
    needs = limits.plan_run(cfg, n_workers, local_workers, n_rows, d, batch, source.size_options(cfg), nnz, sparse,
                            source.working_needs())
    limits.require(needs, processes_on_this_host())
    if source.all_zero():
        raise InputError("dataset", cfg.dataset, "its features are all zero: there is nothing to learn from them "
                                                 "(without the intercept the smoothness constant L would be 0)")
