"""Image data sets for networks: Fashion-MNIST's ten classes and CIFAR-10. The training set is sharded like every data
set (the seeded permutation of its rows cut into N contiguous parts, whatever N), each process reading only its
workers' rows; the held-out test set (or the fixed, seeded subset of it that `test_samples` asks for) is cut into N
parts in order, one per worker, for the evaluations."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..seeding import Stream, rng_for
from .cifar10 import CIFAR10_MEAN, CIFAR10_STD, Cifar10Layout, Split, count_rows, find_cifar10, read_cifar10
from .cifar10 import normalize as normalize_images
from .fmnist import SIDE, FashionMNISTSource
from .loading import shard_bounds, shuffle

#: Fashion-MNIST's per-channel pixel statistics (the 60000 training images, pixels in [0, 1]).
FMNIST_MEAN, FMNIST_STD = (0.2860,), (0.3530,)
SPLITS: tuple[Split, Split] = ("train", "test")


class ImageSource(ABC):
    """An image classification data set: a training and a test split of uint8 images (n, C, H, W) with labels
    0..classes-1, and the per-channel normalisation of its inputs."""

    name: str
    shape: tuple[int, int, int]
    classes: int

    @abstractmethod
    def n_rows(self, split: Split) -> int:
        """Images in `split` ('train' or 'test')."""

    @abstractmethod
    def read(self, split: Split, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """uint8 images (n, C, H, W) and int64 labels of rows `rows` of `split` (any order)."""

    @abstractmethod
    def normalize(self, images: np.ndarray) -> np.ndarray:
        """float32 (pixel / 255 - mean[c]) / std[c]."""

    @abstractmethod
    def fingerprint(self) -> str:
        """Changes when the data changes."""


class FashionMNISTImages(ImageSource):
    """Fashion-MNIST's ten classes as 1 x 28 x 28 images (the nets take 28 x 28 as they are: no padding)."""

    name, shape, classes = "fashion-mnist", (1, SIDE, SIDE), 10

    def __init__(self, folder: str) -> None:
        self._splits = {"train": FashionMNISTSource(folder, "train"), "test": FashionMNISTSource(folder, "t10k")}

    def n_rows(self, split: Split) -> int:
        return self._splits[split].n_rows

    def read(self, split: Split, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        source = self._splits[split]
        return source.pixels(rows).reshape(rows.size, *self.shape), source.classes(rows)

    def normalize(self, images: np.ndarray) -> np.ndarray:
        return normalize_images(images, FMNIST_MEAN, FMNIST_STD)

    def fingerprint(self) -> str:
        return "images-" + self._splits["train"].fingerprint()


class Cifar10Images(ImageSource):
    """CIFAR-10 (50000 + 10000 images, 3 x 32 x 32) from the standard files in a folder (python pickles or binary),
    read with `data.cifar10` (a pickle may admit only what those files hold)."""

    name, shape, classes = "cifar10", (3, 32, 32), 10

    def __init__(self, folder: str) -> None:
        self.layout: Cifar10Layout = find_cifar10(folder)
        self._counts = {s: sum(count_rows(self.layout, s)) for s in SPLITS}

    def n_rows(self, split: Split) -> int:
        return self._counts[split]

    def read(self, split: Split, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return read_cifar10(self.layout, split, rows)

    def normalize(self, images: np.ndarray) -> np.ndarray:
        return normalize_images(images, CIFAR10_MEAN, CIFAR10_STD)

    def fingerprint(self) -> str:
        files = [p for s in SPLITS for p in self.layout.files(s)]
        return "cifar10-" + "-".join(f"{p.stat().st_size}:{int(p.stat().st_mtime)}" for p in files)


@dataclass
class ImageShards:
    """This process's workers' training images and their parts of the test set (normalised float32), and the
    data set's facts."""

    name: str
    shape: tuple[int, int, int]
    classes: int
    n_train: int
    n_test: int  # images in the test set (the evaluations score `test_rows` of them)
    test_rows: int
    train: list[tuple[np.ndarray, np.ndarray]]
    test: list[tuple[np.ndarray, np.ndarray]]
    fingerprint: str


def test_subset(n_test: int, test_samples: int | None, seed: int) -> np.ndarray:
    """The test rows the evaluations score, in order: all of them when `test_samples` is None or covers the set, else
    `test_samples` rows drawn without replacement by the seed root's TEST_SUBSET stream (independent of N and of
    the backend)."""
    if test_samples is None or test_samples >= n_test:
        return np.arange(n_test)
    return np.sort(rng_for(seed, Stream.TEST_SUBSET).permutation(n_test)[:test_samples])


def load_images(source: ImageSource, seed: int, n_workers: int, workers: range,
                test_samples: int | None = None) -> ImageShards:
    """The shards of `workers` out of N: training rows by the seeded permutation (data independent of N), test rows
    (`test_subset`) in order."""
    n_train, n_test = source.n_rows("train"), source.n_rows("test")
    if n_workers > n_train:
        raise InputError("workers", n_workers, f"more workers than training images ({n_train}) in {source.name}")
    perm, bounds = shuffle(n_train, seed), shard_bounds(n_train, n_workers)
    test_rows = test_subset(n_test, test_samples, seed)
    test_bounds = shard_bounds(test_rows.size, n_workers)
    train: list[tuple[np.ndarray, np.ndarray]] = []
    test: list[tuple[np.ndarray, np.ndarray]] = []
    if len(workers):  # each split read once for all of this process's workers (a compressed file is read whole)
        reads: tuple[tuple[Split, np.ndarray, np.ndarray, list[tuple[np.ndarray, np.ndarray]]], ...] = (
            ("train", perm, bounds, train), ("test", test_rows, test_bounds, test))
        for split, rows, cuts, parts in reads:
            lo, hi = cuts[workers[0]], cuts[workers[-1] + 1]
            images, labels = source.read(split, rows[lo:hi])
            images = source.normalize(images)
            parts.extend((images[cuts[w] - lo:cuts[w + 1] - lo], labels[cuts[w] - lo:cuts[w + 1] - lo]) for w in workers)
    return ImageShards(source.name, source.shape, source.classes, n_train, n_test, int(test_rows.size), train, test,
                       source.fingerprint())
