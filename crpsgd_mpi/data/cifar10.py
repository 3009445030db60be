"""CIFAR-10 from the standard distribution files (python pickle batches or binary records), read safely."""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

import numpy as np

from ..errors import InputError

Split = Literal["train", "test"]
Format = Literal["python", "binary"]

HEIGHT = WIDTH = 32
CHANNELS = 3
PIXELS = CHANNELS * HEIGHT * WIDTH  # 3072 bytes per image: the R, G and B planes, each 32x32 row-major
RECORD = 1 + PIXELS  # one binary record: a label byte, then the pixels
N_CLASSES = 10

#: Per-channel mean and standard deviation of the 50000 training images, pixels scaled to [0, 1], as
#: published with many CIFAR-10 codes (std over all pixels of a channel; the also quoted
#: 0.2023/0.1994/0.2010 is a mean of per-image stds). Not recomputed here: the real files are not at hand.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)

_NAMES: dict[Format, dict[Split, tuple[str, ...]]] = {
    "python": {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)},
    "binary": {"train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)), "test": ("test_batch.bin",)},
}
_SUBDIRS: dict[Format, str] = {"python": "cifar-10-batches-py", "binary": "cifar-10-batches-bin"}
#: A real batch pickle is about 31 MB; anything far larger is not one (and is not read into memory).
_MAX_PICKLE_BYTES = 256 << 20


@dataclass(frozen=True)
class Cifar10Layout:
    """Where the six batch files of one format lie: `folder` holds them all."""

    folder: Path
    fmt: Format

    def files(self, split: Split) -> tuple[Path, ...]:
        """The split's batch files in order (train: five, test: one)."""
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', not {split!r}")
        return tuple(self.folder / name for name in _NAMES[self.fmt][split])


def find_cifar10(folder: str | Path) -> Cifar10Layout:
    """The CIFAR-10 files in `folder` or in its cifar-10-batches-bin/ or cifar-10-batches-py/; where
    both formats are complete the binary one is chosen (rows are read by seeking, nothing unpickled)."""
    root = Path(folder)
    if not root.is_dir():
        raise InputError("dataset", str(folder), "no such directory")
    best: tuple[int, Path, Format] | None = None
    for fmt in ("binary", "python"):
        for where in (root, root / _SUBDIRS[fmt]):
            names = [name for split in ("train", "test") for name in _NAMES[fmt][split]]
            present = [name for name in names if (where / name).is_file()]
            if len(present) == len(names):
                return Cifar10Layout(where, fmt)
            if present and (best is None or len(present) > best[0]):
                missing = next(name for name in names if name not in present)
                best = (len(present), where / missing, fmt)
    if best is not None:
        raise InputError("dataset", str(best[1]), f"missing CIFAR-10 batch file ({best[2]} format)")
    raise InputError(
        "dataset", str(folder),
        "no CIFAR-10 batches found (data_batch_1..5 and test_batch, or their .bin versions, here or in "
        "cifar-10-batches-py/ or cifar-10-batches-bin/)",
    )


def count_rows(layout: Cifar10Layout, split: Split) -> list[int]:
    """Images in each of the split's batch files; binary: from the file sizes, python: unpickles each batch."""
    if layout.fmt == "binary":
        return [_binary_count(path) for path in layout.files(split)]
    return [int(_load_batch(path)[1].size) for path in layout.files(split)]


