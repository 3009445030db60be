"""Hostile input: every value checked against what the machine can do, every file reader naming its file."""

from __future__ import annotations

import gzip
import os
import stat
import struct
import time
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import HEART, run_cli
from crpsgd_mpi import limits
from crpsgd_mpi.config import Config, cli_value
from crpsgd_mpi.data import HDF5Source, LibsvmSource, load
from crpsgd_mpi.data.base import check_finite, check_source
from crpsgd_mpi.data.fmnist import FashionMNISTSource
from crpsgd_mpi.errors import InputError
from crpsgd_mpi.schedules import Geometric

ROOT = os.geteuid() == 0
BIG = 10**12  # bytes or rows beyond any machine

# ---- the front door: one line naming the field (and the file), exit 2, nothing left ------------------------


def refused(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], field: str,
            path: str | None = None) -> str:
    """Run the CLI in process; assert the promise of bad input; return the line."""
    out = tmp_path / "out" / "t.h5"
    capsys.readouterr()
    try:
        code = run_cli("--backend", "local", *args, "--out", str(out))
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert code == 2, captured.err
    assert len(lines) == 1, lines
    line = lines[0]
    assert line.startswith("crpsgd_mpi: error: ") and "Traceback" not in captured.err + captured.out, line
    assert line.startswith(f"crpsgd_mpi: error: {field}="), (field, line)
    if path is not None:
        assert repr(str(path)) in line, (path, line)
    assert not out.exists()
    if out.parent.exists():
        assert not any(out.parent.iterdir())
    assert not list(tmp_path.rglob("*.creating"))
    return line


#: class 4, command line: (argv, field). Types (strict ASCII digits, finite numbers), ranges, int64, memory.
CLI_CASES: list[tuple[list[str], str] | object] = [
    pytest.param(["--T", "\u0663\u0660\u0660"], "T", id="T-arabic-indic-digits"),
    pytest.param(["--T", "\uff11\uff10\uff10"], "T", id="T-fullwidth-digits"),
    pytest.param(["--samples", "1_000"], "samples", id="samples-underscore"),
    pytest.param(["--T", " 50"], "T", id="T-space"),
    pytest.param(["--workers", "1e3"], "workers", id="workers-exponent"),
    pytest.param(["--seed", "\u0663"], "seed", id="seed-unicode-digit"),
    pytest.param(["--period", "\u0663", "--algorithm", "local-sgd"], "period", id="period-unicode-digit"),
    pytest.param(["--rho", "abc"], "rho", id="rho-word"),
    pytest.param(["--rho", "\uff11.5"], "rho", id="rho-fullwidth"),
    pytest.param(["--rho", "1_0.5"], "rho", id="rho-underscore"),
    pytest.param(["--rho", "nan"], "rho", id="rho-nan"),
    pytest.param(["--rho", "inf"], "rho", id="rho-inf"),
    pytest.param(["--gamma", "1e400"], "gamma", id="gamma-overflows-to-inf"),
    pytest.param(["--gamma", "-0.0"], "gamma", id="gamma-negative-zero"),
    pytest.param(["--lam", "-0.0"], "lam", id="lam-negative-zero"),
    pytest.param(["--lam", "1e300"], "lam", id="lam-huge"),
    pytest.param(["--theta", "1e300", "--algorithm", "catalyst"], "theta", id="theta-huge"),
    pytest.param(["--condition", "inf"], "condition", id="condition-inf"),
    pytest.param(["--condition", "0.5"], "condition", id="condition-below-1"),
    pytest.param(["--label-noise", "nan"], "label_noise", id="label-noise-nan"),
    pytest.param(["--label-noise", "0.5"], "label_noise", id="label-noise-half"),
    pytest.param(["--stall-timeout", "1e300"], "stall_timeout", id="stall-timeout-huge"),
    pytest.param(["--stall-timeout", "nan"], "stall_timeout", id="stall-timeout-nan"),
    pytest.param(["--T", "100000000000000000000"], "T", id="T-beyond-int64"),
    pytest.param(["--T", str(2**62 + 1)], "T", id="T-beyond-2^62"),
    pytest.param(["--T", "9" * 60], "T", id="T-60-digits"),
    pytest.param(["--seed", str(10**41)], "seed", id="seed-beyond-seedsequence-int64"),
    pytest.param(["--data-seed", str(2**63)], "data_seed", id="data-seed-2^63"),
    pytest.param(["--B1", str(2**63)], "B1", id="B1-2^63"),
    pytest.param(["--eval-points", str(BIG)], "eval_points", id="eval-points-beyond-T"),
    pytest.param(["--T", "100", "--eval-points", "102"], "eval_points", id="eval-points-T+2"),
    pytest.param(["--T", str(10**15), "--eval-points", str(BIG)], "eval_points", id="eval-points-memory"),
    pytest.param(["--samples", str(BIG)], "samples", id="samples-permutation-memory"),
    pytest.param(["--samples", str(10**8), "--features", "1000"], "samples", id="samples-x-features"),
    pytest.param(["--features", str(BIG)], "features", id="features-memory"),
    pytest.param(["--algorithm", "psgd", "--T", str(10**9), "--batch-size", str(10**9)], "batch_size",
                 id="batch-size-buffers"),
    pytest.param(["--T", str(10**9), "--B1", str(10**9)], "B1", id="B1-buffers"),
    pytest.param(["--T", str(BIG), "--rho", "1.5"], "T", id="T-largest-geometric-batch"),
    pytest.param(["--algorithm", "local-sgd", "--T", str(10**9), "--period", "1", "--local-batch", str(10**9)],
                 "local_batch", id="local-batch-buffers"),
    pytest.param(["--algorithm", "local-sgd", "--local-batch", "20000"], "local_batch", id="local-batch-beyond-T"),
    pytest.param(["--algorithm", "local-sgd", "--period", str(BIG)], "period", id="period-beyond-T"),
    pytest.param(["--workers", str(10**7), "--samples", str(10**7)], "workers", id="workers-memory"),
    pytest.param(["--workers", "30000"], "workers", id="workers-beyond-samples"),
    pytest.param(["--fault", "10:1"], "fault", id="fault-worker-outside-N"),
    pytest.param(["--fault", "\u0663:1"], "fault", id="fault-unicode-digit"),
    pytest.param(["--fault", f"1:{10**30}"], "fault", id="fault-round-beyond-int64"),
    pytest.param(["--fault=-1:1"], "fault", id="fault-negative"),
    pytest.param(["--fault", "1:2:explode"], "fault", id="fault-unknown-way"),
    pytest.param(["--checkpoint-every", "0"], "checkpoint_every", id="checkpoint-every-zero"),
    pytest.param(["--checkpoint-every=-5"], "checkpoint_every", id="checkpoint-every-negative"),
    pytest.param(["--checkpoint-every", "nans"], "checkpoint_every", id="checkpoint-every-nan-seconds"),
    pytest.param(["--checkpoint-every", "1e999s"], "checkpoint_every", id="checkpoint-every-infinite"),
    pytest.param(["--checkpoint-every", "5d"], "checkpoint_every", id="checkpoint-every-unknown-unit"),
    pytest.param(["--checkpoint-every", "٣"], "checkpoint_every", id="checkpoint-every-unicode-digit"),
    pytest.param(["--resume", "x\x00y"], "resume", id="resume-nul-in-path"),
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("args, field", CLI_CASES)
def test_cli_values(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], field: str) -> None:
    refused(tmp_path, capsys, ["--workers", "10", *args] if "--workers" not in args else args, field)


