"""CIFAR-10 reader: both file formats read back exactly, row subsets, normalisation, hostile and broken files."""

from __future__ import annotations

import os
import pickle
import pickletools
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from crpsgd_mpi.data import cifar10
from crpsgd_mpi.data.cifar10 import CIFAR10_MEAN, CIFAR10_STD, count_rows, find_cifar10, normalize, read_cifar10
from crpsgd_mpi.errors import InputError

sys.path.insert(0, str(Path(__file__).parent))
from cifar_files import batch_dict, batches, expected, py2_pickle, random_batch, write_binary, write_python

SIZES = (7, 5, 6, 4, 3)


@pytest.fixture
def content() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return batches(SIZES, 5, seed=3)


def refused(tmp_path: Path, name: str = "data_batch_1", rows: np.ndarray | None = None) -> InputError:
    """The InputError of reading the split that holds file `name` (one line, naming that file)."""
    with pytest.raises(InputError) as info:
        read_cifar10(tmp_path, "test" if name.startswith("test") else "train", rows)
    err = info.value
    assert err.field == "dataset" and err.value == str(tmp_path / name), str(err)
    assert "\n" not in str(err) and "\r" not in str(err)
    return err


@pytest.mark.parametrize("fmt", ["python", "binary"])
def test_reads_back_what_was_written(tmp_path: Path, fmt: str, content: dict) -> None:
    (write_python if fmt == "python" else write_binary)(tmp_path, content)
    layout = find_cifar10(tmp_path)
    assert layout == cifar10.Cifar10Layout(tmp_path, fmt)
    assert count_rows(layout, "train") == list(SIZES) and count_rows(layout, "test") == [5]
    for split in ("train", "test"):
        images, labels = read_cifar10(tmp_path, split)
        want_images, want_labels = expected(content, split)
        assert images.dtype == np.uint8 and images.shape == want_images.shape
        assert labels.dtype == np.int64
        np.testing.assert_array_equal(images, want_images)
        np.testing.assert_array_equal(labels, want_labels)


@pytest.mark.parametrize("fmt", ["python", "binary"])
def test_row_subsets_in_any_order(tmp_path: Path, fmt: str, content: dict) -> None:
    (write_python if fmt == "python" else write_binary)(tmp_path, content)
    want_images, want_labels = expected(content, "train")
    rng = np.random.default_rng(5)
    for rows in (rng.permutation(25), rng.choice(25, 9, replace=False), np.array([24, 0, 3, 3, 12, 7]),
                 np.array([2, 1]), np.array([], dtype=np.int64), np.arange(7, 18)):
        images, labels = read_cifar10(tmp_path, "train", rows)
        np.testing.assert_array_equal(images, want_images[rows])
        np.testing.assert_array_equal(labels, want_labels[rows])
    with pytest.raises(ValueError, match="out of range"):
        read_cifar10(tmp_path, "train", np.array([3, 25]))
    with pytest.raises(ValueError, match="negative"):
        read_cifar10(tmp_path, "train", np.array([-1]))


def test_pickle_and_binary_agree_and_binary_preferred(tmp_path: Path, content: dict) -> None:
    write_python(tmp_path / "cifar-10-batches-py", content)
    assert find_cifar10(tmp_path).fmt == "python"
    py = read_cifar10(tmp_path, "train")
    write_binary(tmp_path / "cifar-10-batches-bin", content)
    layout = find_cifar10(tmp_path)
    assert layout == cifar10.Cifar10Layout(tmp_path / "cifar-10-batches-bin", "binary")
    binary = read_cifar10(layout, "train")
    for a, b in zip(py, binary):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)


def test_helper_files_are_python2_style_pickles(tmp_path: Path, content: dict) -> None:
    """The written batches hold only the three numpy globals of the real files and no `_codecs.encode`,
    and the plain (unrestricted) unpickler with encoding='bytes' reads the same content."""
    write_python(tmp_path, content)
    raw = (tmp_path / "data_batch_1").read_bytes()
    ops = list(pickletools.genops(raw))
    assert raw[:2] == b"\x80\x02"
    assert {arg for op, arg, _ in ops if op.name == "GLOBAL"} == {
        "numpy.core.multiarray _reconstruct", "numpy ndarray", "numpy dtype"}
    assert not {op.name for op, _, _ in ops} & {"BINUNICODE", "SHORT_BINUNICODE", "BINBYTES", "STACK_GLOBAL"}
    plain = pickle.loads(raw, encoding="bytes")
    assert set(plain) == {b"data", b"labels", b"batch_label", b"filenames"}
    np.testing.assert_array_equal(plain[b"data"], content["data_batch_1"][0])
    assert plain[b"labels"] == content["data_batch_1"][1].tolist()


