"""A real one-node Slurm on this machine for the tests: Debian's munged, slurmctld and slurmd in a temporary directory."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import pytest

#: Debian packages: the daemons, the clients (srun, sbatch... come with slurmd's dependency slurm-client) and PMIx.
#: libpmix-dev is needed as well: Slurm's mpi/pmix plugin dlopens the unversioned `libpmix.so`, which only the -dev
#: package ships; with libpmix2 alone every daemon logs "pmi/pmix: can not load PMIx library" and
#: `srun --mpi=pmix` fails with "Invalid MPI type 'pmix'".
PACKAGES = ("slurmctld", "slurmd", "munge", "libpmix2", "libpmix-dev")
COMMANDS = ("slurmctld", "slurmd", "munged", "srun", "sbatch", "sinfo", "squeue", "scancel")
PMIX_LIBRARY = Path("/usr/lib/x86_64-linux-gnu/pmix2/lib/libpmix.so")
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

SLURM_CONF = """\
# One-node Slurm for crpsgd_mpi's tests (tests/slurm_cluster.py); everything lives in {root}.
ClusterName=crpsgd
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
# the tests run as root: daemons as root keep the state directories simple
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/munge.socket
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
# the mpi/pmix plugin makes /tmp/spmix_appdir_<uid>_<job>.<step> (TmpFS) and fails the launch when it exists: a
# step killed in an earlier cluster, whose job ids also started at 1, leaves one behind. Keep them in here.
TmpFS={root}/tmp
# no systemd and no cgroup hierarchy of our own here: track processes through /proc, no task binding
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MailProg=/bin/true
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
# trust the CPU count below rather than the 2 cores slurmd finds (jobs of 10 tasks fit: oversubscription)
SlurmdParameters=config_overrides
ReturnToService=2
KillWait=5
# one task failing ends the step (an MPI job would otherwise wait for the dead rank)
KillOnBadExit=1
MinJobAge=600
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE
"""


class SlurmUnavailable(RuntimeError):
    """Slurm cannot be brought up here; the message says why (the caller skips with it)."""


@dataclass
class SlurmCluster:
    """A running one-node cluster: where its files are and how long bringing it up took."""

    root: Path
    conf: Path
    host: str
    cpus: int
    install_seconds: float
    startup_seconds: float
    daemons: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def client_env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """An environment for srun/sbatch/squeue against this cluster (`base`, default os.environ, plus SLURM_CONF)."""
        env = dict(os.environ if base is None else base)
        env["SLURM_CONF"] = str(self.conf)
        return env

    def run(self, *argv: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """A Slurm client command against this cluster, with a time limit."""
        return subprocess.run(list(argv), env=self.client_env(), capture_output=True, text=True, timeout=timeout)

    def node_state(self) -> str:
        """The node's state as sinfo reports it ('idle', 'mixed', 'down*', ...), '' when slurmctld does not answer."""
        with suppress(subprocess.TimeoutExpired):
            done = self.run("sinfo", "-h", "-N", "-o", "%T", timeout=10)
            if done.returncode == 0:
                return done.stdout.strip()
        return ""

    def job_ids(self) -> list[str]:
        """Ids of the jobs still known to slurmctld as pending or running."""
        with suppress(subprocess.TimeoutExpired):
            done = self.run("squeue", "-h", "-o", "%i", timeout=10)
            if done.returncode == 0:
                return done.stdout.split()
        return []

    def logs(self, lines: int = 40) -> str:
        """The last lines of every daemon's log, for a failure message."""
        out = []
        for name in ("munged.out", "slurmctld.log", "slurmd.log", "slurmctld.out", "slurmd.out"):
            path = self.root / name
            if path.exists():
                tail = path.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"--- {path}\n" + "\n".join(tail))
        return "\n".join(out)


def missing_commands() -> list[str]:
    """The Slurm/munge commands not on PATH (nor in /usr/sbin)."""
    return [c for c in COMMANDS if shutil.which(c, path=SYSTEM_PATH) is None]


