"""The recipe for a cluster's own MPI, read from the one file that the docs show (examples/cluster/system-mpi.sh),
with Debian's Open MPI standing in for the cluster's: its development package from apt (for `module load`), a fresh
environment (the recipe's `.venv-sysmpi`, kept for the next run) with mpi4py built from source against it (the
recipe's pip arguments, `MPICC` pointing at Debian's wrapper) and the package installed as the recipe installs it
(without any MPI wheel), then a job under that MPI's own mpiexec: 4 ranks and a small run instead of the recipe's 64
ranks and Fashion-MNIST. The trace must equal the in-process run's, bit for bit, and name Debian's MPI library.
Skipped, with the reason, where apt or root is missing; that the recipe reads as these steps is checked everywhere.

Why Debian's Open MPI (4.1) and not its MPICH (4.0): Open MPI is what most clusters run, the MPICH wheel is already
tested by `make test-mpi MPI=mpich`, and 4.1 has the other launcher family (ORTE: orterun/orted, not PRRTE).
`configure_mpi` configures wheels only, so the two things Open MPI 4.1 wants on this machine are on the command line,
as the docs say: `--allow-run-as-root` (as root) and `--oversubscribe` (4 ranks on 2 cores); a batch system
normally needs neither."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO
from crpsgd_mpi.procs import kill_tree
from crpsgd_mpi.run import parse_config
from crpsgd_mpi.trace import read_trace

DEBS = ("libopenmpi-dev", "openmpi-bin")
MPICC = Path("/usr/bin/mpicc.openmpi")  # Debian's Open MPI wrappers, whatever the mpi-default alternatives say
MPIEXEC = Path("/usr/bin/mpiexec.openmpi")
VENV = REPO / ".venv-sysmpi"
#: The recipe, as the docs show it (docs/user-guide/clusters.rst includes this file).
RECIPE = REPO / "examples" / "cluster" / "system-mpi.sh"
RUN = ["--samples", "4000", "--features", "20", "--T", "3000", "--rho", "1.3", "--eval-points", "8"]
#: settings of the test runner's own MPI (the wheel's activation, a developer's shell) that the job must not see
FOREIGN = ("OMPI_", "OPAL_", "PRTE_", "PMIX_", "PMI_", "HYDRA_", "MPIR_", "MPICH_", "VIRTUAL_ENV")

needs_apt = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("apt-get") is None or shutil.which("dpkg-query") is None,
                               reason="installs Debian's MPI development package: needs root and apt")


@dataclass(frozen=True)
class Recipe:
    """The recipe's steps: `module load ...`, then the environment `venv` made and activated, mpi4py built with
    `pip <mpi4py>` and the compiler wrapper in `mpicc_variable`, the package installed with `pip <package>`, and
    `mpiexec -n <ranks> python -m crpsgd_mpi.run <run>`."""

    venv: str
    mpicc_variable: str
    mpi4py: list[str]
    package: list[str]
    ranks: int
    run: list[str]


def read_recipe(path: Path = RECIPE) -> Recipe:
    """The recipe file's commands (comments and blank lines aside), each held to the form this test can run; a line of
    another form is a failed assertion that shows it."""
    steps = [words for line in path.read_text().splitlines() if (words := shlex.split(line, comments=True))]
    assert len(steps) == 5, f"{path}: five commands expected, found {steps}"
    load, venv, mpi4py, package, job = steps
    assert load[:2] == ["module", "load"], load
    assert venv[:3] == ["python", "-m", "venv"] and venv[4:] == ["&&", ".", f"{venv[3]}/bin/activate"], venv
    variable, _, wrapper = mpi4py[0].partition("=")
    assert variable == "MPICC" and wrapper == "mpicc" and mpi4py[1:3] == ["pip", "install"], mpi4py
    assert "--no-binary" in mpi4py and mpi4py[-1] == "mpi4py", mpi4py
    assert package[:2] == ["pip", "install"] and "." in package, package
    assert not any("[" in word for word in package), f"the package must come without an MPI wheel: {package}"
    assert job[:2] == ["mpiexec", "-n"] and job[2].isdigit() and job[3:6] == ["python", "-m", "crpsgd_mpi.run"], job
    return Recipe(venv[3], variable, mpi4py[2:], package[1:], int(job[2]), job[6:])


def _pip(args: list[str]) -> list[str]:
    """`pip ARGS` in the recipe's environment, quiet, `.` (the repository's root, where the recipe is typed) made
    absolute."""
    return [str(VENV / "bin" / "pip"), args[0], "-q", *(str(REPO) if a == "." else a for a in args[1:])]


def test_the_recipe_is_what_the_docs_show_and_this_test_runs() -> None:
    recipe = read_recipe()
    assert recipe.venv == VENV.name and f"{VENV.name}/" in (REPO / ".gitignore").read_text()
    page = (REPO / "docs" / "user-guide" / "clusters.rst").read_text()
    assert ".. literalinclude:: ../../examples/cluster/system-mpi.sh" in page
    assert recipe.ranks >= 1 and parse_config(recipe.run) is not None  # the job's options are options of the run


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


def _build_venv(recipe: Recipe) -> dict[str, float]:
    """The recipe's environment in a fresh .venv-sysmpi; reused while its stamp (the MPI's version, the recipe, the
    package's setup files) matches. Returns the seconds of each step of the last build."""
    version = _deb_version("libopenmpi-dev")
    stamp_text = "\n".join([str(version), *(p.read_text() for p in (RECIPE, REPO / "setup.cfg", REPO / "setup.py"))])
    stamp, timing = VENV / ".recipe-stamp", VENV / ".recipe-seconds.json"
    if stamp.exists() and stamp.read_text() == stamp_text and timing.exists():
        return {**json.loads(timing.read_text()), "cached": 1.0}
    shutil.rmtree(VENV, ignore_errors=True)
    seconds: dict[str, float] = {}
    steps = [
        ("venv", [sys.executable, "-m", "venv", str(VENV)], {}),
        ("mpi4py", _pip(recipe.mpi4py), {recipe.mpicc_variable: str(MPICC)}),  # Debian's wrapper for `mpicc`
        ("package", _pip(recipe.package), {}),
    ]
    for name, argv, extra in steps:
        t0 = time.monotonic()
        res = _run(argv, 900, _clean_env(**extra))
        seconds[name] = time.monotonic() - t0
        assert res.returncode == 0, f"recipe step '{name}' failed (output above)"
    timing.write_text(json.dumps(seconds))
    stamp.write_text(stamp_text)
    return seconds


@needs_apt
@pytest.mark.timeout(2400)
def test_recipe_with_debian_open_mpi(tmp_path: Path) -> None:
    recipe = read_recipe()
    apt_s = _install_debs()
    assert MPICC.exists() and MPIEXEC.exists(), f"{' '.join(DEBS)} installed but {MPICC} or {MPIEXEC} is missing"
    build = _build_venv(recipe)
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
