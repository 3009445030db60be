"""Jobs typed as a user types them: a shell that has only sourced the environment's activation script runs the plain
`mpiexec -n N python -m crpsgd_mpi.run ...`; the test can find each rank's process, signal it, and check that nothing
is left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from crpsgd_mpi.launchers import PREFIXES, RANK_VARIABLES
from crpsgd_mpi.procs import kill_tree, process_alive, process_tree, send
from crpsgd_mpi.trace import read_trace

ACTIVATE = Path(sys.executable).parent / "activate"
#: Settings a developer's shell may carry; a user's fresh shell has none (the installed files decide).
OVERRIDES = PREFIXES
_RANK_VARS = RANK_VARIABLES


def fresh_env(**extra: str) -> dict[str, str]:
    """A login-like environment: no MPI settings and no activated environment, only what a shell starts with."""
    # PYTHONPATH: a checkout under test that is not the one installed (a git worktree) is the one the ranks import
    keep = ("PATH", "HOME", "LANG", "TERM", "USER", "LOGNAME", "TMPDIR", "CRPSGD_CACHE", "PYTHONPATH")
    env = {k: v for k, v in os.environ.items() if k in keep}
    for var in ("PATH",):  # drop the test runner's venv from PATH: the activation puts it back
        env[var] = os.pathsep.join(p for p in env.get(var, "").split(os.pathsep) if not p.startswith(sys.prefix))
    env.update(extra)
    return env


#: Every job a test started: conftest ends what is still running after each test, whatever the test asserted.
STARTED: list[ShellJob] = []


def end_all() -> None:
    """Kill every started job's process tree that is still there."""
    while STARTED:
        job = STARTED.pop()
        job.tree.update(process_tree(job.proc.pid))
        if job.proc.poll() is None or any(process_alive(p) for p in job.tree):
            job.kill()


@dataclass
class ShellJob:
    """`bash -c '. activate && <command>'` in a session of its own, output in a temporary file."""

    command: str
    cwd: Path
    env: dict[str, str] = field(default_factory=fresh_env)

    def __post_init__(self) -> None:
        script = f'. "{ACTIVATE}" && exec {self.command}'
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(["bash", "-c", script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     cwd=self.cwd, env=self.env, start_new_session=True)
        self.tree: set[int] = set()
        STARTED.append(self)
        self._chunks: list[bytes] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for chunk in iter(lambda: self.proc.stdout.read1(65536), b""):  # type: ignore[union-attr]
            self._chunks.append(chunk)

    def ranks(self, n: int, timeout: float = 60.0) -> dict[int, int]:
        """{rank: pid} once all `n` ranks have started."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = {}
            for pid in process_tree(self.proc.pid):
                self.tree.add(pid)
                rank = rank_of(pid)
                if rank is not None and is_python(pid):
                    found[rank] = pid
            if len(found) == n:
                return found
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"ranks did not start: {self.output()}")

    def wait(self, timeout: float) -> int | None:
        """Exit status, or None if it has not ended after `timeout` seconds (then killed)."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def seconds(self) -> float:
        """Since the start."""
        return time.monotonic() - self.t0

    def output(self) -> str:
        """Everything the job printed so far (NULs that Open MPI sometimes emits removed); after `wait`, all of it
        (the pipe stays open while any process holds it)."""
        if self.proc.poll() is not None:
            self._reader.join(timeout=10)
        return b"".join(self._chunks).decode("utf-8", "replace").replace("\0", "")

    def leftovers(self, grace: float = 5.0) -> list[int]:
        """Processes of this job still alive `grace` seconds after it ended (then killed)."""
        self.tree.update(process_tree(self.proc.pid))
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(process_alive(p) for p in self.tree):
            time.sleep(0.05)
        alive = sorted(p for p in self.tree if process_alive(p))
        send(alive)
        return alive

    def kill(self) -> None:
        """Kill everything the job started."""
        self.tree.update(process_tree(self.proc.pid))
        kill_tree(self.proc.pid)
        send(self.tree)
        self.proc.wait(timeout=30)


def ours(output: str) -> list[str]:
    """The lines our program printed (MPI's own banners excluded)."""
    return [ln for ln in output.splitlines() if ln.startswith("crpsgd_mpi")]


def rank_of(pid: int) -> int | None:
    """The MPI rank the launcher gave process `pid` (None: not a rank, or gone)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            env = dict(item.split(b"=", 1) for item in fh.read().split(b"\0") if b"=" in item)
    except OSError:
        return None
    for var in _RANK_VARS:
        value = env.get(var.encode(), b"")
        if value.isdigit():
            return int(value)
    return None


def is_python(pid: int) -> bool:
    """Whether process `pid` is a Python running crpsgd_mpi.run (not the launcher, a proxy or a shell)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return b"crpsgd_mpi.run" in fh.read() and "python" in os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return False


def sigterm_in(pid: int, mask: str) -> bool:
    """Whether SIGTERM is in process `pid`'s (main thread's) signal set `mask` from /proc: SigCgt (caught, our
    handlers are installed), SigBlk (blocked: on its way to MPI); False when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            bits = next(int(ln.split()[1], 16) for ln in fh if ln.startswith(f"{mask}:"))
    except (OSError, StopIteration):
        return False
    return bool(bits & (1 << (signal.SIGTERM - 1)))


def wait_for_rounds(out: Path, running: Callable[[], bool], limit: float = 60.0) -> bool:
    """Wait until the trace `out` holds a round (True), the job stops `running`, or `limit` seconds pass."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and running():
        try:
            if read_trace(out).rounds["round"].size > 0:
                return True
        except (OSError, KeyError, ValueError):
            pass  # not created yet, or caught mid-append
        time.sleep(0.05)
    return False
