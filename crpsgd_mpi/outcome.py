"""How a run ends, as the user sees it: exit statuses and the one line of ours on standard error."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_DIVERGED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

#: Launchers that stop relaying their ranks' output once they tear a job down (Open MPI's PRRTE and ORTE). Not MPICH's
#: hydra: its proxy (hydra_pmi_proxy, the ranks' parent) forwards SIGINT/SIGTERM to every rank, keeps relaying their
#: output and waits for them to exit (it never ends the job itself), so the ranks end it.
_SILENCING_LAUNCHERS = {"prterun", "prted", "mpirun", "mpiexec", "orterun", "orted"}


@dataclass
class Outcome:
    """How a run ended, on this process."""

    status: str
    exit_code: int
    path: Path | None
    message: str = ""
    values: dict[str, Any] = field(default_factory=dict)


def one_line(text: str) -> str:
    """`text` on one line: whatever a file or an exception put in it, a message never spans two lines."""
    return " ".join(text.split())


def say(text: str) -> None:
    """One line on this process's standard error."""
    try:
        print(one_line(text), file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass  # a closed or full standard error must not change how the run ends


def show(text: str) -> None:
    """Print to standard output; a full or closed standard output (a pipe closed early, /dev/full) costs the text,
    never the run's outcome: the rest of our output then goes nowhere, and the interpreter's last flush is quiet."""
    try:
        print(text, flush=True)
    except (OSError, ValueError) as exc:
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        except (OSError, ValueError):
            pass
        say(f"crpsgd_mpi: note: could not print the summary to standard output: {exc}")


def silences_output(pid: int) -> bool:
    """True if `pid` is an Open MPI launcher, which stops relaying its ranks' output while it ends a job."""
    try:
        with open(f"/proc/{pid}/comm") as fh:
            return fh.read().strip() in _SILENCING_LAUNCHERS
    except OSError:
        return False


def say_to_launcher(text: str) -> None:
    """One line straight onto the launcher's own standard error (appended), for when it has stopped relaying ours;
    this process's standard error if that cannot be done."""
    try:
        fd = os.open(f"/proc/{os.getppid()}/fd/2", os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd, (one_line(text) + "\n").encode("utf-8", "replace"))
        finally:
            os.close(fd)
    except OSError:
        say(text)


def say_ended(status: str, text: str, by_launcher: bool = False) -> None:
    """The one line saying how the job ended ('crpsgd_mpi: STATUS: TEXT'); straight onto the launcher's standard
    error when the launcher, ending the job itself, no longer relays ours."""
    (say_to_launcher if by_launcher else say)(f"crpsgd_mpi: {status}: {text}")