def read_cifar10(
    folder: str | Path | Cifar10Layout, split: Split, rows: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 (n, 3, 32, 32) and labels int64 (n,) of `split`; with `rows` (indices into the split's
    batches concatenated in order, any order, repeats allowed) only those, in that order. Memory: the
    result plus, for pickles, one batch at a time (the whole split without `rows`: about twice the result)."""
    layout = folder if isinstance(folder, Cifar10Layout) else find_cifar10(folder)
    files = layout.files(split)
    if rows is not None:
        rows = np.asarray(rows)
        if rows.ndim != 1 or not (rows.size == 0 or np.issubdtype(rows.dtype, np.integer)):
            raise ValueError("rows must be a 1-D array of integer indices")
        rows = rows.astype(np.int64, copy=False)
        if rows.size and rows.min() < 0:
            raise ValueError(f"row index {int(rows.min())} is negative")
    if layout.fmt == "binary":
        return _read_binary(files, rows)
    return _read_python(files, rows)


def normalize(images: np.ndarray, mean: tuple[float, ...] = CIFAR10_MEAN,
              std: tuple[float, ...] = CIFAR10_STD) -> np.ndarray:
    """uint8 images (n, C, H, W) as float32 (pixel / 255 - mean[c]) / std[c], each step a correctly rounded
    float32 operation (the same bits on every machine)."""
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1] != len(mean) or len(std) != len(mean):
        raise ValueError(f"need uint8 images (n, {len(mean)}, H, W); got {images.dtype} {images.shape}")
    out = images.astype(np.float32)
    out /= np.float32(255)
    out -= np.asarray(mean, dtype=np.float32)[None, :, None, None]
    out /= np.asarray(std, dtype=np.float32)[None, :, None, None]
    return out


# ---- binary records -------------------------------------------------------------------------------

def _binary_count(path: Path) -> int:
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise InputError("dataset", str(path), f"cannot read: {_oneline(exc)}") from None
    if size == 0 or size % RECORD:
        raise InputError("dataset", str(path), f"size {size} bytes is not a positive multiple of {RECORD} "
                                               "(one label byte + 3072 pixel bytes per record)")
    return size // RECORD


def _read_binary(files: tuple[Path, ...], rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    counts = [_binary_count(path) for path in files]
    offsets = np.concatenate([[0], np.cumsum(counts)])
    total = int(offsets[-1])
    if rows is None:
        rows = np.arange(total, dtype=np.int64)
    elif rows.size and rows.max() >= total:
        raise ValueError(f"row index {int(rows.max())} out of range: the split has {total} images")
    records = np.empty((rows.size, RECORD), dtype=np.uint8)
    order = np.argsort(rows, kind="stable")
    wanted = rows[order]
    for k, path in enumerate(files):
        lo, hi = np.searchsorted(wanted, [offsets[k], offsets[k + 1]])
        if lo < hi:
            _read_records(path, wanted[lo:hi] - offsets[k], order[lo:hi], records, counts[k])
    labels = records[:, 0].astype(np.int64)
    _check_binary_labels(files, offsets, rows, labels)
    return records[:, 1:].reshape(-1, CHANNELS, HEIGHT, WIDTH), labels


def _read_records(path: Path, local: np.ndarray, dest: np.ndarray, records: np.ndarray, count: int) -> None:
    """Records `local` (sorted) of one file into records[dest]: the whole file when all are wanted, else a
    seek per record."""
    try:
        with open(path, "rb") as fh:
            if local.size == count and local[0] == 0 and local[-1] == count - 1:
                block = np.empty((count, RECORD), dtype=np.uint8)
                if fh.readinto(block.data.cast("B")) != block.nbytes:
                    raise EOFError("file shrank while reading")
                records[dest] = block
                return
            buf = bytearray(RECORD)
            for i, d in zip(local.tolist(), dest.tolist(), strict=True):
                fh.seek(i * RECORD)
                if fh.readinto(buf) != RECORD:
                    raise EOFError("file shrank while reading")
                records[d] = np.frombuffer(buf, dtype=np.uint8)
    except (OSError, EOFError) as exc:
        raise InputError("dataset", str(path), f"cannot read: {_oneline(exc)}") from None


def _check_binary_labels(files: tuple[Path, ...], offsets: np.ndarray, rows: np.ndarray, labels: np.ndarray) -> None:
    bad = np.flatnonzero(labels >= N_CLASSES)
    if bad.size:
        row = int(rows[bad[0]])
        k = int(np.searchsorted(offsets, row, side="right")) - 1
        raise InputError("dataset", str(files[k]),
                         f"record {row - int(offsets[k])} has label {int(labels[bad[0]])}, outside 0..9")


# ---- python pickle batches ------------------------------------------------------------------------

def _reconstruct_function() -> object:
    """numpy's ndarray reconstructor (numpy.core.multiarray._reconstruct, numpy._core in numpy 2),
    taken from an array's own pickle recipe so no deprecated module path is imported."""
    return np.zeros(0).__reduce__()[0]


#: Exactly the globals a CIFAR-10 batch pickle references (it holds a dict of a uint8 ndarray, lists of
#: ints and byte strings): the ndarray reconstructor, ndarray and dtype. The files were written by
#: Python 2 cPickle under numpy 1 (module numpy.core.multiarray); numpy 2 spells it numpy._core.multiarray.
_ALLOWED_GLOBALS: dict[tuple[str, str], object] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct_function(),
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct_function(),
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class _Refused(Exception):
    """The pickle names a global outside the allowed set."""


class _BatchUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals in _ALLOWED_GLOBALS and no persistent ids."""

    def find_class(self, module: str, name: str) -> object:
        found = _ALLOWED_GLOBALS.get((module, name))
        if found is None:
            raise _Refused(f"{module}.{name}")
        return found

    def persistent_load(self, pid: object) -> object:
        raise _Refused("a persistent id")


class _BoundedReader:
    """A file seen by the unpickler: a read never asks for more than what is left, so a forged length
    cannot make it allocate beyond the file's size."""

    def __init__(self, fh: IO[bytes], size: int) -> None:
        self.fh, self.left = fh, size

    def read(self, n: int = -1) -> bytes:
        data = self.fh.read(self.left if n < 0 else min(n, self.left))
        self.left -= len(data)
        return data

    def readline(self) -> bytes:
        data = self.fh.readline(self.left)
        self.left -= len(data)
        return data


def _load_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One python batch as (data uint8 (n, 3072), labels int64 (n,)), checked; every failure names the file."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise InputError("dataset", str(path), f"cannot read: {_oneline(exc)}") from None
    if size > _MAX_PICKLE_BYTES:
        raise InputError("dataset", str(path), f"{size} bytes is too large for a CIFAR-10 batch pickle")
    try:
        with open(path, "rb") as fh:
            batch = _BatchUnpickler(_BoundedReader(fh, size), encoding="bytes").load()
    except _Refused as exc:
        raise InputError("dataset", str(path), f"unsafe pickle refused: pickle references {_oneline(exc)}") from None
    except OSError as exc:
        raise InputError("dataset", str(path), f"cannot read: {_oneline(exc)}") from None
    except Exception as exc:  # noqa: BLE001 - a hostile or damaged pickle can raise almost anything
        reason = "truncated" if isinstance(exc, EOFError) else f"{type(exc).__name__}: {_oneline(exc)}"
        raise InputError("dataset", str(path), f"not a readable CIFAR-10 batch pickle ({reason})") from None
    return _check_batch(path, batch)


def _check_batch(path: Path, batch: object) -> tuple[np.ndarray, np.ndarray]:
    def fail(reason: str) -> InputError:
        return InputError("dataset", str(path), reason)

    if not isinstance(batch, dict):
        raise fail(f"batch pickle holds a {type(batch).__name__}, not a dict")
    data, labels = _entry(batch, "data"), _entry(batch, "labels")
    if data is None or labels is None:
        raise fail("batch pickle lacks the 'data' or 'labels' entry")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != PIXELS:
        shown = f"{data.dtype} array {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise fail(f"'data' must be a uint8 array (n, {PIXELS}); got {_oneline(shown)}")
    if data.shape[0] == 0:
        raise fail("'data' holds no images")
    if not isinstance(labels, list | np.ndarray) or np.ndim(labels) != 1 \
            or not all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in labels):
        raise fail("'labels' must be a list of integers")
    if len(labels) != data.shape[0]:
        raise fail(f"{len(labels)} labels for {data.shape[0]} images")
    bad = next((i for i, v in enumerate(labels) if not 0 <= v < N_CLASSES), None)
    if bad is not None:
        raise fail(f"label {_oneline(labels[bad], 24)} of image {bad} is outside 0..9")
    y = np.asarray(labels, dtype=np.int64)
    names = _entry(batch, "filenames")
    if names is not None and (not isinstance(names, list) or len(names) != data.shape[0]):
        raise fail(f"'filenames' must list one name per image ({data.shape[0]})")
    return data, y


