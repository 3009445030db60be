"""In-process backend: N virtual workers in one process, reduced by the same arithmetic as the MPI backend."""

from __future__ import annotations

import numpy as np

from .base import Backend
from .exact import ExactSum, exact_for, implementation


def ordered_sum(rows: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Sum of the rows of a C-contiguous (N, m) array, accumulated in row order."""
    return np.add.reduce(rows, axis=0, out=out)


class LocalBackend(Backend):
    """All N workers live here; mean and sum are the sums the MPI backend computes with the same `reduction`
    (exact: the exact sum, the same bits; ordered and allreduce: the sum in worker order)."""

    name = "local"
    is_root = True

    def __init__(self, n_workers: int, reduction: str = "exact") -> None:
        self.n_workers = n_workers
        self.local_workers = range(n_workers)
        self.reduction = reduction
        self._out: dict[tuple[int, np.dtype], np.ndarray] = {}
        self._exact: dict[tuple[int, np.dtype], ExactSum] = {}

    def describe(self) -> dict[str, str]:
        return {"backend": self.name, "reduction": self.reduction, "ranks": "1",
                "workers_per_rank": str(self.n_workers), "exact_sum": implementation()}

    def assign(self, n_workers: int) -> None:
        self.n_workers, self.local_workers = n_workers, range(n_workers)
        self._exact.clear()

    def _exact_sum(self, rows: np.ndarray) -> np.ndarray:
        return exact_for(self._exact, self.n_workers, rows).local(rows)

    def _buffer(self, m: int, dtype: np.dtype) -> np.ndarray:
        buf = self._out.get((m, dtype))
        if buf is None:
            buf = self._out[(m, dtype)] = np.empty(m, dtype=dtype)
        return buf

    def mean(self, rows: np.ndarray) -> np.ndarray:
        if self.reduction == "exact":
            out = self._exact_sum(rows)
        else:
            out = ordered_sum(rows, self._buffer(rows.shape[1], rows.dtype))
        out /= self.n_workers
        return out

    def sum(self, rows: np.ndarray) -> np.ndarray:
        rows = np.ascontiguousarray(rows)
        if self.reduction == "exact":
            return self._exact_sum(rows).copy()
        return ordered_sum(rows, np.empty(rows.shape[1], dtype=rows.dtype))

    def allgather(self, rows: np.ndarray) -> np.ndarray:
        return np.array(rows)

    def share(self, payload: bytes | None) -> bytes:
        assert payload is not None
        return payload

    def agree(self, error: str | None) -> list[tuple[int, str]]:
        return [] if error is None else [(0, error)]
