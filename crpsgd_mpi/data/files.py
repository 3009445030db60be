"""Data sets read from one file: LIBSVM/svmlight text and HDF5 (/X, /y); every refusal names the file."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from .. import limits
from ..errors import InputError
from ..limits import Need, shown
from .base import Matrix, Source, add_intercept, file_digest

#: Parsing a LIBSVM file holds about this many times its size (values, indices, row pointers, the parser's
#: growing buffers); checked against the memory before parsing, since every process parses the whole file.
LIBSVM_PARSE_FACTOR = 3
#: numpy kinds an HDF5 data set may hold: bool, signed and unsigned integers, floats.
_NUMERIC_KINDS = "biuf"
#: Bytes of /X read at a time when looking for a non-zero feature (`HDF5Source.all_zero`).
ZERO_SCAN_BYTES = 1 << 23
#: Names of --dataset files read as HDF5 (any other file is LIBSVM text).
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf")


def hdf5_inputs(path: str) -> list[Path]:
    """The files HDF5 reads for /X and /y of the file `path`: the file holding each (an external link's target), a
    virtual data set's source files and external raw storage (a relative name taken from the folder of the file
    that names it and from the working folder: HDF5 may look in either). Empty where the file cannot be opened as
    HDF5 (its reader names the problem later); a FIFO or a device is never opened."""
    import h5py

    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return []
    except (OSError, ValueError):
        return []
    found: list[Path] = []
    try:
        with h5py.File(path, "r") as f:
            for name in ("X", "y"):
                try:
                    obj = f[name]
                except Exception:  # noqa: BLE001 - missing, dangling: the reader says so
                    continue
                holder = Path(obj.file.filename)
                found.append(holder)
                if not isinstance(obj, h5py.Dataset):
                    continue
                names = [s.file_name for s in obj.virtual_sources() if s.file_name != "."] if obj.is_virtual else []
                names += [entry[0] for entry in obj.external or []]
                for n in map(os.fsdecode, names):
                    found += [Path(n)] if os.path.isabs(n) else [holder.parent / n, Path(n)]
    except Exception:  # noqa: BLE001 - not HDF5, damaged: the reader names it
        pass
    return found


class FileSource(Source):
    """A Source read from one file named by --dataset; fingerprinted by its content. The path must be a regular
    file that can be opened for reading (a FIFO or a device is refused without being opened)."""

    kind = "file"

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.name = self.path.name
        self.size = limits.readable_file(path, "dataset")

    def fingerprint(self) -> str:
        try:
            return f"{self.kind}-{file_digest(self.path)}"
        except OSError as exc:
            raise InputError("dataset", str(self.path), f"cannot be read: {shown(exc.strerror or exc)}") from None

    def fail(self, reason: str) -> InputError:
        """The one-line error about this file."""
        return InputError("dataset", str(self.path), reason)


class LibsvmSource(FileSource):
    """A LIBSVM/svmlight text file, parsed by scikit-learn's C parser (whole file, then sharded)."""

    kind = "libsvm"

    def __init__(self, path: str) -> None:
        from sklearn.datasets import load_svmlight_file

        super().__init__(path)
        limits.require([Need("dataset", path, LIBSVM_PARSE_FACTOR * float(self.size),
                             f"parsing the LIBSVM file ({LIBSVM_PARSE_FACTOR} x its {self.size} bytes)")])
        try:
            X, y = load_svmlight_file(str(self.path), dtype=np.float64)
        except OverflowError as exc:
            raise self.fail(f"not a LIBSVM/svmlight file: a feature index or value is too large for the parser "
                            f"({shown(exc)}); indices must be below 2^31") from None
        except (ValueError, UnicodeDecodeError, OSError, TypeError) as exc:
            reason = shown(exc.strerror) if isinstance(exc, OSError) and exc.strerror else shown(exc)
            raise self.fail(f"not a LIBSVM/svmlight file: {reason}") from None
        if y.size == 0:
            raise self.fail("holds no samples (no line with a label)")
        self.X = sp.csr_matrix(X)
        self.y = np.asarray(y, dtype=np.float64)
        d = self.X.shape[1]
        vectors = limits.FIXED_VECTORS + limits.VECTORS_PER_WORKER + 1
        limits.require([Need("dataset", path, 8.0 * vectors * d,
                             f"model-sized vectors: its largest feature index makes {d} features "
                             f"({vectors} vectors of {d} x 8 bytes)")])

    @property
    def n_rows(self) -> int:
        return int(self.y.size)

    @property
    def n_columns(self) -> int:
        return int(self.X.shape[1])

    @property
    def nnz(self) -> int:
        return int(self.X.nnz)

    def all_zero(self) -> bool:
        return self.X.count_nonzero() == 0

    def rows(self, index: np.ndarray, intercept: bool = False) -> tuple[Matrix, np.ndarray]:
        X = self.X[index]
        return (add_intercept(X) if intercept else X), self.y[index]


