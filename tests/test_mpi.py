"""Multi-rank tests: each launches mpiexec in its own process group with a time limit (killed on expiry),
and shows the ranks' output when it fails."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import mpi_run, run_cli
from crpsgd_mpi.launch import Job, run_job
from crpsgd_mpi.procs import kill_tree
from crpsgd_mpi.trace import read_trace

pytestmark = [pytest.mark.mpi, pytest.mark.timeout(240)]
SMALL = ["--samples", "4000", "--features", "20", "--eval-points", "8"]
ALGOS = {
    "cr-psgd": ["--algorithm", "cr-psgd", "--T", "3000", "--rho", "1.3"],
    "catalyst": ["--algorithm", "catalyst", "--T", "400", "--regularizer", "nonconvex"],
    "psgd": ["--algorithm", "psgd", "--T", "300", "--batch-size", "2"],
    "local-sgd": ["--algorithm", "local-sgd", "--T", "400", "--period", "stich", "--local-batch", "2"],
}


@pytest.mark.parametrize("n", [1, 2, 3, 4])
@pytest.mark.parametrize("algo", sorted(ALGOS))
def test_mpi_equals_local_bit_for_bit(tmp_path: Path, algo: str, n: int) -> None:
    m, loc = tmp_path / "mpi.h5", tmp_path / "local.h5"
    res = mpi_run(n, [*SMALL, *ALGOS[algo], "--out", str(m), "--quiet"], timeout=120)
    assert res.returncode == 0 and not res.timed_out
    assert run_cli("--backend", "local", "--workers", str(n), *SMALL, *ALGOS[algo], "--out", str(loc)) == 0
    a, b = read_trace(m), read_trace(loc)
    assert a.attrs["status"] == b.attrs["status"] == "complete"
    for c in ("round", "sfo", "batch_size", "stage", "bytes"):
        assert np.array_equal(a.rounds[c], b.rounds[c]), c
    for c in ("round", "sfo", "loss", "grad_norm_sq"):
        assert np.array_equal(a.evals[c], b.evals[c]), c
    assert np.array_equal(a.x, b.x)
    assert a.attrs.get("f_star") == b.attrs.get("f_star")


@pytest.mark.parametrize("n", [1, 3])
def test_mpi_equals_local_with_large_batches_and_shards(tmp_path: Path, n: int) -> None:
    """Batches and shards big enough for the blocked BLAS kernel (unequal shards at n = 3) stay bit-identical."""
    args = ["--samples", "30001", "--features", "50", "--eval-points", "5", "--T", "20000", "--rho", "2"]
    m, loc = tmp_path / "mpi.h5", tmp_path / "local.h5"
    res = mpi_run(n, [*args, "--out", str(m), "--quiet"], timeout=180)
    assert res.returncode == 0 and not res.timed_out
    assert run_cli("--backend", "local", "--workers", str(n), *args, "--out", str(loc)) == 0
    a, b = read_trace(m), read_trace(loc)
    assert max(a.rounds["batch_size"]) * 51 >= 1 << 17  # the blocked kernel ran
    for c in ("round", "sfo", "batch_size", "stage", "bytes"):
        assert np.array_equal(a.rounds[c], b.rounds[c]), c
    for c in ("loss", "grad_norm_sq"):
        assert np.array_equal(a.evals[c], b.evals[c]), c
    assert np.array_equal(a.x, b.x) and a.attrs.get("f_star") == b.attrs.get("f_star")
    assert a.config["L"] == b.config["L"]


def test_allreduce_reduction_matches_to_1e9(tmp_path: Path) -> None:
    m, loc = tmp_path / "mpi.h5", tmp_path / "local.h5"
    args = [*SMALL, *ALGOS["cr-psgd"], "--reduction", "allreduce"]
    res = mpi_run(4, [*args, "--out", str(m), "--quiet"], timeout=120)
    assert res.returncode == 0
    assert run_cli("--backend", "local", "--workers", "4", *args, "--out", str(loc)) == 0
    a, b = read_trace(m), read_trace(loc)
    assert np.array_equal(a.rounds["batch_size"], b.rounds["batch_size"])
    np.testing.assert_allclose(a.evals["loss"], b.evals["loss"], rtol=1e-9)


def test_mpi_gives_thread_multiple() -> None:
    """The supervisor thread makes MPI calls beside the main thread's: the library must grant MPI_THREAD_MULTIPLE."""
    code = "from mpi4py import MPI; print(f'LEVEL {MPI.Query_thread() == MPI.THREAD_MULTIPLE}')"  # one write per rank
    res = run_job(2, [sys.executable, "-c", code], timeout=60)
    print(res.stdout, res.stderr)
    assert res.returncode == 0 and res.stdout.count("LEVEL True") == 2


