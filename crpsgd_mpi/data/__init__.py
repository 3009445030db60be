"""Datasets: the synthetic generator, Fashion-MNIST, LIBSVM and HDF5 files, and the seeded sharding."""

from . import registered  # noqa: F401  (the built-in data sets register themselves)
from .base import Dataset, Matrix, Shard, Source
from .files import FileSource, HDF5Source, LibsvmSource
from .fmnist import FMNIST_POSITIVE, FashionMNISTSource
from .loading import input_places, load, open_source, shard_bounds, shuffle
from .synthetic import SYNTHETIC_BLOCK, SyntheticSource

__all__ = ["Dataset", "FMNIST_POSITIVE", "FashionMNISTSource", "FileSource", "HDF5Source", "LibsvmSource", "Matrix",
           "SYNTHETIC_BLOCK", "Shard", "Source", "SyntheticSource", "input_places", "load", "open_source",
           "shard_bounds", "shuffle"]
