"""Virtual workers over MPI ranks: whatever the number of ranks M holding the N workers (contiguous blocks, even or
not), and in one process, a run gives one trace, bit for bit; a run stopped at one M is resumed at another (or in
process) exactly; a fault names a worker; what cannot be placed is refused in one line. Each job has a time limit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_resume import assert_same_run

from conftest import mpi_run, run_cli
from crpsgd_mpi.trace import Trace, read_trace

pytestmark = [pytest.mark.mpi, pytest.mark.timeout(300)]
#: d = 11 rides in the gathered exact sum; d = 2001 at N = 10 in the two collectives (N * d > GATHER_ELEMENTS)
PROBLEMS = {"gathered": ["--samples", "3000", "--features", "10"],
            "two collectives": ["--samples", "1500", "--features", "2000"]}
ALGOS = {"gathered": ["--algorithm", "cr-psgd", "--T", "1500", "--rho", "1.3", "--eval-points", "6"],
         "two collectives": ["--algorithm", "local-sgd", "--T", "300", "--period", "3", "--eval-points", "4"]}


def same_numbers(a: Trace, b: Trace) -> None:
    assert a.status == b.status == "complete"
    for c in ("round", "sfo", "batch_size", "stage", "bytes"):
        assert np.array_equal(a.rounds[c], b.rounds[c]), c
    for c in ("round", "sfo", "loss", "grad_norm_sq", "suboptimality"):
        assert np.array_equal(a.evals[c], b.evals[c], equal_nan=True), c
    assert np.array_equal(a.x, b.x)
    assert a.attrs.get("f_star") == b.attrs.get("f_star") and a.config["L"] == b.config["L"]


@pytest.mark.parametrize("path", sorted(PROBLEMS))
def test_ten_workers_on_any_number_of_ranks_give_one_trace(tmp_path: Path, path: str) -> None:
    args = [*PROBLEMS[path], *ALGOS[path], "--quiet", "--workers", "10"]
    ref = tmp_path / "local.h5"
    assert run_cli("--backend", "local", *args, "--out", str(ref)) == 0
    want = read_trace(ref)
    for m in (1, 2, 3, 5, 10):
        out = tmp_path / f"m{m}.h5"
        res = mpi_run(m, [*args, "--out", str(out)], timeout=150)
        assert res.returncode == 0 and not res.timed_out, res.stderr
        got = read_trace(out)
        same_numbers(got, want)
        v = got.attrs["versions"]
        counts = [10 // m + (r < 10 % m) for r in range(m)]
        assert (v["ranks"], v["workers_per_rank"], v["reduction"]) == (str(m), ",".join(map(str, counts)), "exact")


def test_ordered_reduction_is_placement_independent_too(tmp_path: Path) -> None:
    args = [*PROBLEMS["gathered"], *ALGOS["gathered"], "--quiet", "--workers", "7", "--reduction", "ordered"]
    ref = tmp_path / "local.h5"
    assert run_cli("--backend", "local", *args, "--out", str(ref)) == 0
    out = tmp_path / "m3.h5"
    res = mpi_run(3, [*args, "--out", str(out)], timeout=120)
    assert res.returncode == 0, res.stderr
    same_numbers(read_trace(out), read_trace(ref))


def test_fewer_workers_than_ranks_is_refused_in_one_line(tmp_path: Path) -> None:
    res = mpi_run(4, ["--workers", "3", "--T", "100", "--out", str(tmp_path / "t.h5")], timeout=90)
    assert res.returncode == 2 and not res.timed_out
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("crpsgd_mpi:")]
    assert lines == ["crpsgd_mpi: error: workers=3: is fewer than the MPI ranks (4): every rank simulates at least "
                     "one worker"], res.stderr
    assert "Traceback" not in res.stderr and not (tmp_path / "t.h5").exists()


def test_a_fault_names_a_worker_and_its_rank(tmp_path: Path) -> None:
    out = tmp_path / "t.h5"
    res = mpi_run(2, ["--workers", "6", "--T", "500", "--samples", "2000", "--features", "10", "--quiet",
                      "--out", str(out), "--fault", "4:10"], timeout=90)
    assert res.returncode == 1 and not res.timed_out
    t = read_trace(out)
    assert t.status == "failed"
    assert t.attrs["message"].startswith("rank 1: RuntimeError: fault injected on worker 4 after round 10")


@pytest.mark.parametrize("name", ["cr-psgd", "local-sgd"])
def test_stopped_on_four_ranks_resumed_on_two_or_in_process(tmp_path: Path, name: str) -> None:
    """N = 8 workers: SIGKILL of worker 5's rank at M = 4, resumed at M = 2; killed again there, resumed in one
    process: equal to the run never stopped (every worker's stream and model travel with the checkpoint)."""
    algo = {"cr-psgd": ["--algorithm", "cr-psgd", "--rho", "1.05"],
            "local-sgd": ["--algorithm", "local-sgd", "--period", "5", "--local-batch", "2"]}[name]
    args = ["--samples", "2000", "--features", "5", "--eval-points", "8", "--T", "6000", *algo, "--quiet",
            "--workers", "8"]
    ref = tmp_path / "ref.h5"
    assert run_cli("--backend", "local", *args, "--out", str(ref)) == 0
    total = int(read_trace(ref).attrs["rounds_total"])
    every = max(1, total // 6)
    out = tmp_path / "t.h5"
    res = mpi_run(4, [*args, "--out", str(out), "--checkpoint-every", str(every), "--fault",
                      f"5:{2 * every + 1}:kill"], timeout=120)
    assert res.returncode != 0 and not res.timed_out
    res = mpi_run(2, ["--resume", str(out), "--fault", f"1:{4 * every + 1}:kill"], timeout=120)
    assert res.returncode != 0 and not res.timed_out
    assert f"from round {2 * every}" in res.stderr, res.stderr

    done = subprocess.run([sys.executable, "-m", "crpsgd_mpi.run", "--resume", str(out)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"from round {4 * every}" in done.stderr
    assert_same_run(read_trace(out), read_trace(ref))
