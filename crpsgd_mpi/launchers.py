"""The one table of the environment variables by which MPI launchers announce a job, a process's rank and the ranks
on its host; read without starting MPI."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import NamedTuple


class Variable(NamedTuple):
    """One launcher variable and what it tells."""

    name: str
    launcher: str  # the launcher it names ("" when it names none)
    marks_mpi: bool  # set in every process an MPI launcher started
    rank: bool  # its value is this process's rank
    local_size: bool  # its value is the number of this job's processes on this host


#: In order of precedence for each question (srun before the MPI library's own launcher, whose variables it sets too).
VARIABLES: tuple[Variable, ...] = (
    Variable("SLURM_STEP_ID", "srun", False, False, False),
    Variable("PRTE_LAUNCHED", "prterun", False, False, False),
    Variable("OMPI_COMM_WORLD_SIZE", "Open MPI mpiexec", True, False, False),
    Variable("HYDRA_CONTROL_FD", "hydra mpiexec", True, False, False),
    Variable("MPI_LOCALNRANKS", "hydra mpiexec", True, False, True),
    Variable("PMI_SIZE", "PMI launcher", True, False, False),
    Variable("OMPI_COMM_WORLD_RANK", "", False, True, False),
    Variable("PMIX_RANK", "", True, True, False),
    Variable("PMI_RANK", "", True, True, False),
    Variable("OMPI_COMM_WORLD_LOCAL_SIZE", "", False, False, True),
    Variable("SLURM_NTASKS_PER_NODE", "", False, False, True),
    Variable("PMI_LOCAL_SIZE", "", False, False, True),
)
#: Prefixes of every variable an MPI launcher or library reads or sets (a fresh shell in the tests drops them).
PREFIXES = ("OMPI_", "OPAL_", "PRTE_", "PMIX_", "PMI_", "HYDRA_", "MPIR_", "MPICH_")
RANK_VARIABLES = tuple(v.name for v in VARIABLES if v.rank)


def _env(env: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if env is None else env


def _count(text: str, least: int) -> int | None:
    text = text.strip()
    return int(text) if text.isascii() and text.isdigit() and int(text) >= least else None


def launched_by_mpi(env: Mapping[str, str] | None = None) -> bool:
    """True when an MPI launcher (mpiexec, mpirun, srun with a PMI plug-in) started this process."""
    e = _env(env)
    return any(v.marks_mpi and v.name in e for v in VARIABLES)


def _first_count(env: Mapping[str, str] | None, wanted: str, least: int, default: int) -> int:
    """The first count >= `least` among the variables that give `wanted` ('rank' or 'local_size'), else `default`."""
    e = _env(env)
    for v in VARIABLES:
        if getattr(v, wanted) and (n := _count(e.get(v.name, ""), least)) is not None:
            return n
    return default


def rank_from_env(env: Mapping[str, str] | None = None) -> int:
    """This process's rank as the launcher announced it (0 when not launched by MPI)."""
    return _first_count(env, "rank", 0, 0)


def launcher_name(env: Mapping[str, str] | None = None) -> str:
    """Which launcher started this job, for the trace ('unknown' when none announced itself)."""
    e = _env(env)
    return next((v.launcher for v in VARIABLES if v.launcher and v.name in e), "unknown")


def processes_on_this_host(env: Mapping[str, str] | None = None) -> int:
    """This job's processes on this host as the launcher announced it (1 when not launched by MPI)."""
    return _first_count(env, "local_size", 1, 1)
