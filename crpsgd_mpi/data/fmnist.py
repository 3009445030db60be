"""Fashion-MNIST from the IDX files of the Debian package, with a fixed binary split of its ten classes."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from ..errors import InputError
from .base import Matrix, Source

#: Fashion-MNIST classes labelled +1 (garments worn on the upper body or whole body):
#: 0 T-shirt/top, 2 pullover, 3 dress, 4 coat, 6 shirt. The rest (1 trouser, 5 sandal, 7 sneaker,
#: 8 bag, 9 ankle boot) are labelled -1. A fixed, documented split: 30000 / 30000 rows.
FMNIST_POSITIVE = (0, 2, 3, 4, 6)


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


def _read_idx(path: Path, offset: int, field: str) -> np.ndarray:
    try:
        with gzip.open(path, "rb") as fh:
            data = fh.read()
    except (OSError, EOFError) as exc:
        raise InputError(field, str(path), f"cannot read IDX file: {exc}") from None
    return np.frombuffer(data, dtype=np.uint8, offset=offset)