class HDF5Source(FileSource):
    """An HDF5 file with a 2-D numeric dataset /X and a 1-D numeric dataset /y of as many rows; each process reads
    only its rows. Checked when opened: the datasets exist and are datasets, their rank, length and dtype, and that
    this HDF5 library has every filter (compression) they were written with."""

    kind = "hdf5"

    def __init__(self, path: str) -> None:
        import h5py

        super().__init__(path)
        try:
            with h5py.File(self.path, "r") as f:
                X, y = self._dataset(f, "X"), self._dataset(f, "y")
                shape, yshape = X.shape, y.shape
                if len(shape) != 2 or len(yshape) != 1 or shape[0] != yshape[0]:
                    raise self.fail(f"/X must be 2-D and /y 1-D of equal length; got {shape} and {yshape}")
                if shape[0] == 0:
                    raise self.fail("holds no samples (/X has no rows)")
                if shape[1] == 0:
                    raise self.fail("/X has no columns")
                for name, dset in (("X", X), ("y", y)):
                    self._check_dtype(name, dset)
                    self._check_filters(name, dset)
        except InputError:
            raise
        except Exception as exc:  # noqa: BLE001 - h5py reports a damaged file with many exception types
            raise self.fail(f"not a readable HDF5 file: {shown(exc)}") from None
        self.shape = (int(shape[0]), int(shape[1]))

    def _dataset(self, f: Any, name: str) -> Any:
        import h5py

        if f.get(name, getlink=True) is None:
            raise self.fail(f"HDF5 file needs datasets /X and /y; /{name} is missing")
        try:
            obj = f[name]
        except KeyError as exc:  # a dangling soft or external link
            raise self.fail(f"/{name} cannot be opened: {shown(exc)}") from None
        if not isinstance(obj, h5py.Dataset):
            raise self.fail(f"/{name} is a {type(obj).__name__.lower()}, not a dataset (HDF5 file needs datasets "
                            "/X and /y)")
        return obj

    def _check_dtype(self, name: str, dset: Any) -> None:
        dtype = dset.dtype
        if dtype.kind not in _NUMERIC_KINDS or dtype.fields is not None or dtype.subdtype is not None:
            raise self.fail(f"/{name} holds {shown(dtype, 60)} values, not numbers (bool, integer or float)")

    def _check_filters(self, name: str, dset: Any) -> None:
        from h5py import h5z

        plist = dset.id.get_create_plist()
        for i in range(plist.get_nfilters()):
            code, _flags, _values, label = plist.get_filter(i)
            if not h5z.filter_avail(code):
                text = label.decode("ascii", "replace") if isinstance(label, bytes) else str(label)
                raise self.fail(f"/{name} was written with HDF5 filter {code} ({shown(text, 40) or 'unnamed'}), "
                                "which this HDF5 library cannot decode (install its plugin, e.g. hdf5plugin)")

    @property
    def n_rows(self) -> int:
        return self.shape[0]

    @property
    def n_columns(self) -> int:
        return self.shape[1]

    def all_zero(self) -> bool | None:
        """Read /X in blocks of about ZERO_SCAN_BYTES until a non-zero value (normally in the first block); None if
        it cannot be read (`rows` names the problem)."""
        import h5py

        step = max(1, ZERO_SCAN_BYTES // (8 * max(self.shape[1], 1)))
        try:
            with h5py.File(self.path, "r") as f:
                X = f["X"]
                for lo in range(0, self.shape[0], step):
                    if np.any(X[lo:lo + step]):
                        return False
        except Exception:  # noqa: BLE001 - damaged, changed: said when the rows are read
            return None
        return True

    def rows(self, index: np.ndarray, intercept: bool = False) -> tuple[Matrix, np.ndarray]:
        """The rows in the order asked (read in increasing order, then placed), the intercept written in place."""
        import h5py

        order = np.argsort(index, kind="stable")
        sorted_idx = index[order]
        d = self.shape[1]
        try:
            with h5py.File(self.path, "r") as f:
                X_sorted = f["X"][sorted_idx, :]
                y_sorted = np.asarray(f["y"][sorted_idx], dtype=np.float64)
        except MemoryError:
            raise
        except Exception as exc:  # noqa: BLE001 - truncation, corruption, a file changed since it was opened
            raise self.fail(f"cannot read its rows: {shown(exc)}") from None
        if X_sorted.shape != (index.size, d):
            raise self.fail(f"/X changed while reading: got {X_sorted.shape} rows for {index.size}")
        inverse = np.empty_like(order)
        inverse[order] = np.arange(order.size)
        X = np.empty((index.size, d + intercept))
        X[:, :d] = X_sorted[inverse]
        del X_sorted
        if intercept:
            X[:, d] = 1.0
        return X, y_sorted[inverse]
