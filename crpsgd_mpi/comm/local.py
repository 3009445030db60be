"""In-process backend: N virtual workers in one process, reduced in worker order."""

from __future__ import annotations

import numpy as np

from .base import Backend


def ordered_sum(rows: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Sum of the rows of a C-contiguous (N, m) array, accumulated in row order."""
    return np.add.reduce(rows, axis=0, out=out)


class LocalBackend(Backend):
    """All N workers live here; mean and sum are the same ordered sums the MPI backend computes."""

    name = "local"
    is_root = True

    def __init__(self, n_workers: int) -> None:
        self.n_workers = n_workers
        self.local_workers = range(n_workers)
        self._out: dict[tuple[int, np.dtype], np.ndarray] = {}

    def _buffer(self, m: int, dtype: np.dtype) -> np.ndarray:
        buf = self._out.get((m, dtype))
        if buf is None:
            buf = self._out[(m, dtype)] = np.empty(m, dtype=dtype)
        return buf

    def mean(self, rows: np.ndarray) -> np.ndarray:
        out = ordered_sum(rows, self._buffer(rows.shape[1], rows.dtype))
        out /= self.n_workers
        return out

    def sum(self, rows: np.ndarray) -> np.ndarray:
        return ordered_sum(np.ascontiguousarray(rows), np.empty(rows.shape[1], dtype=rows.dtype))

    def allgather(self, rows: np.ndarray) -> np.ndarray:
        return np.array(rows)

    def share(self, payload: bytes | None) -> bytes:
        assert payload is not None
        return payload

    def agree(self, error: str | None) -> list[tuple[int, str]]:
        return [] if error is None else [(0, error)]
