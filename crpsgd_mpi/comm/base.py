"""The contract every communication backend fulfils."""

from __future__ import annotations

from abc import ABC, abstractmethod
from functools import cached_property
from typing import TYPE_CHECKING, NoReturn

import numpy as np

from ..errors import InputError

if TYPE_CHECKING:
    from ..ending import Ending


class Backend(ABC):
    """Combines the rows of the N workers; knows nothing of algorithms, counts nothing.

    A process simulates the workers `local_workers`: a contiguous block of the N (an MPI rank: its share; the
    in-process backend: all N). Vectors travel as (k, m) arrays, one row per local worker, k = len(local_workers).
    Every result is identical on every process; with the `exact` reduction it is the same whatever the backend,
    the number of processes and the placement of the workers.
    """

    name: str
    n_workers: int
    local_workers: range
    is_root: bool

    @abstractmethod
    def mean(self, rows: np.ndarray) -> np.ndarray:
        """Mean over all N workers of their rows (k, m) -> (m,): one communication round. The result
        may be the backend's own buffer: valid until the next call, and the caller may modify it."""

    @abstractmethod
    def sum(self, rows: np.ndarray) -> np.ndarray:
        """Sum over all N workers (k, m) -> (m,), by the backend's reduction; used for evaluation traffic. A new
        array."""

    @abstractmethod
    def allgather(self, rows: np.ndarray) -> np.ndarray:
        """Every worker's rows (k, m) -> (N, m) in worker order, on every process (checkpoints: not counted)."""

    @abstractmethod
    def share(self, payload: bytes | None) -> bytes:
        """The root's `payload` (other processes pass None), on every process."""

    @abstractmethod
    def agree(self, error: str | None) -> list[tuple[int, str]]:
        """Collective: every process learns which processes hit a set-up error, and which."""

    def assign(self, n_workers: int) -> None:
        """Simulate N workers over this backend's processes (before any worker exists); InputError when it cannot."""
        if n_workers != self.n_workers:
            raise InputError("workers", n_workers, f"this backend holds {self.n_workers} workers")

    @cached_property
    def ending(self) -> Ending:
        """How the job ends on this process: one Ending for the backend's whole life (MPI's supervisor is handed it
        when it starts), which the run takes over."""
        from ..ending import Ending  # the run's layer, above this one

        return Ending(self)

    def close(self) -> None:
        """Every process, after the run's last collective and before the trace is finished: release what the
        backend holds (MPI: the supervisor), in step with the other processes."""
        return None

    def report_failure(self, message: str, status: str, exit_code: int) -> None:
        """A non-root process failed: tell the root so the whole job ends; may not return.
        One process holds every worker in the local backend, so there is nobody to tell."""
        return None

    def abort(self, exit_code: int) -> NoReturn:
        """End every process of the job now."""
        raise SystemExit(exit_code)

    def describe(self) -> dict[str, str]:
        """Versions and names for the trace."""
        return {"backend": self.name}