def test_default_run_with_ten_ranks(tmp_path: Path) -> None:
    res = mpi_run(10, ["--out", str(tmp_path / "d.h5")], timeout=180)
    assert res.returncode == 0, res.stderr
    assert "rounds 72, SFO per worker 9512" in res.stdout and "suboptimality" in res.stdout


def test_bad_input_ends_every_rank_with_status_2(tmp_path: Path) -> None:
    out = tmp_path / "t.h5"
    t0 = time.monotonic()
    res = mpi_run(4, ["--rho", "0.5", "--out", str(out)], timeout=60)
    assert res.returncode == 2 and time.monotonic() - t0 < 30
    ours = [ln for ln in res.stderr.splitlines() if ln.startswith("crpsgd_mpi")]
    assert ours == ["crpsgd_mpi: error: rho=0.5: must be a finite number > 1"]
    assert "Traceback" not in res.stderr and not out.exists()


def test_error_on_one_rank_only(tmp_path: Path) -> None:
    # only the root checks --out: an error on one rank must still end all of them, status 2
    out = tmp_path / "exists.h5"
    out.write_bytes(b"x")
    res = mpi_run(3, ["--out", str(out)], timeout=60)
    assert res.returncode == 2 and "exists" in res.stderr and out.read_bytes() == b"x"


def test_exception_on_one_rank_ends_job_and_marks_trace_failed(tmp_path: Path) -> None:
    out = tmp_path / "t.h5"
    t0 = time.monotonic()
    res = mpi_run(4, [*SMALL, "--algorithm", "psgd", "--T", "100000", "--fault", "2:300", "--out", str(out)],
                  timeout=120)
    elapsed = time.monotonic() - t0
    assert res.returncode not in (0, 2) and not res.timed_out and elapsed < 60
    tr = read_trace(out)
    assert tr.status == "failed" and "rank 2" in tr.attrs["message"]
    assert len(tr.rounds["round"]) >= 300  # every finished round kept
    assert "fault injected on worker 2" in res.stderr


def test_sigint_marks_trace_interrupted(tmp_path: Path) -> None:
    out = tmp_path / "t.h5"
    job = Job(3, [sys.executable, "-m", "crpsgd_mpi.run", *SMALL, "--algorithm", "psgd", "--T", "10000000",
                  "--out", str(out)])
    proc = job.proc
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if out.exists() and read_trace(out).rounds["round"].size > 0:
                    break
            except (OSError, ValueError):
                pass  # not there yet, or caught the writer mid-append
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        kill_tree(proc.pid)
    print(err)
    tr = read_trace(out)
    assert tr.status == "interrupted" and tr.rounds["round"].size > 0
    assert proc.returncode != 0


def test_driver_under_mpi_matches_in_process(tmp_path: Path) -> None:
    from crpsgd_mpi.experiment import run_families

    fam = tmp_path / "fam.toml"
    fam.write_text('study = "pl"\nseeds = [0]\n[base]\nsamples = 2000\nfeatures = 5\nT = 200\neval_points = 4\n'
                   '[sweep]\nworkers = [2, 3]\n[runs.cr-psgd]\nalgorithm = "cr-psgd"\nrho = 1.5\n')
    assert run_families([fam], tmp_path / "mpi", use_mpi=True, verbose=False) == 0
    assert run_families([fam], tmp_path / "local", verbose=False) == 0
    for n in (2, 3):
        a = read_trace(tmp_path / "mpi" / "fam" / f"cr-psgd-N{n}-seed0.h5")
        b = read_trace(tmp_path / "local" / "fam" / f"cr-psgd-N{n}-seed0.h5")
        assert a.attrs["N"] == n and a.config["backend"] == "mpi" and b.config["backend"] == "local"
        assert np.array_equal(a.x, b.x) and np.array_equal(a.evals["loss"], b.evals["loss"])
