"""Data sets read from one file: LIBSVM/svmlight text and HDF5 (/X, /y)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp

from ..errors import InputError
from .base import Matrix, Source, add_intercept, file_digest


class FileSource(Source):
    """A Source read from one file named by --dataset; fingerprinted by its content."""

    kind = "file"

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.name = self.path.name
        if not self.path.is_file():
            raise InputError("dataset", path, "no such file")

    def fingerprint(self) -> str:
        return f"{self.kind}-{file_digest(self.path)}"


class LibsvmSource(FileSource):
    """A LIBSVM/svmlight text file, parsed by scikit-learn's C parser (whole file, then sharded)."""

    kind = "libsvm"

    def __init__(self, path: str) -> None:
        from sklearn.datasets import load_svmlight_file

        super().__init__(path)
        try:
            X, y = load_svmlight_file(str(self.path), dtype=np.float64)
        except (ValueError, UnicodeDecodeError, OSError) as exc:
            raise InputError("dataset", path, f"not a LIBSVM/svmlight file: {exc}") from None
        self.X = sp.csr_matrix(X)
        self.y = np.asarray(y, dtype=np.float64)

    @property
    def n_rows(self) -> int:
        return int(self.y.size)

    def rows(self, index: np.ndarray, intercept: bool = False) -> tuple[Matrix, np.ndarray]:
        X = self.X[index]
        return (add_intercept(X) if intercept else X), self.y[index]


class HDF5Source(FileSource):
    """An HDF5 file with a 2-D float dataset /X and a 1-D dataset /y; each process reads only its rows."""

    kind = "hdf5"

    def __init__(self, path: str) -> None:
        import h5py

        super().__init__(path)
        try:
            with h5py.File(self.path, "r") as f:
                if "X" not in f or "y" not in f:
                    raise InputError("dataset", path, "HDF5 file needs datasets /X and /y")
                shape, yshape = f["X"].shape, f["y"].shape
        except OSError as exc:
            raise InputError("dataset", path, f"not a readable HDF5 file: {exc}") from None
        if len(shape) != 2 or len(yshape) != 1 or shape[0] != yshape[0]:
            raise InputError("dataset", path, f"/X must be 2-D and /y 1-D of equal length; got {shape} and {yshape}")
        self.shape = shape

    @property
    def n_rows(self) -> int:
        return int(self.shape[0])

    def rows(self, index: np.ndarray, intercept: bool = False) -> tuple[Matrix, np.ndarray]:
        import h5py

        order = np.argsort(index, kind="stable")
        sorted_idx = index[order]
        with h5py.File(self.path, "r") as f:
            X_sorted = np.asarray(f["X"][sorted_idx, :], dtype=np.float64)
            y_sorted = np.asarray(f["y"][sorted_idx], dtype=np.float64)
        inverse = np.empty_like(order)
        inverse[order] = np.arange(order.size)
        X = X_sorted[inverse]
        return (add_intercept(X) if intercept else X), y_sorted[inverse]
