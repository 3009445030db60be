"""Resume: a run stopped anywhere (an exception, SIGKILL of one process or of the whole job, a timed checkpoint) and
resumed from its trace equals the run never stopped, row for row and bit for bit (wall times aside), for every
algorithm, on both backends and across them; a resume that would change the run is refused and leaves the trace
as it was."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import HEART, mpi_run
from crpsgd_mpi.trace import Trace, read_trace

SMALL = ["--samples", "2000", "--features", "5", "--eval-points", "8", "--T", "6000"]
RUN = [sys.executable, "-m", "crpsgd_mpi.run"]
#: (algorithm options, rounds at which a kill or a failure is injected, as fractions of the run's rounds)
CASES = {
    "cr-psgd": ["--algorithm", "cr-psgd", "--rho", "1.05"],
    "psgd": ["--algorithm", "psgd", "--batch-size", "7"],
    "local-sgd": ["--algorithm", "local-sgd", "--period", "5", "--local-batch", "2"],
    "catalyst": ["--algorithm", "catalyst", "--T", "4000"],
    "norm-test": ["--algorithm", "cr-psgd", "--schedule", "norm-test", "--B1", "4"],
    "step": ["--algorithm", "cr-psgd", "--schedule", "step", "--step-every", "6"],
    # the update rule's state: one momentum buffer (cr-psgd), one per worker (local-sgd); the step size by round
    "nesterov": ["--algorithm", "cr-psgd", "--rho", "1.05", "--momentum", "0.9", "--nesterov", "--gamma", "0.5",
                 "--weight-decay", "0.01", "--gamma-schedule", "step", "--gamma-every", "20", "--warmup-rounds", "5"],
    "local-momentum": ["--algorithm", "local-sgd", "--period", "5", "--local-batch", "2", "--momentum", "0.8",
                       "--gamma", "0.5", "--gamma-schedule", "cosine"],
}


def cli(args: list[str], cwd: Path, timeout: float = 60, cache: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **({"CRPSGD_CACHE": str(cache)} if cache is not None else {})}
    return subprocess.run([*RUN, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def fstar_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fstar")


@pytest.fixture(autouse=True)
def _one_fstar_cache(_isolated_cache: None, fstar_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every run of this module, in process or under mpiexec, reads one f* cache: f* is cached per problem whatever
    N, and one computed with another N (another summation order) can differ in the last bit, so runs compared bit
    for bit must share it."""
    monkeypatch.setenv("CRPSGD_CACHE", str(fstar_cache))


def assert_same_run(got: Trace, want: Trace) -> None:
    """Everything but the clocks: every round row, every evaluation, the final iterate, the counts."""
    assert got.status == want.status == "complete"
    assert list(got.rounds.columns) == list(want.rounds.columns)
    for c in got.rounds.columns:
        if c != "wall_time":  # gamma is NaN for a plug-in that steps on its own
            assert np.array_equal(got.rounds[c].to_numpy(), want.rounds[c].to_numpy(), equal_nan=c == "gamma"), c
    assert (np.diff(got.rounds["wall_time"].to_numpy()) >= 0).all()  # the clock runs on from the checkpoint
    assert list(got.evals.columns) == list(want.evals.columns)
    for c in got.evals.columns:
        assert np.array_equal(got.evals[c].to_numpy(), want.evals[c].to_numpy(), equal_nan=True), c
    assert np.array_equal(got.x, want.x)
    for key in ("rounds_total", "sfo_per_worker", "unspent_sfo", "bytes_per_rank", "L", "f_star"):
        assert got.attrs.get(key) == want.attrs.get(key), key
    how = {"backend", "checkpoint_every", "fault", "out", "overwrite", "quiet", "versions"}  # not the numbers
    assert {k: v for k, v in got.config.items() if k not in how} == {k: v for k, v in want.config.items()
                                                                     if k not in how}


@pytest.fixture(scope="module")
def references(tmp_path_factory: pytest.TempPathFactory, fstar_cache: Path) -> dict[str, Trace]:
    """Each case run once, never stopped, without checkpoints."""
    where = tmp_path_factory.mktemp("references")
    out = {}
    for name, args in CASES.items():
        path = where / f"{name}.h5"
        res = cli(["--backend", "local", "--workers", "3", *SMALL, *args, "--out", str(path), "--quiet",
                   "--checkpoint-every", "off"], where, cache=fstar_cache)
        assert res.returncode == 0, res.stderr
        out[name] = read_trace(path)
    return out


