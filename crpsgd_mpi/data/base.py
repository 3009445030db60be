"""What every data source provides, the shards a process holds, and the checks every source's rows pass."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from ..errors import InputError

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


def _density(X: sp.spmatrix) -> float:
    cells = X.shape[0] * X.shape[1]
    return X.nnz / cells if cells else 1.0


def check_finite(X: Matrix, where: str) -> None:
    values = X.data if sp.issparse(X) else X
    if not np.all(np.isfinite(values)):
        raise InputError("dataset", where, "features contain NaN or inf")


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
