"""Arithmetic whose bits depend on its inputs alone: no BLAS (whose order of summation follows the build, the CPU,
the alignment and the threads), only exactly rounded elementwise operations and numpy's pairwise add.reduce."""

from __future__ import annotations

import numpy as np


def dot(a: np.ndarray, b: np.ndarray) -> float:
    """a . b of two vectors: the pairwise sum (a fixed tree of 8 accumulators and 128-element blocks at every SIMD
    level) of the exactly rounded products; never BLAS's ddot."""
    return float(np.add.reduce(np.multiply(a, b)))


def row_dots(X: np.ndarray, v: np.ndarray) -> np.ndarray:
    """X v for a dense matrix, each row's product by `dot`'s order."""
    return np.add.reduce(np.multiply(X, v), axis=-1)
