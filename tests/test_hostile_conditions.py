"""Hostile conditions, as tables of cases: outputs never destroy inputs; writes are safe whatever the disk does (full,
read-only, locked by a reader, raced for); every way a run is stopped ends it cleanly, at any moment of its life."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np
import pytest
from mpijobs import ShellJob, ours, sigterm_in, wait_for_rounds

from conftest import HEART
from crpsgd_mpi.procs import process_alive, process_tree, send
from crpsgd_mpi.trace import read_trace

RUN = [sys.executable, "-m", "crpsgd_mpi.run"]
SMALL = ["--backend", "local", "--workers", "2", "--samples", "2000", "--features", "5", "--eval-points", "5"]
LONG = [*SMALL, "--algorithm", "psgd", "--T", "100000000"]


def cli(args: list[str], cwd: Path, timeout: float = 60, stdout: int | None = None) -> subprocess.CompletedProcess:
    """The command line in a process of its own (stdout captured unless given)."""
    env = {**os.environ, "CRPSGD_CACHE": str(cwd / "cache")}
    return subprocess.run([*RUN, *args], cwd=cwd, capture_output=stdout is None, stdout=stdout, text=True,
                          timeout=timeout, env=env, stderr=subprocess.PIPE if stdout is not None else None)


def one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# -- 1. outputs never destroy inputs ---------------------------------------------------------------------------
def _h5(path: Path) -> Path:
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        f["X"] = rng.random((300, 4))
        f["y"] = np.where(rng.random(300) > 0.5, 1.0, -1.0)
    return path


def _alias_cases() -> dict[str, Callable[[Path], tuple[list[str], Path, Path]]]:
    """name -> (tmp) -> (args, --out, the input it would destroy)."""
    def same(d: Path) -> tuple[list[str], Path, Path]:
        data = _h5(d / "v.h5")
        return ["--dataset", str(data)], data, data

    def hard(d: Path) -> tuple[list[str], Path, Path]:
        data = _h5(d / "v.h5")
        os.link(data, d / "alias.h5")
        return ["--dataset", str(data)], d / "alias.h5", data

    def soft(d: Path) -> tuple[list[str], Path, Path]:
        data = _h5(d / "v.h5")
        (d / "alias.h5").symlink_to(data)
        return ["--dataset", str(data)], d / "alias.h5", data

    def via_dotdot(d: Path) -> tuple[list[str], Path, Path]:
        data = _h5(d / "v.h5")
        (d / "sub").mkdir()
        return ["--dataset", str(data)], d / "sub" / ".." / "v.h5", data

    def libsvm(d: Path) -> tuple[list[str], Path, Path]:
        data = d / "heart.svm"
        shutil.copy(HEART, data)
        return ["--dataset", str(data)], data, data

    def config(d: Path) -> tuple[list[str], Path, Path]:
        c = d / "c.toml"
        c.write_text("T = 100\n")
        return ["--config", str(c)], c, c

    def plugin(d: Path) -> tuple[list[str], Path, Path]:
        p = d / "plug.py"
        p.write_text('"""Nothing."""\n')
        return ["--plugin", str(p)], p, p

    def fstar_cache(d: Path) -> tuple[list[str], Path, Path]:
        return [], d / "cache" / "fstar.json", d / "cache" / "fstar.json"  # not created yet when the run starts

    def fmnist_file(d: Path) -> tuple[list[str], Path, Path]:
        folder = d / "fm"
        folder.mkdir()
        for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
            (folder / name).write_bytes(b"precious")
        return ["--dataset", "fashion-mnist", "--fmnist-dir", str(folder)], folder / "train-labels-idx1-ubyte.gz", \
            folder / "train-labels-idx1-ubyte.gz"

    return {f.__name__: f for f in (same, hard, soft, via_dotdot, libsvm, config, plugin, fstar_cache, fmnist_file)}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", sorted(_alias_cases()))
def test_output_never_destroys_an_input(tmp_path: Path, case: str) -> None:
    args, out, victim = _alias_cases()[case](tmp_path)
    before = victim.read_bytes() if victim.exists() else None
    res = cli([*SMALL, "--T", "100", *args, "--out", str(out), "--overwrite"], tmp_path)
    assert res.returncode == 2
    line = one_error_line(res.stderr)
    assert line.startswith("crpsgd_mpi: error: out=") and "which this run reads" in line
    assert (victim.read_bytes() if victim.exists() else None) == before


# -- 2. writes are safe whatever the disk does ------------------------------------------------------------------
@contextmanager
def tmpfs(where: Path, size: str, readonly: bool = False) -> Iterator[Path]:
    """A small file system of our own (root only)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    where.mkdir()
    opts = f"size={size}" + (",ro" if readonly else "")
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)], capture_output=True, timeout=30)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=30)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("where, reason", [
    ("/proc/crpsgd-test/t.h5", "cannot write in"),  # a folder no one can create files in, root included
    ("{tmp}/a-dir", "exists and is not a regular file"),
    ("{tmp}/a-fifo", "exists and is not a regular file"),
    ("/dev/null", "exists and is not a regular file"),
])
def test_unwritable_out_is_refused_before_any_data_is_read(tmp_path: Path, where: str, reason: str) -> None:
    (tmp_path / "a-dir").mkdir()
    os.mkfifo(tmp_path / "a-fifo")
    out = where.format(tmp=tmp_path)
    # the data set does not exist either: the output is checked first, so that is what the one line names
    res = cli([*SMALL, "--dataset", str(tmp_path / "missing.h5"), "--out", out, "--overwrite"], tmp_path)
    assert res.returncode == 2
    line = one_error_line(res.stderr)
    assert line.startswith(f"crpsgd_mpi: error: out='{out}'") and reason in line