#: class 4, TOML: (file text, field): the same checks as the command line.
TOML_CASES = [
    pytest.param("T = 1e300\n", "T", id="T-float-huge"),
    pytest.param("T = 9223372036854775807\n", "T", id="T-int64-max"),
    pytest.param("T = 99999999999999999999\n", "T", id="T-beyond-int64"),
    pytest.param("T = 2.5\n", "T", id="T-fraction"),
    pytest.param("T = true\n", "T", id="T-bool"),
    pytest.param("T = 1979-05-27\n", "T", id="T-date"),
    pytest.param("T = [1]\n", "T", id="T-array"),
    pytest.param("rho = nan\n", "rho", id="rho-nan"),
    pytest.param("rho = inf\n", "rho", id="rho-inf"),
    pytest.param('rho = "1.5"\n', "rho", id="rho-string"),
    pytest.param(f"rho = {10**400}\n", "rho", id="rho-int-beyond-float"),
    pytest.param("intercept = 1\n", "intercept", id="bool-int"),
    pytest.param("lam = -0.0\n", "lam", id="lam-negative-zero"),
    pytest.param("label_noise = -inf\n", "label_noise", id="label-noise-minus-inf"),
    pytest.param(f"samples = {BIG}\n", "samples", id="samples-memory"),
    pytest.param("seed = 9223372036854775808\n", "seed", id="seed-2^63"),
    pytest.param('dataset = "a\\u0000b.h5"\n', "dataset", id="dataset-NUL"),
    pytest.param('fmnist_dir = "x\\u0000"\n', "fmnist_dir", id="fmnist-dir-NUL"),
    pytest.param(f"T = {10**15}\neval_points = {BIG}\n", "eval_points", id="eval-points-memory"),
    pytest.param('period = "\u0663"\nalgorithm = "local-sgd"\n', "period", id="period-unicode-digit"),
    pytest.param("checkpoint_every = 2.5\n", "checkpoint_every", id="checkpoint-every-float"),
    pytest.param("checkpoint_every = true\n", "checkpoint_every", id="checkpoint-every-bool"),
    pytest.param("checkpoint_every = -3\n", "checkpoint_every", id="checkpoint-every-negative-int"),
    pytest.param('fault = "5:1"\nworkers = 2\n', "fault", id="fault-outside-N"),
    pytest.param("workers = 0\n", "workers", id="workers-zero"),
    pytest.param("stall-timeout = -1.0\n", "stall_timeout", id="stall-timeout-negative"),
    pytest.param('"a\\nb" = 1\n', "a?b", id="key-with-newline"),
    pytest.param("[base]\nT = 5\n", "base", id="table"),
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("text, field", TOML_CASES)
def test_toml_values(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, field: str) -> None:
    p = tmp_path / "c.toml"
    p.write_text(text, encoding="utf-8")
    refused(tmp_path, capsys, ["--config", str(p)], field)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("field, cli_text, toml_text", [
    pytest.param("rho", "abc", '"abc"'), pytest.param("T", "1e3", '"1e3"'),
    ("rho", "nan", "nan"), ("gamma", "inf", "inf"), ("T", "0", "0"), ("seed", str(2**63), str(2**63)),
    ("samples", str(BIG), str(BIG)), ("label_noise", "0.7", "0.7"),
])
def test_cli_and_toml_say_the_same(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                   field: str, cli_text: str, toml_text: str) -> None:
    monkeypatch.setenv(limits.MEMORY_ENV, str(16 * 10**9))  # the memory message quotes it: the same in both runs
    flag = "--" + field.replace("_", "-")
    by_cli = refused(tmp_path, capsys, [flag, cli_text], field)
    p = tmp_path / "c.toml"
    p.write_text(f"{field} = {toml_text}\n")
    assert refused(tmp_path, capsys, ["--config", str(p)], field) == by_cli


# ---- data files: (builder of the file in a folder -> path, args, field); the line names the file -----------


def svm(text: bytes) -> Callable[[Path], Path]:
    def build(folder: Path) -> Path:
        p = folder / "d.svm"
        p.write_bytes(text)
        return p
    return build


def h5(**datasets: object) -> Callable[[Path], Path]:
    def build(folder: Path) -> Path:
        p = folder / "d.h5"
        with h5py.File(p, "w") as f:
            for name, value in datasets.items():
                if isinstance(value, str) and value == "group":
                    f.create_group(name)
                else:
                    f[name] = value
        return p
    return build


def special(kind: str, name: str) -> Callable[[Path], Path]:
    def build(folder: Path) -> Path:
        p = folder / name
        if kind == "fifo":
            os.mkfifo(p)
        elif kind == "dir":
            p.mkdir()
        elif kind == "missing":
            pass
        elif kind == "truncated":
            h5(X=np.ones((50, 3)), y=np.ones(50))(folder)
            data = (folder / "d.h5").read_bytes()
            p.write_bytes(data[: len(data) // 2])
        elif kind == "text":
            p.write_text("not hdf5 at all\n")
        elif kind == "proc-noread":
            p.symlink_to("/proc/sys/vm/drop_caches")
        return p
    return build


def _empty_h5(folder: Path, rows: int, cols: int) -> Path:
    """/X and /y of the given shape that HDF5 stores in a few bytes (no chunk written)."""
    p = folder / "d.h5"
    with h5py.File(p, "w") as f:
        f.create_dataset("X", shape=(rows, cols), dtype="f8", chunks=(min(rows, 64), min(cols, 64)))
        f.create_dataset("y", shape=(rows,), dtype="f8", chunks=(min(rows, 64),))
    return p


def filtered(folder: Path) -> Path:
    p = folder / "d.h5"
    with h5py.File(p, "w") as f:
        f.create_dataset("X", data=np.ones((20, 3)), compression=32001, allow_unknown_filter=True)
        f["y"] = np.ones(20)
    return p


Y20 = np.where(np.arange(20) % 2, 1.0, -1.0)
PROC_NOREAD = Path("/proc/sys/vm/drop_caches")
proc_noread = pytest.mark.skipif(not PROC_NOREAD.is_file() or os.access(PROC_NOREAD, os.R_OK),
                                 reason="needs a /proc file that refuses reading")
FILE_CASES = [
    pytest.param(svm(b""), "no samples", id="libsvm-empty"),
    pytest.param(svm(b"# only a comment\n\n"), "no samples", id="libsvm-only-comments"),
    pytest.param(svm(b"1 1000000000:1\n-1 1:2\n"), "model-sized vectors", id="libsvm-index-1e9-memory"),
    pytest.param(svm(b"1 1000000000000:1\n-1 1:2\n"), "indices must be below", id="libsvm-index-1e12-overflow"),
    pytest.param(svm(b"1 100000000000000000000:1\n-1 1:2\n"), "too large", id="libsvm-index-1e20"),
    pytest.param(svm(b"1 -5:1\n-1 1:2\n"), "Invalid index", id="libsvm-negative-index"),
    pytest.param(svm(b"hello world\n"), "not a LIBSVM", id="libsvm-garbage"),
    pytest.param(svm(bytes(range(256)) * 8), "not a LIBSVM", id="libsvm-binary-junk"),
    pytest.param(svm(b"\xff\xfe1 1:0.5\n"), "not a LIBSVM", id="libsvm-not-utf8"),
    pytest.param(svm(b"1 1:0.5\x00\n-1 2:1\n"), "not a LIBSVM", id="libsvm-NUL"),
    pytest.param(svm(b"1 3:1 1:2\n-1 2:1\n"), "sorted", id="libsvm-unsorted-indices"),
    pytest.param(svm(b"1 1:1e300\n-1 2:1\n1 1:1\n"), "too large", id="libsvm-smoothness-inf"),
    pytest.param(svm(b"1 1:1e80\n-1 2:1\n1 1:1\n"), "too large", id="libsvm-smoothness-1e160"),
    pytest.param(svm(b"1 1:1e400\n-1 2:1\n"), "NaN or inf", id="libsvm-inf"),
    pytest.param(svm(b"nan 1:1\n-1 2:1\n"), "binary", id="libsvm-nan-label"),
    pytest.param(svm(b"1 1:1\n2 1:1\n3 1:1\n"), "binary", id="libsvm-multiclass"),
    pytest.param(h5(X="group", y=Y20), "is a group", id="hdf5-X-group"),
    pytest.param(h5(X=np.array([[b"a", b"b"]] * 20), y=Y20), "not numbers", id="hdf5-X-strings"),
    pytest.param(h5(X=np.array([["a", "b"]] * 20, dtype=object).astype(h5py.string_dtype()), y=Y20), "not numbers",
                 id="hdf5-X-object-strings"),
    pytest.param(h5(X=np.zeros((20, 2), dtype=[("a", "f8"), ("b", "i4")]), y=Y20), "not numbers",
                 id="hdf5-X-compound"),
    pytest.param(h5(X=np.zeros((20, 2), dtype=complex), y=Y20), "not numbers", id="hdf5-X-complex"),
    pytest.param(h5(X=np.ones((20, 3)), y=np.array([b"x"] * 20)), "/y holds", id="hdf5-y-strings"),
    pytest.param(h5(X=np.ones((20, 3, 2)), y=Y20), "2-D", id="hdf5-X-rank-3"),
    pytest.param(h5(X=np.ones(20), y=Y20), "2-D", id="hdf5-X-rank-1"),
    pytest.param(h5(X=np.ones((20, 3)), y=Y20[:10]), "equal length", id="hdf5-y-mismatch"),
    pytest.param(h5(X=np.ones((20, 3)), y=np.ones((20, 2))), "2-D", id="hdf5-y-2d"),
    pytest.param(h5(X=np.ones((0, 3)), y=np.ones(0)), "no samples", id="hdf5-no-rows"),
    pytest.param(h5(X=np.ones((20, 0)), y=Y20), "no columns", id="hdf5-no-columns"),
    pytest.param(h5(X=np.ones((20, 3))), "/y is missing", id="hdf5-no-y"),
    pytest.param(h5(X=h5py.SoftLink("/nowhere"), y=Y20), "cannot be opened", id="hdf5-dangling-link"),
    pytest.param(h5(X=h5py.ExternalLink("missing.h5", "/X"), y=Y20), "cannot be opened", id="hdf5-external-link"),
    pytest.param(h5(X=np.full((20, 3), 1e300), y=Y20), "too large", id="hdf5-smoothness-inf"),
    pytest.param(h5(X=np.full((20, 3), np.nan), y=Y20), "NaN", id="hdf5-nan"),
    pytest.param(h5(X=np.ones((20, 3)), y=np.full(20, 7.0)), "binary", id="hdf5-labels"),
    pytest.param(filtered, "filter 32001", id="hdf5-filter-unavailable"),
    pytest.param(lambda d: _empty_h5(d, BIG, 3), "needs about", id="hdf5-1e12-rows-memory"),
    pytest.param(lambda d: _empty_h5(d, 20, 10**11), "needs about", id="hdf5-1e11-columns-memory"),
    pytest.param(special("truncated", "t.h5"), "not a readable HDF5", id="hdf5-truncated"),
    pytest.param(special("text", "t.h5"), "not a readable HDF5", id="hdf5-not-hdf5"),
    pytest.param(special("missing", "none.h5"), "no such file", id="hdf5-missing"),
    pytest.param(special("dir", "dir.h5"), "directory", id="hdf5-directory"),
    pytest.param(special("fifo", "fifo.h5"), "FIFO", id="hdf5-fifo"),
    pytest.param(special("fifo", "fifo.svm"), "FIFO", id="libsvm-fifo"),
    pytest.param(special("dir", "folder.svm"), "directory", id="libsvm-directory"),
    pytest.param(special("proc-noread", "noread.h5"), "Permission denied", marks=proc_noread,
                 id="hdf5-proc-refuses-reading"),
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("build, reason", FILE_CASES)
def test_data_files(tmp_path: Path, capsys: pytest.CaptureFixture[str], build: Callable[[Path], Path],
                    reason: str) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    path = build(folder)
    line = refused(tmp_path, capsys, ["--workers", "2", "--T", "100", "--dataset", str(path)], "dataset", str(path))
    assert reason in line


@pytest.mark.timeout(60)
@pytest.mark.parametrize("path, reason", [
    pytest.param("/proc/sys/vm/drop_caches", "Permission denied", marks=proc_noread, id="proc-refuses-open"),
    pytest.param("/proc/self/mem", "Input/output error", id="proc-self-mem-refuses-read"),
    pytest.param("/dev/null", "character device", id="dev-null"),
])
def test_dataset_special_paths(tmp_path: Path, capsys: pytest.CaptureFixture[str], path: str, reason: str) -> None:
    line = refused(tmp_path, capsys, ["--workers", "2", "--dataset", path], "dataset", path)
    assert reason in line


@pytest.mark.timeout(30)
@pytest.mark.skipif(ROOT, reason="root reads a file whatever its mode (the /proc cases cover permission as root)")
def test_dataset_without_read_permission(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "secret.svm"
    p.write_bytes(HEART.read_bytes())
    p.chmod(0)
    assert "Permission denied" in refused(tmp_path, capsys, ["--workers", "2", "--dataset", str(p)], "dataset", str(p))


# ---- Fashion-MNIST IDX files, built small (100 images) -------------------------------------------------------


def idx_folder(folder: Path, n: int = 100, labels: bytes | None = None, images: bytes | None = None,
               raw_images: bytes | None = None) -> Path:
    rng = np.random.default_rng(0)
    folder.mkdir(exist_ok=True)
    lab = labels if labels is not None else struct.pack(">II", 0x801, n) + bytes(rng.integers(0, 10, n, dtype=np.uint8))
    img = images if images is not None else (struct.pack(">IIII", 0x803, n, 28, 28)
                                             + rng.integers(0, 256, n * 784, dtype=np.uint8).tobytes())
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(lab, 1))
    (folder / "train-images-idx3-ubyte.gz").write_bytes(raw_images if raw_images is not None else gzip.compress(img, 1))
    return folder


def _pixels(n: int) -> bytes:
    return bytes(n * 784)


def _noise(n: int) -> bytes:
    return np.random.default_rng(n).integers(0, 256, n * 784, dtype=np.uint8).tobytes()


def _half(data: bytes) -> bytes:
    return data[: len(data) // 2]


IMAGES, LABELS = "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"
FMNIST_CASES = [
    pytest.param({"labels": struct.pack(">II", 0x803, 100) + bytes(100)}, LABELS, "magic number", id="labels-magic"),
    pytest.param({"images": struct.pack(">IIII", 0x801, 100, 28, 28) + _pixels(100)}, IMAGES, "magic number",
                 id="images-magic"),
    pytest.param({"images": struct.pack(">IIII", 0x803, 100, 27, 29) + _pixels(100)}, IMAGES, "27 x 29",
                 id="images-dimensions"),
    pytest.param({"labels": struct.pack(">II", 0x801, 90) + bytes(90)}, IMAGES, "100 images for the 90 labels",
                 id="count-mismatch"),
    pytest.param({"labels": struct.pack(">II", 0x801, 100) + bytes(50)}, LABELS, "header says 100 labels",
                 id="labels-short"),
    pytest.param({"labels": struct.pack(">II", 0x801, 100) + bytes(99) + b"\x0c"}, LABELS, "label 12",
                 id="label-outside-0..9"),
    pytest.param({"labels": b"\x00\x00"}, LABELS, "shorter than an IDX header", id="labels-header-truncated"),
    pytest.param({"labels": struct.pack(">II", 0x801, 2**31) + bytes(10)}, LABELS, "items", id="labels-count-huge"),
    pytest.param({"images": struct.pack(">IIII", 0x803, 100, 28, 28) + _pixels(60)}, IMAGES, "truncated",
                 id="images-truncated"),
    pytest.param({"images": struct.pack(">IIII", 0x803, 100, 28, 28) + _pixels(101)}, IMAGES, "more data",
                 id="images-too-long"),
    pytest.param({"raw_images": _half(gzip.compress(struct.pack(">IIII", 0x803, 100, 28, 28) + _noise(100)))},
                 IMAGES, "cannot read", id="gzip-truncated"),
    pytest.param({"raw_images": b"not gzip at all"}, IMAGES, "Not a gzipped file", id="not-gzip"),
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("parts, name, reason", FMNIST_CASES)
def test_fashion_mnist_files(tmp_path: Path, capsys: pytest.CaptureFixture[str], parts: dict[str, bytes], name: str,
                             reason: str) -> None:
    folder = idx_folder(tmp_path / "fm", **parts)
    line = refused(tmp_path, capsys, ["--workers", "2", "--T", "100", "--dataset", "fashion-mnist", "--fmnist-dir",
                                      str(folder)], "fmnist_dir", str(folder / name))
    assert reason in line


@pytest.mark.timeout(60)
def test_fashion_mnist_corrupt_stream_is_caught(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A damaged deflate stream that still inflates to the right length is caught by the gzip trailer's CRC."""
    raw = bytearray(gzip.compress(struct.pack(">IIII", 0x803, 100, 28, 28)
                                  + np.random.default_rng(1).integers(0, 256, 78400, dtype=np.uint8).tobytes(), 1))
    raw[len(raw) // 2] ^= 0xFF
    folder = idx_folder(tmp_path / "fm", raw_images=bytes(raw))
    refused(tmp_path, capsys, ["--workers", "2", "--T", "100", "--dataset", "fashion-mnist", "--fmnist-dir",
                               str(folder)], "fmnist_dir", str(folder / IMAGES))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["fifo", "dir"])
def test_fashion_mnist_special_files(tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str) -> None:
    folder = idx_folder(tmp_path / "fm")
    (folder / IMAGES).unlink()
    os.mkfifo(folder / IMAGES) if kind == "fifo" else (folder / IMAGES).mkdir()
    refused(tmp_path, capsys, ["--workers", "2", "--dataset", "fashion-mnist", "--fmnist-dir", str(folder)],
            "fmnist_dir", str(folder / IMAGES))


@pytest.mark.timeout(120)
def test_small_idx_folder_runs(tmp_path: Path) -> None:
    """The builder's valid files are accepted: the refusals above are about what each case broke."""
    folder = idx_folder(tmp_path / "fm")
    assert run_cli("--backend", "local", "--workers", "2", "--T", "50", "--dataset", "fashion-mnist", "--fmnist-dir",
                   str(folder), "--out", str(tmp_path / "t.h5")) == 0


# ---- configuration files -------------------------------------------------------------------------------------


CONFIG_CASES = [
    pytest.param(lambda d: _write(d / "c.toml", b"T = 100\xff\n"), "not UTF-8", id="not-utf8"),
    pytest.param(lambda d: _write(d / "c.toml", b"#" * (2 << 20)), "at most", id="too-large"),
    pytest.param(lambda d: _write(d / "c.toml", b"T = \n"), "cannot read TOML", id="syntax"),
    pytest.param(lambda d: _write(d / "c.toml", b"T = " + b"[" * 2000 + b"]" * 2000 + b"\n"), "cannot read TOML",
                 id="deep-nesting"),
    pytest.param(lambda d: _write(d / "c.toml", b"T = " + b"9" * 5000 + b"\n"), "cannot read TOML", id="5000-digits"),
    pytest.param(lambda d: _fifo(d / "c.toml"), "FIFO", id="fifo"),
    pytest.param(lambda d: _mkdir(d / "c.toml"), "directory", id="directory"),
    pytest.param(lambda d: d / "none.toml", "no such file", id="missing"),
    pytest.param(lambda d: _write(d / "f", b"x") / "c.toml", "no such file", id="parent-is-a-file"),
    pytest.param(lambda d: Path("/dev/zero"), "character device", id="dev-zero"),
    pytest.param(lambda d: Path("/proc/self/mem"), "Input/output error", id="proc-self-mem"),
    pytest.param(lambda d: PROC_NOREAD, "Permission denied", marks=proc_noread, id="proc-refuses-open"),
]


def _write(p: Path, data: bytes) -> Path:
    p.write_bytes(data)
    return p


def _fifo(p: Path) -> Path:
    os.mkfifo(p)
    return p


def _mkdir(p: Path) -> Path:
    p.mkdir()
    return p


@pytest.mark.timeout(30)
@pytest.mark.parametrize("build, reason", CONFIG_CASES)
def test_config_files(tmp_path: Path, capsys: pytest.CaptureFixture[str], build: Callable[[Path], Path],
                      reason: str) -> None:
    folder = tmp_path / "cfg"
    folder.mkdir()
    path = build(folder)
    start = time.monotonic()
    line = refused(tmp_path, capsys, ["--config", str(path)], "config", str(path))
    assert reason in line and time.monotonic() - start < 10


# ---- unit tests: the strict command-line parser ---------------------------------------------------------------


@pytest.mark.timeout(10)
@pytest.mark.parametrize("field, text, value", [
    ("T", "300", 300), ("T", "+300", 300), ("T", "-0", 0), ("rho", "1.5", 1.5), ("rho", "1e3", 1000.0),
    ("rho", ".5", 0.5), ("rho", "5.", 5.0), ("lam", "-0.0", 0.0), ("gamma", "NaN", None), ("gamma", "-Infinity", None),
    ("period", "7", 7), ("period", "PRSGD", "prsgd"), ("quiet", "yes", True), ("quiet", "off", False),
    ("dataset", "x.h5", "x.h5"), ("intercept", False, False),
])
def test_cli_value_accepts(field: str, text: str, value: object) -> None:
    got = cli_value(field, text)
    if value is None:
        assert isinstance(got, float) and not np.isfinite(got)
    else:
        assert got == value and type(got) is type(value)
    if field == "lam":
        assert str(got) == "0.0"  # negative zero normalised


@pytest.mark.timeout(10)
@pytest.mark.parametrize("field, text", [
    ("T", "\u0663"), ("T", "\uff11"), ("T", "1_0"), ("T", " 1"), ("T", "1 "), ("T", "1.0"), ("T", "0x10"), ("T", ""),
    ("T", "\u00b2"), ("rho", "\uff11.5"), ("rho", "1_0"), ("rho", "1,5"), ("rho", ""), ("rho", "0x1p3"),
    ("rho", "nan(1)"), ("quiet", "maybe"), ("seed", "9" * 50),
])
def test_cli_value_refuses(field: str, text: str) -> None:
    with pytest.raises(InputError) as e:
        cli_value(field, text)
    assert e.value.field == field and "\n" not in str(e.value)


# ---- unit tests: the memory budget --------------------------------------------------------------------------


@pytest.mark.timeout(10)
def test_memory_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(limits.MEMORY_ENV, raising=False)
    avail, who = limits.available_memory()
    assert avail > 0 and who.endswith(("has", "leaves"))
    monkeypatch.setenv(limits.MEMORY_ENV, "1000000000")
    assert limits.available_memory() == (10**9, f"${limits.MEMORY_ENV} says")
    limits.require([limits.Need("samples", 1, 7.9e8, "x")])
    with pytest.raises(InputError) as e:
        limits.require([limits.Need("samples", 1, 5e8, "the data"), limits.Need("features", 2, 4e8, "vectors")])
    assert e.value.field == "samples" and "needs about 900 MB of memory, 500 MB of it for the data" in str(e.value)
    assert "1.0 GB available" in str(e.value) and "80%" in str(e.value)
    with pytest.raises(InputError, match="processes"):
        limits.require([limits.Need("samples", 1, 3e8, "x")], processes=4)
    for bad in ("lots", "-5", "0", "\u0663"):
        monkeypatch.setenv(limits.MEMORY_ENV, bad)
        with pytest.raises(InputError, match=limits.MEMORY_ENV):
            limits.available_memory()


@pytest.mark.timeout(10)
def test_human() -> None:
    assert [limits.human(x) for x in (512, 1500, 2.3e10, 8e12, 1.25e14)] == ["512 B", "1.5 kB", "23.0 GB", "8.0 TB",
                                                                            "125 TB"]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("rho", [1.0000001, 1.0001, 1.01, 1.1, 1.5, 2.0, 3.0, 100.5])
@pytest.mark.parametrize("B1", [1, 3, 1000])
def test_largest_batch_bound_holds(rho: float, B1: int) -> None:
    for T in (B1, 2 * B1 + 1, 10**4, 123_457):
        actual = max(Geometric(B1, rho).within(T))
        bound = Geometric(B1, rho).largest_batch(T)
        assert actual <= bound <= T and (bound <= 2 * actual + 3 or bound == actual)


@pytest.mark.timeout(10)
def test_largest_batch_bound_is_fast_near_one() -> None:
    start = time.monotonic()
    assert Geometric(1, 1.0000000000000002).largest_batch(limits.MAX_T) <= 10**6
    assert Geometric(1, 1.0001).largest_batch(limits.MAX_T) < limits.MAX_T
    assert time.monotonic() - start < 2


@pytest.mark.timeout(60)
def test_plan_refuses_under_a_small_budget_and_accepts_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(limits.MEMORY_ENV, str(10**9))
    cfg = Config(samples=10**6, features=200)  # 2 x 10^6 x 201 x 8 bytes = 3.2 GB of data
    with pytest.raises(InputError) as e:
        check_source(cfg, _Shape(10**6, 200), 10, 10)
    assert e.value.field == "samples" and "the data" in str(e.value)
    check_source(Config(), _Shape(20_000, 50), 10, 10)  # the default run needs a few MB
    monkeypatch.setenv("OMPI_COMM_WORLD_LOCAL_SIZE", "400")  # 400 ranks on this host, each with the whole permutation
    with pytest.raises(InputError, match="400 processes"):
        check_source(Config(samples=10**6, features=2), _Shape(10**6, 2), 400, 1)


class _Shape:
    """A stand-in Source with a shape only (check_source reads nothing else), sized by --samples and --features."""

    def __init__(self, n: int, d: int) -> None:
        self.n_rows, self.n_columns, self.nnz = n, d, None

    def size_options(self, cfg: Config) -> tuple[tuple[str, object], tuple[str, object]]:
        return ("samples", self.n_rows), ("features", self.n_columns)

    def working_needs(self) -> list[limits.Need]:
        return []

    def all_zero(self) -> None:
        return None


# ---- unit tests: the readers ---------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_hdf5_corrupt_chunk_is_named_when_rows_are_read(tmp_path: Path) -> None:
    p = tmp_path / "cz.h5"
    X = np.random.default_rng(0).random((40, 5))
    with h5py.File(p, "w") as f:
        d = f.create_dataset("X", data=X, chunks=(10, 5), compression="gzip")
        f["y"] = np.where(np.arange(40) % 2, 1.0, -1.0)
        info = d.id.get_chunk_info(1)
    with open(p, "r+b") as fh:
        fh.seek(info.byte_offset + 2)
        fh.write(b"\xff" * (info.size - 4))
    source = HDF5Source(str(p))  # the header is intact
    with pytest.raises(InputError) as e:
        source.rows(np.arange(40))
    assert e.value.field == "dataset" and e.value.value == str(p) and "cannot read its rows" in str(e.value)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("dtype", ["f4", "f8", "i2", "u8", "?"])
def test_hdf5_rows_in_place_intercept(tmp_path: Path, dtype: str) -> None:
    p = tmp_path / "d.h5"
    X = (np.random.default_rng(2).random((30, 4)) * 100).astype(dtype)
    with h5py.File(p, "w") as f:
        f["X"], f["y"] = X, np.where(np.arange(30) % 2, 1.0, -1.0)
    idx = np.random.default_rng(3).permutation(30)[:17]
    got, y = HDF5Source(str(p)).rows(idx, intercept=True)
    want = np.hstack([X[idx].astype(np.float64), np.ones((17, 1))])
    assert got.dtype == np.float64 and got.flags.c_contiguous and np.array_equal(got, want)
    assert np.array_equal(y, np.where(idx % 2, 1.0, -1.0))


@pytest.mark.timeout(30)
def test_libsvm_reader_names_the_file(tmp_path: Path) -> None:
    p = tmp_path / "x.svm"
    p.write_bytes(b"")
    with pytest.raises(InputError) as e:
        LibsvmSource(str(p))
    assert (e.value.field, e.value.value) == ("dataset", str(p)) and "holds no samples" in str(e.value)
    source = LibsvmSource(str(HEART))
    assert (source.n_rows, source.n_columns) == (270, 13) and source.nnz > 0


@pytest.mark.timeout(30)
def test_fashion_mnist_reader(tmp_path: Path) -> None:
    folder = idx_folder(tmp_path / "fm")
    source = FashionMNISTSource(str(folder))
    assert source.n_rows == 100 and source.n_columns == 784
    X, y = source.rows(np.array([5, 0, 99]), intercept=True)
    assert X.shape == (3, 785) and set(np.unique(y)) <= {-1.0, 1.0}


@pytest.mark.timeout(30)
def test_smoothness_check() -> None:
    check_finite(np.ones((3, 4)) * 1e70, "ok")  # squared norms 4e140
    with pytest.raises(InputError, match="too large") as e:
        check_finite(np.ones((3, 4)) * 1e75, "where")  # 4e150
    assert e.value.value == "where"
    import scipy.sparse as sp

    with pytest.raises(InputError, match="too large"):
        check_finite(sp.csr_matrix(np.array([[0.0, 1e200], [1.0, 0.0]])), "sparse")
    check_finite(sp.csr_matrix((2, 3)), "empty")


@pytest.mark.timeout(60)
def test_data_files_that_are_fine_still_load(tmp_path: Path) -> None:
    data = load(Config(dataset=str(HEART)), 2, [0, 1])
    assert data.n_samples == 270


@pytest.mark.timeout(10)
def test_regular_file_never_opens_a_fifo(tmp_path: Path) -> None:
    p = tmp_path / "pipe"
    os.mkfifo(p)
    start = time.monotonic()
    for call in (limits.regular_file, limits.readable_file, lambda q, f: limits.read_small_file(q, f, 100)):
        with pytest.raises(InputError, match="FIFO"):
            call(p, "config")
    assert time.monotonic() - start < 2 and stat.S_ISFIFO(os.stat(p).st_mode)


@pytest.mark.timeout(10)
def test_config_with_utf8_bom_is_read(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_bytes(b"\xef\xbb\xbfT = 100\n")
    assert Config.from_toml(p).T == 100


@pytest.mark.timeout(10)
def test_read_small_file_bounds_what_it_reads(tmp_path: Path) -> None:
    p = tmp_path / "c"
    p.write_bytes(b"x" * 101)
    with pytest.raises(InputError, match="at most 100"):
        limits.read_small_file(p, "config", 100)
    assert limits.read_small_file(p, "config", 101) == b"x" * 101


@pytest.mark.timeout(10)
def test_error_is_one_line_whatever_it_echoes() -> None:
    err = InputError("a\nb", "v\r\n", "line one\nline two\u2028three\x1b[31m")
    assert len(str(err).splitlines()) == 1 and "\x1b" not in str(err)


@pytest.mark.timeout(10)
def test_check_workers() -> None:
    cfg = Config(fault="3:5")
    cfg.check_workers(4)
    with pytest.raises(InputError, match="workers 0..2") as e:
        cfg.check_workers(3)
    assert e.value.field == "fault"
    Config().check_workers(1)


def test_case_counts() -> None:
    """The tables' sizes, as reported: class 4 (values) and class 5 (files)."""
    values = len(CLI_CASES) + len(TOML_CASES)
    files = len(FILE_CASES) + len(FMNIST_CASES) + len(CONFIG_CASES)
    assert values >= 70 and files >= 65
