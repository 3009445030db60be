"""Datasets: the synthetic generator, Fashion-MNIST, LIBSVM and HDF5 files, and the seeded sharding."""

from __future__ import annotations

import gzip
import hashlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from .config import Config
from .errors import InputError
from .seeding import Stream, rng_for

Matrix = np.ndarray | sp.csr_matrix

#: Fashion-MNIST classes labelled +1 (garments worn on the upper body or whole body):
#: 0 T-shirt/top, 2 pullover, 3 dress, 4 coat, 6 shirt. The rest (1 trouser, 5 sandal, 7 sneaker,
#: 8 bag, 9 ankle boot) are labelled -1. A fixed, documented split: 30000 / 30000 rows.
FMNIST_POSITIVE = (0, 2, 3, 4, 6)
SYNTHETIC_BLOCK = 4096


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


class SyntheticSource(Source):
    """Gaussian features with geometric variances, labels from a planted linear model with flips.

    Row i depends only on (data_seed, i // 4096): the data never depends on N or on the run seed.
    Feature j has standard deviation condition^(-j / (2 (d-1))), so the feature covariance has
    condition number `condition`. The planted weight w* ~ N(0, I) is scaled so that a·w* has unit
    standard deviation times 3; y = sign(a·w*), flipped with probability `label_noise`.
    """

    name = "synthetic"

    def __init__(self, samples: int, features: int, condition: float, label_noise: float, data_seed: int) -> None:
        self.samples, self.features = samples, features
        self.condition, self.label_noise, self.data_seed = condition, label_noise, data_seed
        exps = np.arange(features) / max(features - 1, 1)
        self.scales = condition ** (-0.5 * exps)
        w = rng_for(data_seed, Stream.SYNTHETIC_WEIGHTS).standard_normal(features)
        self.w_star = 3.0 * w / np.linalg.norm(w * self.scales)

    @property
    def n_rows(self) -> int:
        return self.samples

    def _block(self, b: int) -> tuple[np.ndarray, np.ndarray]:
        start = b * SYNTHETIC_BLOCK
        m = min(SYNTHETIC_BLOCK, self.samples - start)
        rng = rng_for(self.data_seed, Stream.SYNTHETIC_ROWS, b)
        X = rng.standard_normal((m, self.features)) * self.scales
        y = np.where(X @ self.w_star >= 0, 1.0, -1.0)
        flip = rng.random(m) < self.label_noise
        y[flip] = -y[flip]
        return X, y

    def rows(self, index: np.ndarray, intercept: bool = False) -> tuple[Matrix, np.ndarray]:
        f = self.features
        X = np.empty((index.size, f + intercept))
        if intercept:
            X[:, f] = 1.0
        y = np.empty(index.size)
        blocks = index // SYNTHETIC_BLOCK
        for b in np.unique(blocks):
            Xb, yb = self._block(int(b))
            sel = np.nonzero(blocks == b)[0]
            X[sel, :f] = Xb[index[sel] - b * SYNTHETIC_BLOCK]
            y[sel] = yb[index[sel] - b * SYNTHETIC_BLOCK]
        return X, y

    def fingerprint(self) -> str:
        return f"synthetic-{self.samples}-{self.features}-{self.condition!r}-{self.label_noise!r}-{self.data_seed}"


class FashionMNISTSource(Source):
    """Fashion-MNIST training set (60000 x 784) from the IDX files, pixels scaled to [0, 1]."""

    name = "fashion-mnist"

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)
        self.images = self.folder / "train-images-idx3-ubyte.gz"
        self.labels_path = self.folder / "train-labels-idx1-ubyte.gz"
        for p in (self.images, self.labels_path):
            if not p.is_file():
                raise InputError(
                    "fmnist_dir", folder,
                    f"{p.name} not found (install the Debian package dataset-fashion-mnist or set --fmnist-dir)",
                )
        self.labels = _read_idx(self.labels_path, 8, "fmnist_dir").astype(np.int64)

    @property
    def n_rows(self) -> int:
        return int(self.labels.size)

    def rows(self, index: np.ndarray, intercept: bool = False) -> tuple[Matrix, np.ndarray]:
        """Decompress the images in blocks, keeping only the rows asked for (memory: shard + one block)."""
        d, block = 28 * 28, 4096
        order = np.argsort(index, kind="stable")
        wanted = index[order]
        pixels = np.empty((index.size, d), dtype=np.uint8)
        try:
            with gzip.open(self.images, "rb") as fh:
                fh.read(16)
                for start in range(0, self.n_rows, block):
                    raw = fh.read(min(block, self.n_rows - start) * d)
                    m = len(raw) // d
                    if m == 0:
                        raise EOFError("truncated")
                    rows = np.frombuffer(raw, dtype=np.uint8, count=m * d).reshape(m, d)
                    lo, hi = np.searchsorted(wanted, [start, start + m])
                    pixels[order[lo:hi]] = rows[wanted[lo:hi] - start]
        except (OSError, EOFError) as exc:
            raise InputError("fmnist_dir", str(self.folder), f"cannot read {self.images.name}: {exc}") from None
        X = np.empty((index.size, d + intercept))
        np.multiply(pixels, 1.0 / 255.0, out=X[:, :d])
        if intercept:
            X[:, d] = 1.0
        y = np.where(np.isin(self.labels[index], FMNIST_POSITIVE), 1.0, -1.0)
        return X, y

    def fingerprint(self) -> str:
        st = self.images.stat()
        return f"fashion-mnist-{st.st_size}-{int(st.st_mtime)}"


