"""Loaders, validation of data, and sharding that never changes the dataset."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import FMNIST, HEART
from crpsgd_mpi.config import Config
from crpsgd_mpi.data import load, shard_bounds
from crpsgd_mpi.errors import InputError


def rows_of(cfg: Config, N: int) -> np.ndarray:
    data = load(cfg, N, range(N))
    X = np.vstack([s.X if isinstance(s.X, np.ndarray) else s.X.toarray() for s in data.shards])
    y = np.concatenate([s.y for s in data.shards])
    return np.column_stack([X, y])


@pytest.mark.parametrize("dataset", ["synthetic", str(HEART)])
def test_dataset_does_not_depend_on_N(dataset: str) -> None:
    cfg = Config(samples=1000, features=5, dataset=dataset, seed=3)
    a, b = rows_of(cfg, 1), rows_of(cfg, 7)
    assert np.array_equal(a, b)  # same shuffle, contiguous shards: concatenation is invariant


def test_shards_partition_rows() -> None:
    b = shard_bounds(10, 3)
    assert b.tolist() == [0, 3, 6, 10]
    cfg = Config(samples=1000, features=5)
    data = load(cfg, 4, [2])
    assert len(data.shards) == 1 and data.shards[0].n == 250


def test_heart_scale() -> None:
    data = load(Config(dataset=str(HEART)), 1, [0])
    s = data.shards[0]
    assert (data.n_samples, data.n_features) == (270, 14)
    assert set(np.unique(s.y)) == {-1.0, 1.0}
    assert not data.sparse  # 13 dense-ish features: auto storage densifies


def write(tmp_path: Path, text: str) -> str:
    p = tmp_path / "f.svm"
    p.write_text(text)
    return str(p)


@pytest.mark.parametrize("text, reason", [
    ("1 1:0.5\n2 1:0.1\n3 2:1\n", "labels must be binary"),
    ("this is not libsvm\n", "not a LIBSVM"),
    ("1 1:nan\n-1 1:2\n", "NaN or inf"),
])
def test_bad_files(tmp_path: Path, text: str, reason: str) -> None:
    with pytest.raises(InputError, match=reason) as e:
        load(Config(dataset=write(tmp_path, text)), 1, [0])
    assert e.value.field == "dataset"


def test_missing_file_and_too_many_workers(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        load(Config(dataset=str(tmp_path / "nope.svm")), 1, [0])
    with pytest.raises(InputError, match="more workers than samples") as e:
        load(Config(samples=5), 6, [0])
    assert e.value.field == "workers"


def test_hdf5_reads_only_its_rows(tmp_path: Path) -> None:
    X = np.arange(60, dtype=float).reshape(20, 3)
    y = np.where(np.arange(20) % 2 == 0, 1.0, 0.0)
    p = tmp_path / "d.h5"
    with h5py.File(p, "w") as f:
        f["X"], f["y"] = X, y
    cfg = Config(dataset=str(p), intercept=False, seed=1)
    full = rows_of(cfg, 1)
    part = load(cfg, 4, [1]).shards[0]
    assert np.array_equal(np.column_stack([part.X, part.y]), full[5:10])
    with h5py.File(tmp_path / "bad.h5", "w") as f:
        f["X"] = X
    with pytest.raises(InputError, match="/X and /y"):
        load(Config(dataset=str(tmp_path / "bad.h5")), 1, [0])


@pytest.mark.skipif(not FMNIST.exists(), reason="Debian package dataset-fashion-mnist not installed")
def test_fashion_mnist_binary_split() -> None:
    data = load(Config(dataset="fashion-mnist"), 10, [0])
    s = data.shards[0]
    assert data.n_samples == 60000 and data.n_features == 785 and s.n == 6000
    assert 0.0 <= s.X.min() and s.X[:, :-1].max() <= 1.0
    assert abs(np.mean(s.y > 0) - 0.5) < 0.05
    # the block-wise reader returns exactly the rows of a whole-file decode, in shard order
    import gzip

    from crpsgd_mpi.data import shard_bounds, shuffle

    with gzip.open(FMNIST, "rb") as fh:
        full = np.frombuffer(fh.read(), dtype=np.uint8, offset=16).reshape(60000, 784)
    rows = shuffle(60000, 0)[shard_bounds(60000, 10)[0]:shard_bounds(60000, 10)[1]]
    assert np.array_equal(s.X[:, :-1], full[rows] * (1.0 / 255.0))


def test_fashion_mnist_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="dataset-fashion-mnist") as e:
        load(Config(dataset="fashion-mnist", fmnist_dir=str(tmp_path)), 1, [0])
    assert e.value.field == "fmnist_dir"
