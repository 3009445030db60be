"""Fashion-MNIST from the IDX files of the Debian package, with a fixed binary split of its ten classes."""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from .. import limits
from ..errors import InputError
from ..limits import shown
from .base import Matrix, Source

#: Fashion-MNIST classes labelled +1 (garments worn on the upper body or whole body):
#: 0 T-shirt/top, 2 pullover, 3 dress, 4 coat, 6 shirt. The rest (1 trouser, 5 sandal, 7 sneaker,
#: 8 bag, 9 ankle boot) are labelled -1. A fixed, documented split: 30000 / 30000 rows.
FMNIST_POSITIVE = (0, 2, 3, 4, 6)
#: IDX magic numbers: 0x00000801 (unsigned bytes, 1 dimension: labels), 0x00000803 (unsigned bytes, 3: images).
LABELS_MAGIC, IMAGES_MAGIC = 0x801, 0x803
SIDE = 28
N_CLASSES = 10
#: The training set has 60000 images; a header claiming far more is not Fashion-MNIST (nothing is allocated for it).
MAX_IMAGES = 1_000_000
#: Errors a damaged gzip member raises while it is read.
_GZIP_ERRORS = (OSError, EOFError, zlib.error, ValueError)


class FashionMNISTSource(Source):
    """Fashion-MNIST from the IDX files: the training set (60000 x 784; `split="t10k"`: the 10000 test images),
    pixels scaled to [0, 1], labels +-1 by the fixed split FMNIST_POSITIVE (`classes` gives the ten classes). The
    headers (magic numbers, counts, 28 x 28) and every label are checked when opened; the images' length when read."""

    name = "fashion-mnist"

    def __init__(self, folder: str, split: str = "train") -> None:
        self.folder = Path(folder)
        self.images = self.folder / f"{split}-images-idx3-ubyte.gz"
        self.labels_path = self.folder / f"{split}-labels-idx1-ubyte.gz"
        for p in (self.images, self.labels_path):
            if not _exists(p):
                raise InputError(
                    "fmnist_dir", folder,
                    f"{p.name} not found (`make data` installs it, as root: the Debian package dataset-fashion-mnist; "
                    "or set --fmnist-dir)",
                )
            limits.readable_file(p, "fmnist_dir")  # a directory, a FIFO, a device or an unreadable file: named
        self.labels = _read_labels(self.labels_path)
        count, rows, cols = _image_header(self.images)
        if (rows, cols) != (SIDE, SIDE):
            raise _fail(self.images, f"images are {rows} x {cols}, not {SIDE} x {SIDE}")
        if count != self.labels.size:
            raise _fail(self.images, f"holds {count} images for the {self.labels.size} labels of {self.labels_path.name}")

    @property
    def n_rows(self) -> int:
        return int(self.labels.size)

    @property
    def n_columns(self) -> int:
        return SIDE * SIDE

    def rows(self, index: np.ndarray, intercept: bool = False) -> tuple[Matrix, np.ndarray]:
        d = SIDE * SIDE
        pixels = self.pixels(index)
        X = np.empty((index.size, d + intercept))
        np.multiply(pixels, 1.0 / 255.0, out=X[:, :d])
        if intercept:
            X[:, d] = 1.0
        y = np.where(np.isin(self.labels[index], FMNIST_POSITIVE), 1.0, -1.0)
        return X, y

    def classes(self, index: np.ndarray) -> np.ndarray:
        """The ten-class labels 0..9 of rows `index`."""
        return self.labels[index].astype(np.int64)

    def pixels(self, index: np.ndarray) -> np.ndarray:
        """uint8 (n, 784) of rows `index` (any order): the images decompressed in blocks, keeping only the rows
        asked for (memory: the rows + one block)."""
        d, block = SIDE * SIDE, 4096
        order = np.argsort(index, kind="stable")
        wanted = index[order]
        pixels = np.empty((index.size, d), dtype=np.uint8)
        try:
            with gzip.open(self.images, "rb") as fh:
                fh.read(16)
                for start in range(0, self.n_rows, block):
                    m = min(block, self.n_rows - start)
                    raw = fh.read(m * d)
                    if len(raw) != m * d:
                        raise EOFError(f"truncated: it ends within image {start + len(raw) // d} of {self.n_rows}")
                    rows = np.frombuffer(raw, dtype=np.uint8).reshape(m, d)
                    lo, hi = np.searchsorted(wanted, [start, start + m])
                    pixels[order[lo:hi]] = rows[wanted[lo:hi] - start]
                if fh.read(1):  # also reads the gzip trailer: its CRC catches a damaged stream
                    raise EOFError(f"more data after the {self.n_rows} images")
        except _GZIP_ERRORS as exc:
            raise _fail(self.images, f"cannot read the images: {shown(exc)}") from None
        return pixels

    def fingerprint(self) -> str:
        st = self.images.stat()
        return f"fashion-mnist-{st.st_size}-{int(st.st_mtime)}"


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except (OSError, ValueError):
        return False


def _fail(path: Path, reason: str) -> InputError:
    return InputError("fmnist_dir", str(path), reason)


def _read_labels(path: Path) -> np.ndarray:
    """The labels of an IDX1 file, each checked to be a class 0..9."""
    try:
        with gzip.open(path, "rb") as fh:
            header = fh.read(8)
            _, count = _header(path, header, 8, LABELS_MAGIC, "labels (IDX1)")
            data = fh.read(count + 1)  # to the end: the gzip trailer's CRC is checked
    except InputError:
        raise
    except _GZIP_ERRORS as exc:
        raise _fail(path, f"cannot read the IDX file: {shown(exc)}") from None
    if len(data) != count:
        raise _fail(path, f"header says {count} labels, the file holds {'more' if len(data) > count else len(data)}")
    labels = np.frombuffer(data, dtype=np.uint8).astype(np.int64)
    bad = np.flatnonzero(labels >= N_CLASSES)
    if bad.size:
        raise _fail(path, f"label {int(labels[bad[0]])} of image {int(bad[0])} is outside 0..9")
    return labels


def _image_header(path: Path) -> tuple[int, int, int]:
    """(count, rows, columns) from an IDX3 header."""
    try:
        with gzip.open(path, "rb") as fh:
            header = fh.read(16)
    except _GZIP_ERRORS as exc:
        raise _fail(path, f"cannot read the IDX file: {shown(exc)}") from None
    _, count = _header(path, header, 16, IMAGES_MAGIC, "images (IDX3)")
    rows, cols = struct.unpack(">II", header[8:16])
    return count, rows, cols


def _header(path: Path, header: bytes, size: int, magic: int, what: str) -> tuple[int, int]:
    if len(header) < size:
        raise _fail(path, f"truncated: {len(header)} bytes, shorter than an IDX header ({size})")
    found, count = struct.unpack(">II", header[:8])
    if found != magic:
        raise _fail(path, f"magic number 0x{found:08x} is not that of {what}, 0x{magic:08x}")
    if count == 0 or count > MAX_IMAGES:
        raise _fail(path, f"header says {count} items; Fashion-MNIST's training set has 60000")
    return found, count
