"""Communication backends: how the N workers' vectors are combined (MPI ranks or in one process)."""

from .base import Backend
from .local import LocalBackend

__all__ = ["Backend", "LocalBackend", "make_backend", "launched_by_mpi", "rank_from_env"]

_MPI_ENV = ("OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE", "PMI_RANK", "MPI_LOCALNRANKS", "HYDRA_CONTROL_FD")


def launched_by_mpi() -> bool:
    """True when an MPI launcher (mpiexec/mpirun/srun) started this process."""
    import os

    return any(k in os.environ for k in _MPI_ENV)


def rank_from_env() -> int:
    """This process's rank as the launcher announced it (0 when not launched by MPI), without
    initialising MPI: used to print an error once, before any backend exists."""
    import os

    for var in ("OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK"):
        value = os.environ.get(var, "")
        if value.isdigit():
            return int(value)
    return 0


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