class FileSource(Source):
    """A Source read from one file named by --dataset; fingerprinted by its content."""

    kind = "file"

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.name = self.path.name
        if not self.path.is_file():
            raise InputError("dataset", path, "no such file")

    def fingerprint(self) -> str:
        return f"{self.kind}-{_file_digest(self.path)}"


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
        return (_add_intercept(X) if intercept else X), self.y[index]


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
        return (_add_intercept(X) if intercept else X), y_sorted[inverse]


def open_source(cfg: Config) -> Source:
    """The Source named by `cfg.dataset`."""
    if cfg.dataset == "synthetic":
        return SyntheticSource(cfg.samples, cfg.features, cfg.condition, cfg.label_noise, cfg.data_seed)
    if cfg.dataset == "fashion-mnist":
        return FashionMNISTSource(cfg.fmnist_dir)
    if cfg.dataset.lower().endswith((".h5", ".hdf5", ".hdf")):
        return HDF5Source(cfg.dataset)
    if not Path(cfg.dataset).exists():
        raise InputError("dataset", cfg.dataset, "not 'synthetic' or 'fashion-mnist', and no such file")
    return LibsvmSource(cfg.dataset)


def shard_bounds(n_rows: int, n_workers: int) -> np.ndarray:
    """Offsets of the N contiguous shards of the shuffled rows (sizes differ by at most one)."""
    return np.array([(w * n_rows) // n_workers for w in range(n_workers + 1)], dtype=np.int64)


def shuffle(n_rows: int, seed: int) -> np.ndarray:
    """The seeded permutation of all rows (independent of N)."""
    return rng_for(seed, Stream.SHUFFLE).permutation(n_rows)


def load(cfg: Config, n_workers: int, workers: Sequence[int]) -> Dataset:
    """Load the shards of `workers` (this process's workers) out of N, validating the data."""
    source = open_source(cfg)
    n_rows = source.n_rows
    if n_workers > n_rows:
        raise InputError("workers", n_workers, f"more workers than samples ({n_rows})")
    perm = shuffle(n_rows, cfg.seed)
    bounds = shard_bounds(n_rows, n_workers)
    shards = []
    n_features = None
    sparse_out = False
    for w in workers:
        X, y_raw = source.rows(perm[bounds[w]:bounds[w + 1]], cfg.intercept)
        y = _binary_labels(y_raw, cfg.dataset)
        X = _storage(X, cfg.storage)
        _check_finite(X, cfg.dataset)
        sparse_out = sp.issparse(X)
        n_features = X.shape[1]
        shards.append(Shard(worker=w, X=X, y=y))
    if n_features is None:
        n_features = 0
    return Dataset(
        name=source.name, n_samples=n_rows, n_features=int(n_features), sparse=sparse_out,
        shards=shards, fingerprint=source.fingerprint(),
    )


def _binary_labels(y: np.ndarray, where: str) -> np.ndarray:
    values = np.unique(y)
    if values.size > 2 or not (set(values.tolist()) <= {-1.0, 1.0} or set(values.tolist()) <= {0.0, 1.0}):
        shown = ", ".join(f"{v:g}" for v in values[:5]) + (", ..." if values.size > 5 else "")
        raise InputError("dataset", where, f"labels must be binary (-1/+1 or 0/1); found {shown}")
    return np.where(y > 0, 1.0, -1.0)


def _storage(X: Matrix, storage: str) -> Matrix:
    if storage == "dense" or (storage == "auto" and sp.issparse(X) and _density(X) >= 0.25):
        return X.toarray() if sp.issparse(X) else np.ascontiguousarray(X, dtype=np.float64)
    if storage == "sparse":
        return sp.csr_matrix(X)
    return sp.csr_matrix(X) if sp.issparse(X) else np.ascontiguousarray(X, dtype=np.float64)


def _density(X: sp.spmatrix) -> float:
    cells = X.shape[0] * X.shape[1]
    return X.nnz / cells if cells else 1.0


def _check_finite(X: Matrix, where: str) -> None:
    values = X.data if sp.issparse(X) else X
    if not np.all(np.isfinite(values)):
        raise InputError("dataset", where, "features contain NaN or inf")


def _add_intercept(X: Matrix) -> Matrix:
    ones = np.ones((X.shape[0], 1))
    if sp.issparse(X):
        return sp.hstack([X, sp.csr_matrix(ones)], format="csr")
    return np.hstack([X, ones])


def _read_idx(path: Path, offset: int, field: str) -> np.ndarray:
    try:
        with gzip.open(path, "rb") as fh:
            data = fh.read()
    except (OSError, EOFError) as exc:
        raise InputError(field, str(path), f"cannot read IDX file: {exc}") from None
    return np.frombuffer(data, dtype=np.uint8, offset=offset)


def _file_digest(path: Path) -> str:
    h = hashlib.blake2b(digest_size=8)
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
