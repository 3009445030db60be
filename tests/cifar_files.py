"""Small CIFAR-10 directories in the exact formats of the real distribution, with seeded random pixels."""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np

TRAIN_BATCHES = 5
PIXELS = 3072


class Py2Pickler(pickle._Pickler):
    """Writes pickles as Python 2 cPickle did for the CIFAR-10 batches (protocol 2): str and bytes as
    byte strings (SHORT_BINSTRING / BINSTRING, no `_codecs.encode` global) and the ndarray reconstructor
    under its numpy 1 name, numpy.core.multiarray._reconstruct."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_string(self, obj: bytes | str) -> None:
        raw = obj.encode("latin-1") if isinstance(obj, str) else obj
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    dispatch[bytes] = save_py2_string
    dispatch[str] = save_py2_string

    def reducer_override(self, obj: object) -> object:
        if isinstance(obj, np.dtype):  # Python 2 numpy wrote the dtype's flags as the ints 0 and 1
            func, args, state = obj.__reduce__()
            return func, (args[0], int(args[1]), int(args[2])), state
        return NotImplemented

    def save_global(self, obj: object, name: str | None = None) -> None:
        if obj is np.zeros(0).__reduce__()[0]:
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n")
            self.memoize(obj)
            return
        super().save_global(obj, name)


def py2_pickle(obj: object) -> bytes:
    """`obj` pickled the way Python 2 cPickle (protocol 2) wrote the CIFAR-10 batches."""
    import io

    buf = io.BytesIO()
    Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def random_batch(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic pixels uint8 (n, 3072) and labels int64 (n,) in 0..9 for batch `seed`."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, PIXELS), dtype=np.uint8), rng.integers(0, 10, size=n).astype(np.int64)


def batch_dict(data: np.ndarray, labels: np.ndarray, label: str) -> dict[bytes, object]:
    """The dict of a real batch: b'data' ndarray, b'labels' list of int, b'batch_label', b'filenames'."""
    return {
        b"batch_label": label.encode(),
        b"labels": [int(v) for v in labels],
        b"data": np.ascontiguousarray(data, dtype=np.uint8),
        b"filenames": [f"image_{i:05d}.png".encode() for i in range(len(labels))],
    }


def batches(sizes: tuple[int, ...] = (7, 5, 6, 4, 3), test_size: int = 5, seed: int = 0
            ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Contents of the six files, keyed data_batch_1..5 and test_batch; sizes[i] images in batch i+1."""
    out = {f"data_batch_{i + 1}": random_batch(1000 * seed + i + 1, n) for i, n in enumerate(sizes)}
    out["test_batch"] = random_batch(1000 * seed, test_size)
    return out


def write_python(folder: Path, content: dict[str, tuple[np.ndarray, np.ndarray]]) -> Path:
    """The python-pickle version of `content` in `folder` (made if needed); returns `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, (data, labels) in content.items():
        label = "testing batch 1 of 1" if name == "test_batch" else f"training batch {name[-1]} of 5"
        (folder / name).write_bytes(py2_pickle(batch_dict(data, labels, label)))
    return folder


def write_binary(folder: Path, content: dict[str, tuple[np.ndarray, np.ndarray]]) -> Path:
    """The binary version of `content` (records: label byte + 3072 pixel bytes) in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, (data, labels) in content.items():
        records = np.concatenate([labels.astype(np.uint8)[:, None], data], axis=1)
        (folder / f"{name}.bin").write_bytes(records.tobytes())
    return folder


def write_cifar10(folder: Path, fmt: str = "python", sizes: tuple[int, ...] = (7, 5, 6, 4, 3), test_size: int = 5,
                  seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """A small CIFAR-10 directory ('python' or 'binary' format) in `folder`; returns what was written."""
    content = batches(sizes, test_size, seed)
    (write_python if fmt == "python" else write_binary)(folder, content)
    return content


def expected(content: dict[str, tuple[np.ndarray, np.ndarray]], split: str) -> tuple[np.ndarray, np.ndarray]:
    """What reading `split` of `content` must give: images (n, 3, 32, 32) uint8, labels int64."""
    names = [f"data_batch_{i}" for i in range(1, TRAIN_BATCHES + 1)] if split == "train" else ["test_batch"]
    data = np.concatenate([content[n][0] for n in names])
    return data.reshape(-1, 3, 32, 32), np.concatenate([content[n][1] for n in names])