def ensure_packages(timeout: float = 300.0) -> float:
    """Install the Debian packages when a command or the PMIx library is missing; returns the seconds spent
    (0.0 when nothing was missing). Raises SlurmUnavailable without root or apt-get, or when apt fails."""
    if not missing_commands() and PMIX_LIBRARY.exists():
        return 0.0
    if os.geteuid() != 0:
        raise SlurmUnavailable(f"Slurm is not installed and installing it needs root (missing: {missing_commands()})")
    if shutil.which("apt-get") is None:
        raise SlurmUnavailable("Slurm is not installed and there is no apt-get to install it")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "-o", "DPkg::Lock::Timeout=60", *PACKAGES]
    start = time.monotonic()
    try:
        done = subprocess.run(install, env=env, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:  # stale package lists: refresh once and retry
            subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, timeout=timeout)
            done = subprocess.run(install, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise SlurmUnavailable(f"apt-get did not finish within {timeout:.0f} s") from exc
    if done.returncode != 0 or missing_commands() or not PMIX_LIBRARY.exists():
        raise SlurmUnavailable(f"apt-get install {' '.join(PACKAGES)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return time.monotonic() - start


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("", 0))
        return int(s.getsockname()[1])


def write_config(root: Path, host: str, cpus: int) -> Path:
    """slurm.conf, the directories it names and a fresh munge key under `root`; returns the slurm.conf path."""
    (root / "state").mkdir()
    (root / "spool").mkdir()
    (root / "tmp").mkdir()
    # munged wants its socket's directory reachable by all, and its key private to the user that runs it
    root.chmod(0o755)
    keydir = root / "munge"
    keydir.mkdir(mode=0o700)
    key = keydir / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    conf = root / "slurm.conf"
    conf.write_text(SLURM_CONF.format(root=root, host=host, cpus=cpus, ctld_port=free_port(), slurmd_port=free_port()))
    return conf


def _start(argv: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                start_new_session=True)


def _stop(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=grace)


def _our_step_daemons(conf: Path) -> list[int]:
    """Pids of slurmstepd processes started by our slurmd (they inherit its SLURM_CONF), left after it stopped."""
    pids = []
    marker = f"SLURM_CONF={conf}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with suppress(OSError):
            if (entry / "comm").read_text().strip() == "slurmstepd" and marker in (entry / "environ").read_bytes().split(b"\0"):
                pids.append(int(entry.name))
    return pids


def _wait_idle(cluster: SlurmCluster, deadline: float) -> None:
    state = ""
    while time.monotonic() < deadline:
        for name, proc in cluster.daemons.items():
            if proc.poll() is not None:
                raise SlurmUnavailable(f"{name} exited with status {proc.returncode}\n{cluster.logs()}")
        state = cluster.node_state()
        if state == "idle":
            return
        time.sleep(0.2)
    raise SlurmUnavailable(f"the node is not idle after the time limit (state {state!r})\n{cluster.logs()}")


def teardown(cluster: SlurmCluster, timeout: float = 30.0) -> None:
    """Cancel every job, stop the daemons (slurmd, slurmctld, munged), kill leftover step daemons, remove the files."""
    deadline = time.monotonic() + timeout
    try:
        if cluster.daemons.get("slurmctld") is not None and cluster.daemons["slurmctld"].poll() is None:
            jobs = cluster.job_ids()
            if jobs:
                with suppress(subprocess.TimeoutExpired):
                    cluster.run("scancel", *jobs, timeout=10)
            while cluster.job_ids() and time.monotonic() < deadline:
                time.sleep(0.2)
        for name in ("slurmd", "slurmctld", "munged"):
            if name in cluster.daemons:
                _stop(cluster.daemons[name])
        # a step daemon whose job was cancelled may still be finishing: give it until the deadline, then kill it
        while (steps := _our_step_daemons(cluster.conf)) and time.monotonic() < deadline:
            time.sleep(0.2)
        for pid in steps:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    finally:
        shutil.rmtree(cluster.root, ignore_errors=True)


@contextmanager
def slurm_cluster(cpus: int = 16, timeout: float = 60.0, install_timeout: float = 240.0) -> Iterator[SlurmCluster]:
    """Install (if needed), configure and start a one-node cluster declaring `cpus` CPUs; yields it once the node
    is idle, tears it down on exit. Raises SlurmUnavailable when that cannot be done within the time limits."""
    if os.geteuid() != 0:
        raise SlurmUnavailable("a test Slurm needs root (daemons, munge key, apt-get)")
    install_seconds = ensure_packages(install_timeout)
    host = socket.gethostname().split(".")[0]
    root = Path(tempfile.mkdtemp(prefix="crpsgd-slurm-"))
    cluster = SlurmCluster(root, write_config(root, host, cpus), host, cpus, install_seconds, 0.0)
    # the daemons get a bare environment: nothing of the caller's (a venv, MPI or PMIx variables) leaks into jobs
    env = {"PATH": SYSTEM_PATH, "SLURM_CONF": str(cluster.conf), "LANG": "C.UTF-8", "HOME": str(root)}
    start = time.monotonic()
    try:
        munge = ["munged", "--foreground", f"--socket={root}/munge.socket", f"--key-file={root}/munge/munge.key",
                 f"--log-file={root}/munge/munged.log", f"--pid-file={root}/munge/munged.pid",
                 f"--seed-file={root}/munge/munged.seed"]
        cluster.daemons["munged"] = _start(munge, root / "munged.out", env)
        deadline = start + timeout
        while not (root / "munge.socket").exists():
            if cluster.daemons["munged"].poll() is not None or time.monotonic() > deadline:
                raise SlurmUnavailable(f"munged did not start\n{cluster.logs()}")
            time.sleep(0.05)
        cluster.daemons["slurmctld"] = _start(["slurmctld", "-D", "-f", str(cluster.conf)], root / "slurmctld.out", env)
        cluster.daemons["slurmd"] = _start(["slurmd", "-D", "-N", host, "-f", str(cluster.conf)], root / "slurmd.out", env)
        _wait_idle(cluster, deadline)
        cluster.startup_seconds = time.monotonic() - start
        yield cluster
    finally:
        teardown(cluster)


@pytest.fixture(scope="session", name="slurm")
def slurm_fixture() -> Iterator[SlurmCluster]:
    """A one-node Slurm for the whole session; the test is skipped, with the reason, where it cannot run."""
    try:
        cm = slurm_cluster()
        cluster = cm.__enter__()
    except SlurmUnavailable as exc:
        pytest.skip(str(exc))
    try:
        yield cluster
    finally:
        cm.__exit__(None, None, None)
