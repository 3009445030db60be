"""The README's recipe for a cluster's own MPI, exactly as written there, with Debian's Open MPI standing in for the
cluster's: its development package from apt, a fresh environment (`.venv-sysmpi`, kept for the next run) with mpi4py
built from source against it (`MPICC=mpicc pip install --no-binary mpi4py mpi4py`) and the package without any MPI
wheel, then a 4-rank job under that MPI's own mpiexec. The trace must equal the in-process run's, bit for bit, and
name Debian's MPI library. Skipped, with the reason, where apt or root is missing.

Why Debian's Open MPI (4.1) and not its MPICH (4.0): Open MPI is what most clusters run, the MPICH wheel is already
tested by `make test-mpi MPI=mpich`, and 4.1 has the other launcher family (ORTE: orterun/orted, not PRRTE).
`configure_mpi` configures wheels only, so the two things Open MPI 4.1 wants on this machine are on the command line,
as the README says: `--allow-run-as-root` (as root) and `--oversubscribe` (4 ranks on 2 cores); a batch system
normally needs neither."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO
from crpsgd_mpi.procs import kill_tree
from crpsgd_mpi.trace import read_trace

DEBS = ("libopenmpi-dev", "openmpi-bin")
MPICC = Path("/usr/bin/mpicc.openmpi")  # Debian's Open MPI wrappers, whatever the mpi-default alternatives say
MPIEXEC = Path("/usr/bin/mpiexec.openmpi")
VENV = REPO / ".venv-sysmpi"
RUN = ["--samples", "4000", "--features", "20", "--T", "3000", "--rho", "1.3", "--eval-points", "8"]
#: settings of the test runner's own MPI (the wheel's activation, a developer's shell) that the job must not see
FOREIGN = ("OMPI_", "OPAL_", "PRTE_", "PMIX_", "PMI_", "HYDRA_", "MPIR_", "MPICH_", "VIRTUAL_ENV")

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("apt-get") is None or shutil.which("dpkg-query") is None,
                                reason="installs Debian's MPI development package: needs root and apt")


def _run(argv: list[str], timeout: float, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """A command in its own session, its whole process tree killed if it outlives `timeout`."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except BaseException:
        kill_tree(proc.pid)
        proc.communicate(timeout=30)
        raise
    print(f"$ {' '.join(argv)}  -> {proc.returncode}\n{out[-4000:]}")
    return subprocess.CompletedProcess(argv, proc.returncode, out, "")


def _deb_version(package: str) -> str | None:
    res = subprocess.run(["dpkg-query", "-W", "-f", "${Status} ${Version}", package], capture_output=True, text=True,
                         timeout=30)
    words = res.stdout.split()
    return words[-1] if res.returncode == 0 and words[:3] == ["install", "ok", "installed"] else None


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(FOREIGN)}
    path = [p for p in env.get("PATH", "").split(os.pathsep) if not p.startswith(sys.prefix)]
    env["PATH"] = os.pathsep.join([str(VENV / "bin"), *path])  # what `. .venv-sysmpi/bin/activate` does
    env.update(VIRTUAL_ENV=str(VENV), **extra)
    return env


def _install_debs() -> float:
    """apt-get install the development package (once; an update first if the lists are stale); seconds taken."""
    if all(_deb_version(p) for p in DEBS):
        return 0.0
    t0 = time.monotonic()
    argv = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *DEBS]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if _run(argv, 600, env).returncode != 0:
        if _run(["apt-get", "update", "-qq"], 300, env).returncode != 0 or _run(argv, 600, env).returncode != 0:
            pytest.skip(f"apt-get could not install {' '.join(DEBS)} here (output above)")
    return time.monotonic() - t0


