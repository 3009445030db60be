"""On an L2 problem with known f*, CR-PSGD and PSGD reach a stated suboptimality."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import run_cli
from crpsgd_mpi.trace import read_trace


@pytest.mark.parametrize("args, bound", [
    (["--algorithm", "cr-psgd", "--rho", "1.05"], 2e-3),
    (["--algorithm", "psgd", "--batch-size", "16"], 2e-2),
    (["--algorithm", "catalyst", "--rho", "1.5"], 2e-2),
])
def test_reaches_suboptimality(tmp_path: Path, args: list[str], bound: float) -> None:
    out = tmp_path / "t.h5"
    assert run_cli("--backend", "local", "--workers", "10", "--T", "10000", "--lam", "0.01", *args,
                   "--out", str(out)) == 0
    ev = read_trace(out).evals
    assert ev["suboptimality"][0] > 0.1  # the start is far from optimal
    assert 0 <= ev["suboptimality"].iloc[-1] < bound