@pytest.mark.timeout(60)
def test_read_only_file_system(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "ro", "1m", readonly=True) as ro:
        res = cli([*SMALL, "--out", str(ro / "t.h5")], tmp_path)
    assert res.returncode == 2 and "cannot write in" in one_error_line(res.stderr)


@pytest.mark.timeout(60)
def test_disk_full_before_the_run_starts(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "small", "64k") as small:
        res = cli([*SMALL, "--out", str(small / "t.h5")], tmp_path)
        assert res.returncode == 2 and "no space left on its device" in one_error_line(res.stderr)
        assert list(small.iterdir()) == []


@pytest.mark.timeout(120)
def test_disk_fills_during_the_run(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "small", "24m") as small:
        out = small / "t.h5"
        res = cli([*LONG, "--out", str(out)], tmp_path, timeout=100)
        assert res.returncode == 1
        line = one_error_line(res.stderr)
        assert f"cannot write the trace {out}: no space left on the device" in line and "marked failed" in line
        tr = read_trace(out)  # readable, says what happened, and keeps every round it could write, in order
        assert tr.status == "failed" and "no space left" in tr.attrs["message"]
        done, kept = int(tr.attrs["rounds_total"]), len(tr.rounds)
        assert kept > 1000 and tr.rounds["round"].tolist() == list(range(1, kept + 1))
        if kept < done:  # the rounds after the last write that fitted are named, in the line and in the trace
            assert int(tr.attrs["rounds_written"]) == kept
            assert f"rounds {kept + 1}-{done} could not be written" in line
            assert f"the trace keeps rounds 1-{kept}" in tr.attrs["message"]
        assert sorted(p.name for p in small.iterdir()) == ["t.h5"]  # no temporary left behind


@pytest.mark.timeout(60)
@pytest.mark.parametrize("sink", ["/dev/full", "closed pipe"])
def test_full_or_closed_stdout_never_changes_a_complete_trace(tmp_path: Path, sink: str) -> None:
    out = tmp_path / "t.h5"
    if sink == "/dev/full":
        with open("/dev/full", "w") as full:
            res = cli([*SMALL, "--T", "200", "--out", str(out)], tmp_path, stdout=full.fileno())
        code = res.returncode
    else:
        proc = subprocess.Popen([*RUN, *SMALL, "--T", "200", "--out", str(out)], cwd=tmp_path, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env={**os.environ, "CRPSGD_CACHE": str(tmp_path)})
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()  # the reader goes away before the summary is printed
        code = proc.wait(timeout=60)
        res = subprocess.CompletedProcess([], code, "", proc.stderr.read())
    assert code == 0 and read_trace(out).status == "complete"
    assert "Traceback" not in res.stderr and "Exception ignored" not in res.stderr


@pytest.mark.timeout(90)
def test_a_reader_holding_the_trace_locked_does_not_fail_the_run(tmp_path: Path) -> None:
    out = tmp_path / "t.h5"
    proc = subprocess.Popen([*RUN, *SMALL, "--algorithm", "psgd", "--T", "300000", "--out", str(out), "--quiet"],
                            cwd=tmp_path, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "CRPSGD_CACHE": str(tmp_path)})
    for _ in range(600):
        if out.exists():
            break
        time.sleep(0.05)
    for _ in range(3):  # as h5dump does: open with HDF5's own file lock, hold it a while
        try:
            with h5py.File(out, "r"):
                time.sleep(1.0)
        except OSError:
            pass  # caught the writer holding it
        time.sleep(0.3)
    assert proc.wait(timeout=80) == 0, proc.stderr.read() if proc.stderr else ""
    assert read_trace(out).status == "complete"