def _build_venv() -> dict[str, float]:
    """The README's recipe in a fresh .venv-sysmpi; reused while its stamp (the MPI's version, the package's setup
    files) matches. Returns the seconds of each step of the last build."""
    version = _deb_version("libopenmpi-dev")
    stamp_text = "\n".join([str(version), *(p.read_text() for p in (REPO / "setup.cfg", REPO / "setup.py"))])
    stamp, timing = VENV / ".recipe-stamp", VENV / ".recipe-seconds.json"
    if stamp.exists() and stamp.read_text() == stamp_text and timing.exists():
        return {**json.loads(timing.read_text()), "cached": 1.0}
    shutil.rmtree(VENV, ignore_errors=True)
    seconds: dict[str, float] = {}
    steps = [
        ("venv", [sys.executable, "-m", "venv", str(VENV)], {}),
        ("mpi4py", [str(VENV / "bin" / "pip"), "install", "-q", "--no-binary", "mpi4py", "mpi4py"],
         {"MPICC": str(MPICC)}),
        ("package", [str(VENV / "bin" / "pip"), "install", "-q", "-e", str(REPO)], {}),
    ]
    for name, argv, extra in steps:
        t0 = time.monotonic()
        res = _run(argv, 900, _clean_env(**extra))
        seconds[name] = time.monotonic() - t0
        assert res.returncode == 0, f"recipe step '{name}' failed (output above)"
    timing.write_text(json.dumps(seconds))
    stamp.write_text(stamp_text)
    return seconds


@pytest.mark.timeout(2400)
def test_readme_recipe_with_debian_open_mpi(tmp_path: Path) -> None:
    apt_s = _install_debs()
    assert MPICC.exists() and MPIEXEC.exists(), f"{' '.join(DEBS)} installed but {MPICC} or {MPIEXEC} is missing"
    build = _build_venv()
    cached = " (the environment was built by an earlier run)" if build.pop("cached", 0) else ""
    print(f"apt-get install: {apt_s:.0f} s; recipe{cached}: " + ", ".join(f"{k} {v:.0f} s" for k, v in build.items()))
    py = str(VENV / "bin" / "python")
    check = _run([py, "-c", "from mpi4py import MPI; print(MPI.Get_library_version())"], 60, _clean_env())
    assert check.returncode == 0 and "Debian OpenMPI" in check.stdout  # built against Debian's library
    assert not (VENV / "bin" / "mpiexec").exists()  # no MPI wheel came along (both wheels put their mpiexec there)

    mpiexec = [str(MPIEXEC), *(["--allow-run-as-root"] if os.geteuid() == 0 else []), "--oversubscribe"]
    threads = _run([*mpiexec, "-n", "2", py, "-c",
                    "from mpi4py import MPI; print(f'LEVEL {MPI.Query_thread() == MPI.THREAD_MULTIPLE}')"],
                   120, _clean_env())
    assert threads.returncode == 0 and threads.stdout.count("LEVEL True") == 2  # the supervisor thread calls MPI

    out, local = tmp_path / "sysmpi.h5", tmp_path / "local.h5"
    job = _run([*mpiexec, "-n", "4", py, "-m", "crpsgd_mpi.run", *RUN, "--out", str(out)], 300, _clean_env())
    assert job.returncode == 0 and "(complete)" in job.stdout
    # the reference in process, in the same environment (same numpy: the same einsum arithmetic)
    ref = _run([py, "-m", "crpsgd_mpi.run", "--backend", "local", "--workers", "4", *RUN, "--out", str(local)], 300,
               _clean_env())
    assert ref.returncode == 0
    a, b = read_trace(out), read_trace(local)
    assert a.status == b.status == "complete" and a.attrs["N"] == 4 and a.config["backend"] == "mpi"
    for c in sorted(set(b.rounds) - {"wall_time"}):
        assert np.array_equal(a.rounds[c], b.rounds[c]), f"rounds/{c}"
    for c in sorted(b.evals):
        assert np.array_equal(a.evals[c], b.evals[c], equal_nan=True), f"evals/{c}"
    assert a.x is not None and np.array_equal(a.x, b.x)
    versions = a.attrs["versions"]
    upstream = str(_deb_version("libopenmpi-dev")).split("-")[0]  # 4.1.4-3+b1 -> 4.1.4
    assert f"Open MPI v{upstream}" in versions["mpi_library"] and "Debian" in versions["mpi_library"], versions
    assert versions["launcher"] == "Open MPI mpiexec", versions
