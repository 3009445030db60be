"""Communication backends: how the N workers' vectors are combined (MPI ranks or in one process)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, overload

from .base import Backend
from .local import LocalBackend

if TYPE_CHECKING:  # MPIBackend imports mpi4py: only when asked for
    from .mpi import MPIBackend

__all__ = ["Backend", "LocalBackend", "make_backend", "launched_by_mpi", "rank_from_env"]

from ..launchers import launched_by_mpi, rank_from_env


@overload
def make_backend(kind: Literal["mpi"], workers: int | None, reduction: str, stall_timeout: float = 0.0) -> MPIBackend: ...
@overload
def make_backend(kind: str, workers: int | None, reduction: str, stall_timeout: float = 0.0) -> Backend: ...
def make_backend(kind: str, workers: int | None, reduction: str, stall_timeout: float = 0.0) -> Backend:
    """'mpi', 'local' or 'auto' (mpi when launched by mpiexec, else local with `workers` or 10). Under MPI,
    `workers` (None: one a rank) virtual workers are spread over the ranks; a number of workers the job cannot
    hold raises InputError after the backend exists (so that the caller can close it, in step with the others)."""
    if kind == "auto":
        kind = "mpi" if launched_by_mpi() else "local"
    if kind == "mpi":
        from .mpi import MPIBackend

        backend = MPIBackend(reduction=reduction, stall_timeout=stall_timeout)
        if workers is not None:
            backend.assign(workers)
        return backend
    return LocalBackend(workers if workers is not None else 10, reduction)