@pytest.mark.timeout(120)
def test_two_runs_racing_for_one_out(tmp_path: Path) -> None:
    out = tmp_path / "race.h5"
    args = [*RUN, *SMALL, "--T", "3000", "--out", str(out), "--quiet"]
    env = {**os.environ, "CRPSGD_CACHE": str(tmp_path)}
    procs = [subprocess.Popen(args, cwd=tmp_path, stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    codes = sorted(p.wait(timeout=100) for p in procs)
    errs = [p.stderr.read() for p in procs if p.stderr]
    assert codes == [0, 2], errs
    assert any("exists" in e for e in errs) and read_trace(out).status == "complete"


@pytest.mark.timeout(120)
def test_overwrite_of_a_live_trace_fails_the_first_run_cleanly(tmp_path: Path) -> None:
    out = tmp_path / "t.h5"
    env = {**os.environ, "CRPSGD_CACHE": str(tmp_path)}
    first = subprocess.Popen([*RUN, *LONG, "--out", str(out)], cwd=tmp_path, stderr=subprocess.PIPE, text=True, env=env)
    for _ in range(600):
        if out.exists():
            break
        time.sleep(0.05)
    second = cli([*SMALL, "--T", "200", "--out", str(out), "--overwrite", "--quiet"], tmp_path)
    assert second.returncode == 0 and read_trace(out).status == "complete"
    assert first.wait(timeout=60) == 1
    assert "was replaced by someone else" in one_error_line(first.stderr.read() if first.stderr else "")
    tr = read_trace(out)  # the second run's trace, intact
    assert tr.status == "complete" and tr.attrs["T"] == 200 and tr.attrs["rounds_total"] == len(tr.rounds)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("damage", ["garbage", "not finite", "a list", "fifo", "folder"])
def test_a_damaged_fstar_cache_is_named_and_never_fatal(tmp_path: Path, damage: str) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    path = cache / "fstar.json"
    if damage == "garbage":
        path.write_bytes(b"\x00\xff{{{ not json")
    elif damage == "not finite":
        path.write_text('{"k": NaN}')
    elif damage == "a list":
        path.write_text("[1, 2]")
    elif damage == "fifo":
        os.mkfifo(path)
    else:
        path.mkdir()
    res = cli([*SMALL, "--T", "100", "--out", str(tmp_path / "t.h5")], tmp_path)
    assert res.returncode == 0 and read_trace(tmp_path / "t.h5").status == "complete"
    notes = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(notes) == 1 and notes[0].startswith(f"crpsgd_mpi: note: the f* cache {path} ")
    if damage in ("garbage", "a list"):
        assert cli([*SMALL, "--T", "100", "--out", str(tmp_path / "u.h5")], tmp_path).stderr == ""  # rebuilt


# -- 3. every way a run is stopped ends it cleanly, at any moment -------------------------------------------------
def _ours_running(pid: int) -> bool:
    """True once the process catches SIGTERM: our handlers are installed (before that, Python's own start-up)."""
    return sigterm_in(pid, "SigCgt")


MOMENTS = [0.0, 0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 0.8, 1.2, 2.0]


@pytest.mark.timeout(400)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_signal_at_any_moment_of_an_in_process_run(tmp_path: Path, sig: signal.Signals) -> None:
    seen: list[tuple[float | None, int, str | None]] = []
    for i, moment in enumerate([*MOMENTS, None]):  # None: once rounds are in the trace, however long start-up took
        out = tmp_path / f"t{i}.h5"
        proc = subprocess.Popen([*RUN, *LONG, "--out", str(out)], cwd=tmp_path, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env={**os.environ, "CRPSGD_CACHE": str(tmp_path)})
        while not _ours_running(proc.pid) and proc.poll() is None:
            time.sleep(0.002)
        if moment is None:
            assert wait_for_rounds(out, lambda p=proc: p.poll() is None), "no round reached the trace"
        else:
            time.sleep(moment)
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=60)
        status = read_trace(out).status if out.exists() else None
        seen.append((moment, proc.returncode, status))
        assert "Traceback" not in stderr and "Exception ignored" not in stderr, (moment, stderr)
        assert proc.returncode == 130, (moment, proc.returncode, stderr)
        assert status in (None, "interrupted"), (moment, status)  # never a trace left 'running'
        assert len(ours(stderr)) <= 1 and not [p for p in tmp_path.iterdir() if p.name.endswith(".creating")]
    print(seen)
    assert seen[-1][2] == "interrupted"


#: A plug-in that makes every HDF5 read slow (a slow disk, a large file): it says when the first read began.
SLOW_HDF5 = '''"""Every h5py read takes a while; the first one touches $SLOW_MARKER."""
import os, time
import h5py

_read = h5py.Dataset.__getitem__


def _slow(self, key):
    marker = os.environ.get("SLOW_MARKER")
    if marker:
        open(marker, "a").close()
        time.sleep(float(os.environ.get("SLOW_SECONDS", "0.5")))
    return _read(self, key)


h5py.Dataset.__getitem__ = _slow
'''

#: A plug-in whose import takes a while (a package pulling in a heavy library).
SLOW_IMPORT = '''"""Slow to import."""
import os, time
open(os.environ["SLOW_MARKER"], "a").close()
time.sleep(30)
'''


def _stage_run(stage: str, tmp: Path) -> tuple[list[str], Path | None, str | None]:
    """The command line of a run that spends a while in `stage`, the trace it may touch, and that trace's status
    before (None: no trace exists yet)."""
    slow = tmp / "slow.py"
    slow.write_text(SLOW_IMPORT if stage == "plugin import" else SLOW_HDF5)
    if stage == "plugin import":
        return [*SMALL, "--T", "1000", "--plugin", str(slow), "--out", str(tmp / "t.h5")], tmp / "t.h5", None
    if stage == "data set load":
        data = _h5(tmp / "data.h5")
        return [*SMALL[:4], "--dataset", str(data), "--T", "1000", "--plugin", str(slow), "--out", str(tmp / "t.h5")], \
            tmp / "t.h5", None
    out = tmp / "stopped.h5"  # a run stopped by a failure after a checkpoint: resumed with every read slow
    res = cli([*SMALL, "--algorithm", "psgd", "--T", "20000", "--out", str(out), "--checkpoint-every", "40",
               "--fault", "0:100"], tmp)
    assert res.returncode == 1 and read_trace(out).status == "failed", res.stderr
    return ["--resume", str(out), "--plugin", str(slow)], out, "failed"


STAGES = ["plugin import", "data set load", "checkpoint read"]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
@pytest.mark.parametrize("stage", STAGES)
def test_a_signal_during_a_slow_set_up_step_is_interrupted(tmp_path: Path, stage: str, sig: signal.Signals) -> None:
    """Inside a library call that turns whatever goes wrong into one line of bad input ('cannot read', 'damaged',
    'failed while importing'), a signal is still a signal: exit 130, nothing said, a trace that existed left as
    it was (the resumed run had not taken it over yet), none created."""
    args, trace, before = _stage_run(stage, tmp_path)
    marker = tmp_path / "reading"
    env = {**os.environ, "CRPSGD_CACHE": str(tmp_path / "cache"), "SLOW_MARKER": str(marker)}
    proc = subprocess.Popen([*RUN, *args], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    deadline = time.monotonic() + 60
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert marker.exists(), proc.communicate(timeout=60)
    time.sleep(0.1)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (proc.returncode, err)
    assert "Traceback" not in err and "error" not in err, err
    assert (read_trace(trace).status if trace is not None and trace.exists() else None) == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".creating")]


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as fh:
            return fh.read().strip()
    except OSError:
        return ""