def wait_for_a_checkpoint(trace: Path, proc: subprocess.Popen, timeout: float = 60) -> None:
    """Until the running job's trace holds a checkpoint (or the job ended, or `timeout` passed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with h5py.File(trace, "r") as f:
                if "checkpoint" in f:
                    return
        except OSError:
            pass
        time.sleep(0.05)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("how", ["kill", "raise"])
def test_stopped_and_resumed_equals_the_run_never_stopped(tmp_path: Path, references: dict[str, Trace], name: str,
                                                          how: str) -> None:
    ref = references[name]
    total = int(ref.attrs["rounds_total"])
    every = max(1, total // 7)
    # before the first checkpoint (the resume starts over), on a checkpoint's round (its checkpoint is not yet
    # written: the previous one is used), just after one, and in the last round
    for stop in sorted({1, every, every + 1, total - 1}):
        out = tmp_path / f"t{stop}.h5"
        fault = f"{stop % 3}:{stop}" + (":kill" if how == "kill" else "")
        res = cli(["--backend", "local", "--workers", "3", *SMALL, *CASES[name], "--out", str(out), "--quiet",
                   "--checkpoint-every", str(every), "--fault", fault], tmp_path)
        assert res.returncode == (-signal.SIGKILL if how == "kill" else 1), res.stderr
        stopped = read_trace(out)
        assert stopped.status == ("running" if how == "kill" else "failed")
        kept = (stop - 1) // every * every if stop % every == 0 else stop // every * every
        with h5py.File(out) as f:
            assert ("checkpoint" in f) == (kept > 0)
            assert f["rounds/round"].shape[0] >= kept
        res = cli(["--resume", str(out)], tmp_path)
        assert res.returncode == 0, res.stderr
        assert f"resuming {out} ({stopped.status}) from " + (f"round {kept}" if kept else "the start") in res.stderr
        resumed = read_trace(out)
        assert_same_run(resumed, ref)
        with h5py.File(out) as f:
            assert "checkpoint" not in f  # a complete trace has nothing left to resume
        history = resumed.attrs["resumes"]  # parsed by load_trace
        assert history[-1]["after_round"] == kept and history[-1]["status_was"] == stopped.status


@pytest.mark.timeout(120)
def test_resumed_twice_and_rows_after_the_checkpoint_are_written_again(tmp_path: Path,
                                                                      references: dict[str, Trace]) -> None:
    out = tmp_path / "t.h5"
    args = ["--backend", "local", "--workers", "3", *SMALL, *CASES["psgd"], "--out", str(out), "--quiet"]
    assert cli([*args, "--checkpoint-every", "40", "--fault", "0:100"], tmp_path).returncode == 1
    assert len(read_trace(out).rounds) == 100  # the failure writes every row; the checkpoint is at round 80
    assert cli(["--resume", str(out), "--fault", "2:130:kill"], tmp_path).returncode == -signal.SIGKILL
    res = cli(["--resume", str(out)], tmp_path)
    assert res.returncode == 0 and "from round 120" in res.stderr
    assert_same_run(read_trace(out), references["psgd"])
    assert [r["after_round"] for r in read_trace(out).attrs["resumes"]] == [80, 120]


@pytest.mark.timeout(120)
def test_the_whole_job_killed_at_any_instant(tmp_path: Path) -> None:
    """SIGKILL of the process group while it runs (perhaps in the middle of writing a checkpoint): the trace is one
    whole version, and resuming it gives the run never stopped."""
    args = ["--backend", "local", "--workers", "2", "--samples", "2000", "--features", "5", "--algorithm", "psgd",
            "--T", "400000", "--quiet"]
    ref = tmp_path / "ref.h5"
    assert cli([*args, "--out", str(ref), "--checkpoint-every", "off"], tmp_path, timeout=100).returncode == 0
    out = tmp_path / "t.h5"
    proc = subprocess.Popen([*RUN, *args, "--out", str(out), "--checkpoint-every", "0.3s"], cwd=tmp_path,
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_a_checkpoint(out, proc)
    time.sleep(0.4)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert read_trace(out).status == "running"
    res = cli(["--resume", str(out)], tmp_path, timeout=100)
    assert res.returncode == 0, res.stderr
    assert "from round " in res.stderr
    assert_same_run(read_trace(out), read_trace(ref))
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporary left


@pytest.mark.mpi
@pytest.mark.timeout(240)
@pytest.mark.parametrize("name", ["cr-psgd", "psgd", "local-sgd", "catalyst"])
def test_mpi_stopped_and_resumed_under_mpi_and_in_one_process(tmp_path: Path, references: dict[str, Trace],
                                                              name: str) -> None:
    """Under mpiexec (3 ranks): SIGKILL of a rank, and an exception on a rank; resumed under mpiexec, and in one
    process (the traces of both backends are the same bits)."""
    ref = references[name]
    every = max(1, int(ref.attrs["rounds_total"]) // 5)
    stop = 2 * every + 1
    for how, resume_with in (("kill", "mpi"), ("raise", "mpi"), ("kill", "local")):
        out = tmp_path / f"{how}-{resume_with}.h5"
        fault = f"{1 + (how == 'raise')}:{stop}" + (":kill" if how == "kill" else "")
        res = mpi_run(3, [*SMALL, *CASES[name], "--out", str(out), "--quiet", "--checkpoint-every", str(every),
                          "--fault", fault], timeout=90)
        assert res.returncode != 0 and not res.timed_out
        # a killed rank: marked failed when rank 0 saw it first, else (MPICH kills every rank at once) running
        assert read_trace(out).status in (("failed", "running") if how == "kill" else ("failed",))
        if resume_with == "mpi":
            res = mpi_run(3, ["--resume", str(out)], timeout=90)
            assert res.returncode == 0 and not res.timed_out
            assert f"from round {2 * every}" in res.stderr, res.stderr
        else:
            res2 = cli(["--resume", str(out)], tmp_path)
            assert res2.returncode == 0, res2.stderr
        assert_same_run(read_trace(out), ref)


@pytest.mark.mpi
@pytest.mark.timeout(240)
def test_the_whole_mpi_job_killed_at_any_instant(tmp_path: Path) -> None:
    """SIGKILL of mpiexec and every rank at once, while they run and write checkpoints; resumed under mpiexec."""
    from mpijobs import ShellJob

    args = ["--samples", "2000", "--features", "5", "--algorithm", "psgd", "--T", "100000", "--quiet"]
    ref = tmp_path / "ref.h5"
    assert cli(["--backend", "local", "--workers", "2", *args, "--out", str(ref), "--checkpoint-every", "off"],
               tmp_path, timeout=100).returncode == 0
    out = tmp_path / "t.h5"
    job = ShellJob(f"mpiexec -n 2 python -m crpsgd_mpi.run {' '.join(args)} --out {out} --checkpoint-every 0.2s",
                   tmp_path)
    try:
        job.ranks(2)
        wait_for_a_checkpoint(out, job.proc)
        time.sleep(0.3)
    finally:
        job.kill()
    assert read_trace(out).status == "running"
    res = mpi_run(2, ["--resume", str(out)], timeout=120)
    assert res.returncode == 0 and not res.timed_out and "from round " in res.stderr
    assert_same_run(read_trace(out), read_trace(ref))


@pytest.mark.mpi
@pytest.mark.timeout(240)
def test_in_process_run_resumed_under_mpi_with_timed_checkpoints(tmp_path: Path) -> None:
    args = [*SMALL, "--algorithm", "psgd", "--T", "120000"]
    ref = tmp_path / "ref.h5"
    assert cli(["--backend", "local", "--workers", "2", *args, "--out", str(ref), "--quiet",
                "--checkpoint-every", "off"], tmp_path, timeout=100).returncode == 0
    out = tmp_path / "t.h5"
    total = int(read_trace(ref).attrs["rounds_total"])
    res = cli(["--backend", "local", "--workers", "2", *args, "--out", str(out), "--quiet", "--checkpoint-every",
               "0.05s", "--fault", f"0:{total * 2 // 3}"], tmp_path, timeout=100)
    assert res.returncode == 1
    with h5py.File(out) as f:
        assert "checkpoint" in f
    # the resumed job checks its clock under MPI too (rank 0's clock decides for every rank)
    res = mpi_run(2, ["--resume", str(out), "--checkpoint-every", "0.05s", "--fault", f"1:{total - 5}"], timeout=90)
    assert res.returncode == 1 and not res.timed_out
    res = mpi_run(2, ["--resume", str(out)], timeout=90)
    assert res.returncode == 0 and not res.timed_out
    assert_same_run(read_trace(out), read_trace(ref))


@pytest.fixture
def stopped(tmp_path: Path) -> Path:
    """A trace stopped at round 30 with a checkpoint at round 20 (N=3)."""
    out = tmp_path / "t.h5"
    res = cli(["--backend", "local", "--workers", "3", *SMALL, "--algorithm", "psgd", "--out", str(out), "--quiet",
               "--checkpoint-every", "10", "--fault", "0:30"], tmp_path)
    assert res.returncode == 1
    return out


def one_error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("args, field, says", [
    (["--seed", "1"], "seed", "differs from the run recorded in"),
    (["--T", "7000"], "T", "differs from the run recorded in"),
    (["--gamma", "0.5"], "gamma", "differs from the run recorded in"),
    (["--algorithm", "cr-psgd"], "algorithm", "differs from the run recorded in"),
    (["--batch-size", "2"], "batch_size", "differs from the run recorded in"),
    (["--workers", "4"], "workers", "differs from the run recorded in"),
    (["--out", "other.h5"], "out", "differs from the trace being resumed"),
    (["--checkpoint-every", "soon"], "checkpoint_every", "must be a number of rounds"),
])
def test_a_resume_that_would_change_the_run_is_refused(tmp_path: Path, stopped: Path, args: list[str], field: str,
                                                       says: str) -> None:
    before = digest(stopped)
    res = cli(["--resume", str(stopped), *args], tmp_path)
    assert res.returncode == 2
    line = one_error_line(res.stderr)
    assert line.startswith(f"crpsgd_mpi: error: {field}=") and says in line
    assert digest(stopped) == before


@pytest.mark.timeout(60)
def test_the_same_options_given_again_are_accepted(tmp_path: Path, stopped: Path) -> None:
    res = cli(["--resume", str(stopped), "--seed", "0", "--algorithm", "psgd", "--batch-size", "1", "--workers", "3",
               "--out", str(stopped), "--quiet"], tmp_path)
    assert res.returncode == 0, res.stderr
    assert read_trace(stopped).status == "complete"


def _garbage(p: Path) -> None:
    p.write_bytes(os.urandom(5000))


def _not_a_trace(p: Path) -> None:
    with h5py.File(p, "w") as f:
        f.create_dataset("x", data=np.arange(3))


def _no_rngs(p: Path) -> None:
    with h5py.File(p, "r+") as f:
        del f["checkpoint/rngs"]


def _ahead(p: Path) -> None:
    with h5py.File(p, "r+") as f:
        f["rounds/round"].resize((5,))


def _config_not_a_dict(p: Path) -> None:
    with h5py.File(p, "r+") as f:
        f.attrs["run_config"] = "[]"


def _state_not_a_group(p: Path) -> None:
    with h5py.File(p, "r+") as f:
        del f["checkpoint/algorithm"]
        f["checkpoint/algorithm"] = np.arange(3)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("spoil, says", [
    (_config_not_a_dict, "cannot be read as a trace"),
    (_state_not_a_group, "its checkpoint is damaged"),
    (None, "cannot be read: No such file or directory"),
    ("dir", "is not a regular file"),
    (_garbage, "is not an HDF5 file"),
    (_not_a_trace, "is not a trace of a run this version can resume"),
    (_no_rngs, "its checkpoint is damaged"),
    (_ahead, "is ahead of its rows"),
])
def test_what_cannot_be_resumed_is_named(tmp_path: Path, stopped: Path, spoil: object, says: str) -> None:
    target = tmp_path / "x.h5"
    if spoil == "dir":
        target.mkdir()
    elif callable(spoil):
        target.write_bytes(stopped.read_bytes())
        spoil(target)
    before = digest(target) if target.is_file() else None
    res = cli(["--resume", str(target)], tmp_path)
    assert res.returncode == 2
    line = one_error_line(res.stderr)
    assert line.startswith(f"crpsgd_mpi: error: resume='{target}'") and says in line
    if before is not None:
        assert digest(target) == before


@pytest.mark.timeout(60)
def test_a_complete_or_diverged_trace_is_left_alone(tmp_path: Path, references: dict[str, Trace]) -> None:
    done = tmp_path / "done.h5"
    done.write_bytes(Path(references["psgd"].path).read_bytes())
    before = digest(done)
    res = cli(["--resume", str(done)], tmp_path)
    assert res.returncode == 0 and f"{done} is complete: nothing to resume" in res.stderr and digest(done) == before
    bad = tmp_path / "bad.h5"
    res = cli(["--backend", "local", "--workers", "2", *SMALL, "--gamma", "1e6", "--out", str(bad), "--quiet"], tmp_path)
    assert res.returncode == 3
    before = digest(bad)
    res = cli(["--resume", str(bad)], tmp_path)
    assert res.returncode == 3 and f"diverged: {bad} ended so; resuming would diverge again" in res.stderr
    assert digest(bad) == before


@pytest.mark.timeout(60)
def test_changed_data_are_refused(tmp_path: Path) -> None:
    data = tmp_path / "heart"
    data.write_bytes(HEART.read_bytes())
    out = tmp_path / "t.h5"
    res = cli(["--backend", "local", "--workers", "2", "--dataset", str(data), "--T", "3000", "--out", str(out),
               "--quiet", "--checkpoint-every", "5", "--fault", "0:12"], tmp_path)
    assert res.returncode == 1
    data.write_text("".join(data.read_text().splitlines(keepends=True)[:-1]))  # one sample fewer
    before = digest(out)
    res = cli(["--resume", str(out)], tmp_path)
    assert res.returncode == 2
    line = one_error_line(res.stderr)
    assert line.startswith(f"crpsgd_mpi: error: dataset='{data}'") and "changed since the run" in line
    assert digest(out) == before


@pytest.mark.mpi
@pytest.mark.timeout(120)
def test_a_resume_on_more_ranks_than_workers_is_refused(tmp_path: Path, stopped: Path) -> None:
    """A run of 3 workers resumes on any number of ranks up to 3 (tests/test_placement.py), not on 4."""
    before = digest(stopped)
    res = mpi_run(4, ["--resume", str(stopped)], timeout=60)
    assert res.returncode == 2 and not res.timed_out
    assert (f"resume='{stopped}': was run by 3 workers: is fewer than the MPI ranks (4): every rank simulates at "
            "least one worker") in res.stderr, res.stderr
    assert digest(stopped) == before


@pytest.mark.timeout(120)
def test_the_api_resumes_and_checkpoints_can_be_off(tmp_path: Path, references: dict[str, Trace]) -> None:
    from crpsgd_mpi import resume, simulate
    from crpsgd_mpi.errors import InputError, RunFailed

    out = tmp_path / "t.h5"
    opts = dict(backend="local", workers=3, samples=2000, features=5, eval_points=8, T=6000, algorithm="psgd",
                batch_size=7, out=str(out), quiet=True)
    with pytest.raises(RunFailed):
        simulate(**opts, checkpoint_every="off", fault="1:50")
    with h5py.File(out) as f:
        assert "checkpoint" not in f
    with pytest.raises(InputError, match="seed"):
        resume(out, seed=3)
    trace = resume(out, quiet=True)  # no checkpoint: it starts over, in the same file
    assert trace is not None and trace.path == out
    assert_same_run(trace, references["psgd"])


NOT_RESUMABLE = '''
from crpsgd_mpi import ALGORITHMS, Algorithm, register_algorithm


@register_algorithm("plain-psgd")
class Plain(ALGORITHMS.get("psgd")):
    """PSGD as a plug-in that does not implement state() (the base class's default)."""

    state = Algorithm.state
'''


@pytest.mark.timeout(120)
@pytest.mark.parametrize("resumable", [True, False])
def test_plugin_algorithms_resume_exactly_or_start_over(tmp_path: Path, resumable: bool) -> None:
    """A plug-in with state() and run(resume=) (examples/plugin_linear_growth.py) resumes exactly; one without gets
    no checkpoint, and its resume starts over in the same file."""
    if resumable:
        plugin, algorithm = str(Path(__file__).resolve().parents[1] / "examples" / "plugin_linear_growth.py"), \
            "linear-growth"
    else:
        (tmp_path / "plain.py").write_text(NOT_RESUMABLE)
        plugin, algorithm = str(tmp_path / "plain.py"), "plain-psgd"
    args = ["--backend", "local", "--workers", "3", *SMALL, "--T", "20000", "--plugin", plugin, "--algorithm",
            algorithm, "--quiet"]
    assert cli([*args, "--out", str(tmp_path / "ref.h5"), "--checkpoint-every", "off"], tmp_path).returncode == 0
    out = tmp_path / "t.h5"
    assert cli([*args, "--out", str(out), "--checkpoint-every", "4", "--fault", "2:10:kill"],
               tmp_path).returncode == -signal.SIGKILL
    with h5py.File(out) as f:
        assert ("checkpoint" in f) == resumable
    res = cli(["--resume", str(out), "--plugin", plugin], tmp_path)  # the plug-in given again (never the trace's)
    assert res.returncode == 0, res.stderr
    assert ("from round 8" if resumable else "from the start") in res.stderr
    assert_same_run(read_trace(out), read_trace(tmp_path / "ref.h5"))


UNSTORABLE = '''
from crpsgd_mpi import ALGORITHMS, register_algorithm


@register_algorithm("unstorable-psgd")
class Unstorable(ALGORITHMS.get("psgd")):
    """PSGD whose state() holds what a checkpoint cannot store."""

    def state(self):
        return {"x": [self._x.copy()]}
'''


@pytest.mark.timeout(60)
def test_a_state_that_cannot_be_stored_costs_the_checkpoints_not_the_run(tmp_path: Path) -> None:
    (tmp_path / "unstorable.py").write_text(UNSTORABLE)
    out = tmp_path / "t.h5"
    res = cli(["--backend", "local", "--workers", "2", *SMALL, "--plugin", str(tmp_path / "unstorable.py"),
               "--algorithm", "unstorable-psgd", "--checkpoint-every", "5", "--out", str(out), "--quiet"], tmp_path)
    assert res.returncode == 0 and read_trace(out).status == "complete"
    assert res.stderr.count("note: no checkpoints for this run") == 1


@pytest.mark.timeout(120)  # 898 checkpoints, each hashed for its digest (a few ms): 44 s on a loaded 2-core machine
def test_checkpoints_do_not_grow_the_trace(tmp_path: Path) -> None:
    """Each checkpoint is written over the previous one (HDF5 never reuses the space of a deleted dataset)."""
    sizes = {}
    for every in ("off", "1"):
        out = tmp_path / f"{every}.h5"
        args = ["--backend", "local", "--workers", "3", "--samples", "2000", "--features", "400", "--eval-points",
                "3", "--algorithm", "psgd", "--T", "900", "--checkpoint-every", every, "--out", str(out), "--quiet",
                "--fault", "0:899"]
        assert cli(args, tmp_path).returncode == 1  # failed before completing: the last checkpoint is kept
        sizes[every] = out.stat().st_size
    # 898 checkpoints of a 401-number iterate and 3 streams: one checkpoint's worth more, not 898
    assert sizes["1"] - sizes["off"] < 64 * 1024, sizes


def test_a_plugin_plan_that_cannot_say_where_it_is_refuses_to_be_saved() -> None:
    from crpsgd_mpi.schedules import Plan

    class Halving(Plan):
        def __init__(self) -> None:
            self.b = 64

        def next(self) -> int | None:
            self.b //= 2
            return self.b or None

    with pytest.raises(TypeError, match="overrides next\\(\\) but not state\\(\\)"):
        Halving().state()
    plain = Plan(iter([1, 2, 3]))
    plain.next()
    assert plain.state() == {"given": 1}
