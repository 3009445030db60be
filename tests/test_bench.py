"""The benchmark code runs on a tiny case (benchmarks are not tests: nothing about speed is asserted)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crpsgd_mpi.bench import main

pytestmark = pytest.mark.mpi  # sim_vs_raw, local_vs_mpi, the memory probe, reductions and rates run under mpiexec


@pytest.mark.timeout(360)  # about 220 s at a load of 5 on 2 cores
def test_bench_quick(tmp_path: Path) -> None:
    out = tmp_path / "b.json"
    assert main(["--quick", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert all(v["identical"] is True for v in res["local_vs_mpi"].values())
    assert res["memory"]["ranks"] == 2
    assert all(v["rounds"] > 0 for v in res["sim_vs_raw"].values())
    assert all(v["rounds"] > 0 and v["identical"] is True for v in res["schedule_cost"]["run"].values())
    red = res["reductions"]["mpi"]["N2"]
    assert all(v[k]["median"] > 0 for v in red["sizes"].values() for k in ("exact", "ordered", "allreduce"))
    assert red["split"] and red["sweep"] and res["reductions"]["local"]["N2"]
    assert res["placement"]["identical"] is True  # the exact reduction: the same bits on 2 ranks as on 4
    assert all(v[k]["median"] > 0 for v in res["round_rates"].values() for k in ("sim_local", "sim_mpi", "raw_mpi"))