def _mpi() -> str | None:
    from crpsgd_mpi.mpienv import detect_mpi

    return detect_mpi(Path(sys.prefix))


#: After every rank runs our code (its handlers are installed): a SIGINT to mpiexec at each of these moments.
MPIEXEC_MOMENTS = [0.0, 0.05, 0.2, 0.5, 1.0, 2.0, 4.0]


@pytest.mark.mpi
@pytest.mark.timeout(420)
def test_sigint_to_mpiexec_at_any_moment(tmp_path: Path) -> None:
    """Counted from the moment every rank runs our code (before it, CPython's own start-up and the launcher's own
    start-up, see the next test). Open MPI's mpiexec ends the job itself and exits 1 (PRRTE's rule); hydra forwards
    the SIGINT to every rank, which end the job with MPI_Abort(130) or, before MPI starts, exit 130. On a loaded
    machine the ranks are seconds apart: one may still be importing (it exits 130 at once) while another waits in
    MPI_Init for it (its start guard takes the signal: two CI runs hung here before it existed)."""
    expected = {"openmpi": 1, "mpich": 130}[_mpi() or "openmpi"]
    for i, moment in enumerate(MPIEXEC_MOMENTS):
        out = tmp_path / f"m{i}.h5"
        job = ShellJob(f"mpiexec -n 3 python -m crpsgd_mpi.run {' '.join(LONG[4:])} --out {out}", cwd=tmp_path)
        ranks = job.ranks(3)
        while not all(_ours_running(pid) for pid in ranks.values()) and job.proc.poll() is None:
            time.sleep(0.002)
        time.sleep(moment)
        job.proc.send_signal(signal.SIGINT)
        code = job.wait(60)
        text = job.output()
        status = read_trace(out).status if out.exists() else None
        print(moment, code, status, ours(text))
        assert code == expected, (moment, code, text)
        assert "Traceback" not in text and status in (None, "interrupted"), (moment, status, text)
        assert len([ln for ln in ours(text) if "interrupted" in ln]) <= 1, text
        assert job.leftovers() == []


