"""Slurm for real: srun and sbatch jobs on a one-node Slurm brought up on this machine (skipped without root/apt)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, run_cli
from crpsgd_mpi.mpienv import detect_mpi
from crpsgd_mpi.trace import Trace, read_trace
from slurm_cluster import SYSTEM_PATH, SlurmCluster, slurm_fixture  # noqa: F401 (the session fixture `slurm`)

VENV = Path(sys.prefix)
EXAMPLES = REPO / "examples" / "cluster"
OPTIONS = ["--samples", "4000", "--features", "20", "--T", "3000", "--rho", "1.3", "--eval-points", "8"]
#: what Open MPI / PMIx print when something is off (help banners, "Sorry! You were supposed to get help about")
BANNER = re.compile(r"Sorry!|supposed to get help|^-{20,}$|PMIX ERROR|pmix|Open MPI|MCA|WARNING|mpi4py", re.I | re.M)
#: lines srun itself may print about the allocation
SRUN_INFO = re.compile(r"^srun: job \d+ (queued and waiting for resources|has been allocated resources)$")

pytestmark = pytest.mark.skipif(os.name != "posix", reason="Slurm runs on POSIX systems only")


def activated_shell(cluster: SlurmCluster, script: str, timeout: float, cwd: Path) -> tuple[int, str, float]:
    """`script` in a bash that has only sourced the venv's activate (bare PATH, HOME, SLURM_CONF, the test cache);
    in its own process group, killed on timeout. Returns exit status, stdout+stderr and wall seconds."""
    env = {"PATH": SYSTEM_PATH, "HOME": os.environ.get("HOME", "/root"), "SLURM_CONF": str(cluster.conf),
           "CRPSGD_CACHE": os.environ["CRPSGD_CACHE"], "LANG": "C.UTF-8"}
    command = f'source "{VENV}/bin/activate" && {script}'
    start = time.monotonic()
    proc = subprocess.Popen(["bash", "-c", command], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate(timeout=10)
        pytest.fail(f"timed out after {timeout} s: {script}\n{out}\n{cluster.logs()}")
    wall = time.monotonic() - start
    print(f"--- exit {proc.returncode} after {wall:.2f} s: {script}\n{out}")
    return proc.returncode, out, wall


def assert_same_trace(a: Trace, b: Trace) -> None:
    """Bit-identical rounds (except wall_time), evaluations and final iterate."""
    assert a.status == b.status == "complete"
    assert sorted(a.rounds) == sorted(b.rounds) and sorted(a.evals) == sorted(b.evals)
    for c in a.rounds:
        if c != "wall_time":
            assert np.array_equal(a.rounds[c], b.rounds[c]), c
    for c in a.evals:
        assert np.array_equal(a.evals[c], b.evals[c], equal_nan=True), c
    assert a.x is not None and np.array_equal(a.x, b.x)


def assert_clean(output: str) -> None:
    """No Open MPI / PMIx banner or warning; nothing at all but srun's own allocation notes."""
    assert not BANNER.search(output), output
    assert all(not line.strip() or SRUN_INFO.match(line) for line in output.splitlines()), output


@pytest.mark.timeout(400)
def test_cluster_is_up(slurm: SlurmCluster) -> None:
    print(f"install {slurm.install_seconds:.1f} s, daemons idle after {slurm.startup_seconds:.1f} s")
    assert slurm.node_state() in ("idle", "mixed", "allocated")
    mpi = slurm.run("srun", "--mpi=list", timeout=30)
    assert "pmix" in mpi.stdout + mpi.stderr and "pmi2" in mpi.stdout + mpi.stderr, mpi.stdout + mpi.stderr


@pytest.mark.timeout(400)
def test_srun_equals_local(slurm: SlurmCluster, tmp_path: Path) -> None:
    """srun starts the ranks: through PMIx for Open MPI, PMI-2 for MPICH (whose wheel aborts under PMIx); 3 ranks
    hold 10 virtual workers (4, 3, 3), equal to the one-process run."""
    out, loc = tmp_path / "srun.h5", tmp_path / "local.h5"
    plugin = "pmi2" if detect_mpi(VENV) == "mpich" else "pmix"
    rc, output, wall = activated_shell(
        slurm, f"srun --mpi={plugin} -n 3 python -m crpsgd_mpi.run {' '.join(OPTIONS)} --workers 10 --out {out} "
        "--quiet",
        timeout=180, cwd=tmp_path)
    print(f"srun job wall time: {wall:.2f} s")
    assert rc == 0, output
    assert_clean(output)
    assert run_cli("--backend", "local", "--workers", "10", *OPTIONS, "--out", str(loc)) == 0
    a, b = read_trace(out), read_trace(loc)
    assert_same_trace(a, b)
    assert a.config["backend"] == "mpi" and a.config["workers"] == 10
    assert a.attrs["versions"]["workers_per_rank"] == "4,3,3" and a.attrs["versions"]["launcher"] == "srun"
    versions = a.attrs["versions"]
    assert "Open MPI" in versions.get("mpi_library", "") or "MPICH" in versions.get("mpi_library", ""), versions


@pytest.mark.timeout(400)
@pytest.mark.parametrize("script", ["crpsgd-srun.sbatch", "crpsgd-mpiexec.sbatch"])
def test_sbatch_example(slurm: SlurmCluster, tmp_path: Path, script: str) -> None:
    """The example batch script as a user submits it (the venv and the run options given through the environment)."""
    args = " ".join(OPTIONS)
    submit = (f"sbatch --wait --ntasks=4 --time=5 --chdir={tmp_path} --output={tmp_path}/job-%j.out "
              f"--export=ALL,CRPSGD_VENV={VENV},CRPSGD_ARGS='{args}' {EXAMPLES / script}")
    rc, output, wall = activated_shell(slurm, submit, timeout=240, cwd=tmp_path)
    print(f"sbatch --wait wall time: {wall:.2f} s")
    job = re.search(r"Submitted batch job (\d+)", output)
    logs = sorted(tmp_path.glob("job-*.out"))
    log = logs[0].read_text() if logs else ""
    print(f"--- job output\n{log}")
    if job:
        if rc != 0:  # a job that outlived sbatch must not outlive the test
            slurm.run("scancel", job.group(1), timeout=10)
        shown = slurm.run("scontrol", "-o", "show", "job", job.group(1), timeout=10).stdout
        print("job " + " ".join(re.findall(r"(?:JobState|RunTime|ExitCode)=\S+", shown)))
    assert rc == 0, output + log
    assert not BANNER.search(output + log.replace("crpsgd_mpi", "")), output + log
    traces = sorted((tmp_path / "results").glob("*.h5"))
    assert len(traces) == 1, traces
    trace = read_trace(traces[0])
    assert trace.status == "complete" and trace.config["workers"] == 4 and trace.config["backend"] == "mpi"