def test_normalize() -> None:
    images, _ = random_batch(7, 6)
    images = images.reshape(-1, 3, 32, 32)
    out = normalize(images)
    assert out.dtype == np.float32 and out.shape == images.shape
    mean = np.array(CIFAR10_MEAN)[None, :, None, None]
    std = np.array(CIFAR10_STD)[None, :, None, None]
    np.testing.assert_allclose(out, (images / 255.0 - mean) / std, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(normalize(images[:2]), out[:2])
    levels = np.arange(256, dtype=np.float32) / np.float32(255)
    for c, (m, s) in enumerate(zip(CIFAR10_MEAN, CIFAR10_STD)):  # each step a float32 operation: exact bits
        np.testing.assert_array_equal(out[:, c], ((levels - np.float32(m)) / np.float32(s))[images[:, c]])
    with pytest.raises(ValueError):
        normalize(images.astype(np.float32))


# ---- hostile and broken files -----------------------------------------------------------------------

class _RunsCommand:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_pickle_running_a_command_is_refused(tmp_path: Path, content: dict, protocol: int) -> None:
    """The os.system global is refused before anything runs (protocol 2 is written Python 2 style: a
    Python 3 protocol-2 pickle would first be refused for its `_codecs.encode` global)."""
    write_python(tmp_path, content)
    marker = tmp_path / "marker"
    data, labels = content["data_batch_1"]
    hostile = batch_dict(data, labels, "training batch 1 of 5")
    hostile[b"batch_label"] = _RunsCommand(marker)
    raw = py2_pickle(hostile) if protocol == 2 else pickle.dumps(hostile, protocol=protocol)
    (tmp_path / "data_batch_1").write_bytes(raw)
    err = refused(tmp_path)
    assert not marker.exists()
    assert f"refused: pickle references {os.system.__module__}.system" in err.reason


def test_refused_global_is_echoed_on_one_line(tmp_path: Path, content: dict) -> None:
    write_python(tmp_path, content)
    module = b"os\nINJECTED LINE\x1b[31m"
    forged = (b"\x80\x04\x8c" + bytes([len(module)]) + module + b"\x8c\x06system\x93)R.")
    (tmp_path / "data_batch_2").write_bytes(forged)
    err = refused(tmp_path, "data_batch_2")
    assert "refused: pickle references os?INJECTED LINE?[31m.system" in err.reason


def test_other_unsafe_pickles(tmp_path: Path, content: dict) -> None:
    write_python(tmp_path, content)
    (tmp_path / "data_batch_3").write_bytes(py2_pickle({b"data": eval, b"labels": []}))
    assert "pickle references __builtin__.eval" in refused(tmp_path, "data_batch_3").reason
    (tmp_path / "data_batch_3").write_bytes(pickle.dumps({"data": b"x"}, protocol=2))  # Python 3 bytes, protocol 2
    assert "pickle references _codecs.encode" in refused(tmp_path, "data_batch_3").reason
    persistent = b"\x80\x02X\x01\x00\x00\x00aQ."  # BINPERSID
    (tmp_path / "data_batch_3").write_bytes(persistent)
    assert "refused" in refused(tmp_path, "data_batch_3").reason


def test_truncated_pickle_and_forged_length(tmp_path: Path, content: dict) -> None:
    write_python(tmp_path, content)
    path = tmp_path / "test_batch"
    raw = path.read_bytes()
    for cut in (0, 1, 90, len(raw) // 2, len(raw) - 1):
        path.write_bytes(raw[:cut])
        assert "not a readable CIFAR-10 batch pickle" in refused(tmp_path, "test_batch").reason
    path.write_bytes(b"\x80\x02T" + struct.pack("<i", 2**31 - 1) + b"abc")  # claims 2 GiB, holds 3 bytes
    refused(tmp_path, "test_batch")
    for opcode in (b"\x8e", b"\x96"):  # BINBYTES8, BYTEARRAY8 claiming 1 TiB
        path.write_bytes(b"\x80\x05" + opcode + struct.pack("<Q", 2**40) + b"abc")
        refused(tmp_path, "test_batch")


def test_truncated_binary(tmp_path: Path, content: dict) -> None:
    write_binary(tmp_path, content)
    path = tmp_path / "data_batch_4.bin"
    path.write_bytes(path.read_bytes()[:-1])
    err = refused(tmp_path, "data_batch_4.bin")
    assert "not a positive multiple of 3073" in err.reason
    path.write_bytes(b"")
    refused(tmp_path, "data_batch_4.bin", rows=np.array([0]))


def test_binary_label_out_of_range(tmp_path: Path, content: dict) -> None:
    write_binary(tmp_path, content)
    path = tmp_path / "data_batch_2.bin"
    raw = bytearray(path.read_bytes())
    raw[3 * 3073] = 10
    path.write_bytes(bytes(raw))
    assert "record 3 has label 10" in refused(tmp_path, "data_batch_2.bin").reason
    read_cifar10(tmp_path, "train", np.array([0, 7, 8]))  # rows not holding the bad record read fine


def _rewrite(tmp_path: Path, content: dict, **changes: object) -> None:
    data, labels = content["data_batch_5"]
    batch = batch_dict(data, labels, "training batch 5 of 5")
    batch.update({k.encode(): v for k, v in changes.items()})
    (tmp_path / "data_batch_5").write_bytes(py2_pickle(batch))


@pytest.mark.parametrize(("changes", "reason"), [
    ({"data": np.zeros((3, 3071), np.uint8)}, "'data' must be a uint8 array (n, 3072); got uint8 array (3, 3071)"),
    ({"data": np.zeros((3, 3072), np.float32)}, "'data' must be a uint8 array"),
    ({"data": np.zeros((3, 3, 1024), np.uint8)}, "'data' must be a uint8 array"),
    ({"data": np.zeros((0, 3072), np.uint8), "labels": [], "filenames": []}, "holds no images"),
    ({"data": [1, 2, 3]}, "got list"),
    ({"labels": [1, 2]}, "2 labels for 3 images"),
    ({"labels": [1, 10, 2]}, "label 10 of image 1 is outside 0..9"),
    ({"labels": [1, 2, -1]}, "label -1 of image 2 is outside 0..9"),
    ({"labels": [1, 2, 2**70]}, "outside 0..9"),
    ({"labels": [1.0, 2.0, 3.0]}, "must be a list of integers"),
    ({"labels": [True, False, True]}, "must be a list of integers"),
    ({"labels": b"\x01\x02\x03"}, "must be a list of integers"),
    ({"filenames": [b"a"]}, "'filenames' must list one name per image"),
])
def test_misshapen_batches(tmp_path: Path, content: dict, changes: dict, reason: str) -> None:
    write_python(tmp_path, content)
    _rewrite(tmp_path, content, **changes)
    assert reason in refused(tmp_path, "data_batch_5").reason


def test_not_a_dict_or_missing_entries(tmp_path: Path, content: dict) -> None:
    write_python(tmp_path, content)
    (tmp_path / "data_batch_5").write_bytes(py2_pickle([1, 2, 3]))
    assert "holds a list, not a dict" in refused(tmp_path, "data_batch_5").reason
    (tmp_path / "data_batch_5").write_bytes(py2_pickle({b"labels": [1]}))
    assert "lacks the 'data' or 'labels' entry" in refused(tmp_path, "data_batch_5").reason


def test_missing_files_and_empty_directory(tmp_path: Path, content: dict) -> None:
    with pytest.raises(InputError, match="no CIFAR-10 batches found") as info:
        find_cifar10(tmp_path)
    assert info.value.value == str(tmp_path)
    with pytest.raises(InputError, match="no such directory"):
        find_cifar10(tmp_path / "absent")
    write_binary(tmp_path / "cifar-10-batches-bin", content)
    (tmp_path / "cifar-10-batches-bin" / "data_batch_3.bin").unlink()
    with pytest.raises(InputError, match="missing CIFAR-10 batch file") as info:
        read_cifar10(tmp_path, "test")
    assert info.value.value == str(tmp_path / "cifar-10-batches-bin" / "data_batch_3.bin")


@pytest.mark.parametrize("fmt", ["python", "binary"])
def test_unreadable_file(tmp_path: Path, content: dict, fmt: str, monkeypatch: pytest.MonkeyPatch) -> None:
    (write_python if fmt == "python" else write_binary)(tmp_path, content)
    name = "test_batch" if fmt == "python" else "test_batch.bin"

    def denied(path: Path, mode: str = "r") -> object:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(cifar10, "open", denied, raising=False)  # as root, chmod 0 would not stop a read
    assert "cannot read: [Errno 13] Permission denied" in refused(tmp_path, name).reason


def test_module_does_not_import_torch() -> None:
    code = "import sys, crpsgd_mpi.data.cifar10; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