def _entry(batch: dict, key: str) -> object:
    """batch[b'key'] (the original files' byte-string keys) or batch['key'] (a Python 3 re-pickle)."""
    return batch.get(key.encode(), batch.get(key))


def _read_python(files: tuple[Path, ...], rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    if rows is None:
        parts = [_load_batch(path) for path in files]
        data = np.concatenate([d for d, _ in parts])
        labels = np.concatenate([y for _, y in parts])
        return data.reshape(-1, CHANNELS, HEIGHT, WIDTH), labels
    images = np.empty((rows.size, PIXELS), dtype=np.uint8)
    labels = np.empty(rows.size, dtype=np.int64)
    order = np.argsort(rows, kind="stable")
    wanted = rows[order]
    start = 0
    for path in files:
        if start > (int(wanted[-1]) if wanted.size else -1):
            break
        data, y = _load_batch(path)
        lo, hi = np.searchsorted(wanted, [start, start + y.size])
        images[order[lo:hi]] = data[wanted[lo:hi] - start]
        labels[order[lo:hi]] = y[wanted[lo:hi] - start]
        start += y.size
        del data, y
    if wanted.size and wanted[-1] >= start:
        raise ValueError(f"row index {int(wanted[-1])} out of range: the split has {start} images")
    return images.reshape(-1, CHANNELS, HEIGHT, WIDTH), labels


def _oneline(obj: object, limit: int = 160) -> str:
    """Text echoed from a file or an exception: printable ASCII only, on one line, at most `limit` chars."""
    text = "".join(ch if " " <= ch <= "~" else "?" for ch in str(obj))
    return text if len(text) <= limit else text[: limit - 3] + "..."