@pytest.mark.mpi
@pytest.mark.timeout(300)
@pytest.mark.parametrize("delay", [0.0, 0.002, 0.005, 0.01, 0.03])
def test_a_signal_during_the_launchers_start_up_never_leaves_a_job_running(tmp_path: Path, delay: float) -> None:
    """A SIGINT `delay` s after mpiexec itself started. A launcher may lose it during its own start-up: MPICH's
    hydra while its proxy has not yet started the ranks (measured: it says 'Sending Ctrl-C to processes as
    requested', then its write to a proxy not yet connected fails, 'HYDU_sock_write ... Bad file descriptor', or a
    proxy with no process yet forwards it to nobody; it is never sent again), and Open MPI's prterun too on a loaded
    machine (measured here at load 3-10: prterun ran on and started the ranks). No rank ever saw a signal then. What
    holds: the job never ends complete, and a second signal (SIGTERM; a second Ctrl-C is hydra's SIGKILL of every
    rank) ends it as interrupted, with nothing left behind. CPython's own start-up may print a KeyboardInterrupt."""
    out = tmp_path / "s.h5"
    job = ShellJob(f"mpiexec -n 3 python -m crpsgd_mpi.run {' '.join(LONG[4:])} --out {out}", cwd=tmp_path)
    try:
        while job.proc.poll() is None and _comm(job.proc.pid) not in ("mpiexec", "prterun"):  # bash exec'd it
            time.sleep(0.0005)
        time.sleep(delay)
        job.proc.send_signal(signal.SIGINT)
        try:
            code: int | None = job.proc.wait(timeout=8)
            second = False
        except subprocess.TimeoutExpired:  # lost by the launcher
            ranks = job.ranks(3)
            while not all(_ours_running(pid) for pid in ranks.values()) and job.proc.poll() is None:
                time.sleep(0.002)
            job.proc.send_signal(signal.SIGTERM)
            code, second = job.wait(60), True
        text = job.output()
        status = read_trace(out).status if out.exists() else None
        print(delay, code, second, status, ours(text))
        assert code not in (None, 0), text
        assert status in (None, "interrupted"), (status, text)
        if second:
            assert code == {"openmpi": 1, "mpich": 130}[_mpi() or "openmpi"], text
            assert [ln for ln in ours(text) if "interrupted" in ln], text
        assert job.leftovers() == []
    finally:
        job.kill()  # whatever failed above, no job outlives its test


@pytest.mark.mpi
@pytest.mark.timeout(300)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_signal_to_the_launcher_ends_the_whole_job(tmp_path: Path, sig: signal.Signals) -> None:
    for i, moment in enumerate([0.5, 2.0, 4.0]):
        out = tmp_path / f"l{i}.h5"
        proc = subprocess.Popen([sys.executable, "-m", "crpsgd_mpi.launch", "-n", "3", "--", *RUN, *LONG[4:],
                                 "--out", str(out)], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env={**os.environ, "CRPSGD_CACHE": str(tmp_path)}, start_new_session=True)
        time.sleep(moment)
        tree = set(process_tree(proc.pid))
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(process_alive(p) for p in tree):
            time.sleep(0.05)
        alive = [p for p in tree if process_alive(p)]
        send(alive)
        status = read_trace(out).status if out.exists() else None
        assert proc.returncode == 130 and alive == [], (moment, proc.returncode, alive, err)
        assert "Traceback" not in err and status in (None, "interrupted"), (moment, status, err)


def test_every_case_table_is_not_empty() -> None:
    assert len(_alias_cases()) >= 9 and len(MOMENTS) >= 10 and len(MPIEXEC_MOMENTS) >= 7 and len(STAGES) >= 3

