"""The HDF5 trace schema (version 1): every dataset and attribute, with the right length and type."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import run_cli
from crpsgd_mpi.ledger import EVAL_COLUMNS, ROUND_COLUMNS
from crpsgd_mpi.trace import TraceWriter, read_trace


def test_schema(tmp_path: Path) -> None:
    out = tmp_path / "t.h5"
    assert run_cli("--backend", "local", "--workers", "3", "--T", "2000", "--samples", "3000",
                   "--out", str(out)) == 0
    with h5py.File(out, "r") as f:
        a = f.attrs
        assert a["schema_version"] == 3 and a["status"] == "complete" and a["algorithm"] == "cr-psgd"
        assert a["N"] == 3 and a["T"] == 2000 and a["seed"] == 0 and np.isfinite(a["f_star"])
        cfg, versions = json.loads(a["config"]), json.loads(a["versions"])
        assert cfg["gamma"] > 0 and cfg["L"] > 0 and cfg["workers"] == 3
        assert {"crpsgd_mpi", "numpy", "h5py", "backend"} <= set(versions)
        assert isinstance(a["created"], str)
        R = f["rounds/round"].shape[0]
        assert R > 0
        for c in ROUND_COLUMNS:
            ds = f["rounds"][c]
            assert ds.shape == (R,) and ds.dtype.kind == ("f" if c in ("wall_time", "gamma") else "i")
        assert (f["rounds/gamma"][()] == cfg["gamma"]).all()  # a constant step: the same in every round
        E = f["evals/round"].shape[0]
        for c in EVAL_COLUMNS:
            ds = f["evals"][c]
            assert ds.shape == (E,) and ds.dtype.kind == ("i" if c in ("round", "sfo") else "f")
        assert f["evals/round"][0] == 0 and f["evals/round"][-1] == R  # start and end evaluated
        assert np.all(np.diff(f["evals/sfo"][()]) > 0)
        assert np.all(np.diff(f["rounds/wall_time"][()]) >= 0)
        sub = f["evals/suboptimality"][()]
        np.testing.assert_allclose(sub, f["evals/loss"][()] - a["f_star"])
        assert f["final/x"].shape == (cfg["n_features"],)
        assert a["sfo_per_worker"] == f["rounds/sfo"][-1]
        assert np.isnan(f["evals/test_loss"][()]).all() and np.isnan(f["evals/test_accuracy"][()]).all()  # no test set


def test_version_1_traces_still_load_and_plot(tmp_path: Path) -> None:
    """A trace written before schema 2 (no test columns) reads back and draws."""
    from crpsgd_mpi.figures.plots import staircase_figure

    out = tmp_path / "v1.h5"
    assert run_cli("--backend", "local", "--workers", "2", "--T", "300", "--out", str(out)) == 0
    with h5py.File(out, "r+") as f:
        f.attrs["schema_version"] = 1
        del f["evals/test_loss"], f["evals/test_accuracy"]
    tr = read_trace(out)
    assert list(tr.evals.columns) == ["grad_norm_sq", "loss", "round", "sfo", "suboptimality"]
    assert staircase_figure("s", {"cr-psgd": tr}, tmp_path / "fig", dataset="synthetic")


def test_no_f_star_for_nonconvex(tmp_path: Path) -> None:
    out = tmp_path / "t.h5"
    assert run_cli("--backend", "local", "--workers", "2", "--T", "300", "--regularizer", "nonconvex",
                   "--out", str(out)) == 0
    with h5py.File(out, "r") as f:
        assert "f_star" not in f.attrs and np.isnan(f["evals/suboptimality"][()]).all()


def test_divergence_is_recorded(tmp_path: Path) -> None:
    out = tmp_path / "t.h5"
    assert run_cli("--backend", "local", "--workers", "2", "--algorithm", "psgd", "--T", "5000",
                   "--gamma", "1e6", "--regularizer", "l2", "--out", str(out)) == 3
    with h5py.File(out, "r") as f:
        assert f.attrs["status"] == "diverged" and f["rounds/round"].shape[0] >= 1


@pytest.mark.skipif(shutil.which("h5dump") is None, reason="h5dump (Debian hdf5-tools) not installed")
def test_h5dump_reads_the_trace(tmp_path: Path) -> None:
    out = tmp_path / "t.h5"
    assert run_cli("--backend", "local", "--workers", "2", "--T", "100", "--out", str(out)) == 0
    res = subprocess.run(["h5dump", "-H", str(out)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and 'GROUP "rounds"' in res.stdout and 'DATASET "x"' in res.stdout


@pytest.mark.timeout(60)
def test_append_is_not_held_up_by_a_reader(tmp_path: Path) -> None:
    """A reader in another process (a test polling the trace, a user's h5dump) holds HDF5's file lock: the run's
    append writes a new version beside it and moves it into place, so it neither fails nor waits, and the reader
    keeps reading the whole version it opened."""
    path = tmp_path / "t.h5"
    w = TraceWriter(path, {"algorithm": "psgd"})
    hold = ("import h5py, sys; f = h5py.File(sys.argv[1], 'r'); print('open', flush=True); sys.stdin.readline(); "
            "print(len(f['rounds/round']), flush=True)")
    reader = subprocess.Popen([sys.executable, "-c", hold, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert reader.stdout is not None and reader.stdout.readline() == "open\n"
        with pytest.raises(BlockingIOError):  # what an in-place append would meet
            h5py.File(path, "r+")
        w.append("rounds", {c: np.arange(1, 4) for c in ROUND_COLUMNS})
        out, _ = reader.communicate("go\n", timeout=30)
        assert out == "0\n"  # the version the reader opened, whole
    finally:
        reader.kill()
        reader.wait(timeout=30)
    assert np.array_equal(read_trace(path).rounds["round"], [1, 2, 3])
