"""`python -m crpsgd_mpi.compare`: groups of seeds as one curve, labels from the settings that differ, medians in the
table, any trace (interrupted, failed) accepted, a damaged file refused in one line with nothing written."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import REPO, run_cli
from crpsgd_mpi.compare import main
from crpsgd_mpi.figures.curves import label_groups, median_crossing
from crpsgd_mpi.trace import Trace, read_trace

PNG = b"\x89PNG\r\n\x1a\n"
SMALL = ["--backend", "local", "--workers", "3", "--T", "200", "--samples", "1500", "--features", "5"]


@pytest.fixture(scope="module")
def traces(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    """cr-psgd at rho 1.1 and 2.0 and psgd with batch 4, two seeds each, in process."""
    folder = tmp_path_factory.mktemp("traces")
    made: dict[str, list[Path]] = {}
    settings = {"rho=1.1": ["--rho", "1.1"], "rho=2.0": ["--rho", "2.0"],
                "psgd": ["--algorithm", "psgd", "--batch-size", "4"]}
    for name, extra in settings.items():
        for seed in (0, 1):
            out = folder / f"{name.replace('=', '')}-s{seed}.h5"
            assert run_cli(*SMALL, *extra, "--seed", str(seed), "--out", str(out)) == 0
            made.setdefault(name, []).append(out)
    return made


def _all(traces: dict[str, list[Path]]) -> list[str]:
    return [str(p) for ps in traces.values() for p in ps]


def _rows(out: str) -> dict[str, list[str]]:
    """Table rows by label (columns split on two or more spaces)."""
    import re

    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("label"))
    rows = {}
    for line in lines[start + 2:]:
        if not line.strip() or line.startswith("figure:"):
            break
        cells = re.split(r"\s{2,}", line.strip())
        rows[cells[0]] = cells
    return rows


def test_table_labels_medians_and_figure(traces: dict[str, list[Path]], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    fig = tmp_path / "cmp.png"
    assert main([*_all(traces), "--out", str(fig), "--eps", "0.2"]) == 0
    out = capsys.readouterr().out
    rows = _rows(out)
    assert list(rows) == ["cr-psgd, rho=1.1", "cr-psgd, rho=2.0", "psgd, batch_size=4"]
    assert "eps = 0.2 (given)" in out and "suboptimality" in out
    for label, key in zip(rows, traces):
        trs = [read_trace(p) for p in traces[key]]
        cells = rows[label]
        assert cells[1] == "2 (0,1)" and cells[-1] == "complete"
        final = np.median([tr.evals["suboptimality"].iloc[-1] for tr in trs])
        assert float(cells[4]) == pytest.approx(final, rel=2e-3)
        assert float(cells[2]) == np.median([tr.rounds["round"].iloc[-1] for tr in trs])
        assert float(cells[3]) == np.median([tr.rounds["sfo"].iloc[-1] for tr in trs])
        ys = [tr.evals["suboptimality"].to_numpy() for tr in trs]
        for col, x in ((5, "sfo"), (6, "round")):
            want = median_crossing([tr.evals[x].to_numpy(float) for tr in trs], ys, 0.2)
            assert cells[col] == "not reached" if math.isnan(want) else float(cells[col]) == pytest.approx(want, rel=2e-3)
    assert fig.read_bytes()[:8] == PNG and fig.stat().st_size > 10_000
    assert [p.name for p in tmp_path.iterdir()] == ["cmp.png"]  # no temporary file left beside it


def test_as_a_command_default_out(traces: dict[str, list[Path]], tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    inputs = [str(p) for p in traces["rho=1.1"] + traces["rho=2.0"]]
    r = subprocess.run([sys.executable, "-m", "crpsgd_mpi.compare", *inputs], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert list(_rows(r.stdout)) == ["rho=1.1", "rho=2.0"]  # one algorithm: no name in the labels
    assert (tmp_path / "compare.png").read_bytes()[:8] == PNG


@pytest.mark.parametrize("x", ["rounds", "time"])
def test_x_axes(traces: dict[str, list[Path]], tmp_path: Path, capsys: pytest.CaptureFixture[str], x: str) -> None:
    fig = tmp_path / f"{x}.pdf"
    assert main([*_all(traces), "--x", x, "--out", str(fig), "--sfo-seconds", "1e-6", "--y", "grad_norm_sq"]) == 0
    out = capsys.readouterr().out
    assert "||grad f(x)||^2" in out and ("time to eps (s)" in out) == (x == "time")
    assert len(_rows(out)) == 3
    assert fig.read_bytes()[:5] == b"%PDF-"


def test_incomplete_runs_are_shown_with_their_status(traces: dict[str, list[Path]], tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    failed = tmp_path / "failed.h5"
    assert run_cli(*SMALL, "--rho", "2.0", "--seed", "2", "--fault", "0:3", "--out", str(failed)) == 1
    assert main([*map(str, traces["rho=2.0"]), str(failed), "--out", str(tmp_path / "f.png")]) == 0
    cells = next(iter(_rows(capsys.readouterr().out).values()))
    assert cells[0] == "cr-psgd" and cells[1] == "3 (0-2)" and cells[-1] == "2 complete, 1 failed"


def _damage(kind: str, good: Path, bad: Path) -> None:
    data = good.read_bytes()
    if kind == "truncated":
        bad.write_bytes(data[: len(data) // 2])
    elif kind == "random bytes":
        bad.write_bytes(np.random.default_rng(0).bytes(4096))
    elif kind == "text":
        bad.write_text("rounds,sfo\n1,2\n")
    elif kind == "empty":
        bad.write_bytes(b"")
    elif kind == "folder":
        bad.mkdir()
    elif kind == "other HDF5":
        import h5py

        with h5py.File(bad, "w") as f:
            f["x"] = np.arange(3)
    elif kind == "bad config":
        import h5py

        bad.write_bytes(data)
        with h5py.File(bad, "r+") as f:
            f.attrs["config"] = "{not json"


@pytest.mark.parametrize("kind", ["truncated", "random bytes", "text", "empty", "missing", "folder", "other HDF5",
                                  "bad config"])
def test_damaged_input_one_line_exit_2_nothing_written(traces: dict[str, list[Path]], tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str], kind: str) -> None:
    bad = tmp_path / "bad.h5"
    _damage(kind, traces["psgd"][0], bad)
    fig = tmp_path / "out.png"
    assert main([str(traces["psgd"][1]), str(bad), "--out", str(fig)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"crpsgd_mpi: error: trace={str(bad)!r}: ")
    assert "Traceback" not in err and not fig.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == (["bad.h5"] if kind != "missing" else [])


def test_damaged_input_as_a_command(tmp_path: Path) -> None:
    (tmp_path / "t.h5").write_text("not a trace\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, "-m", "crpsgd_mpi.compare", "t.h5"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.splitlines() == [r.stderr.strip()] and r.stderr.startswith("crpsgd_mpi: error: trace='t.h5': ")
    assert not (tmp_path / "compare.png").exists()


def test_refuses_to_overwrite_an_input(traces: dict[str, list[Path]], tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    trace = tmp_path / "run.png"  # a trace whatever its name
    trace.write_bytes(traces["psgd"][0].read_bytes())
    before = trace.read_bytes()
    assert main([str(trace), "--out", str(tmp_path / "." / "run.png")]) == 2
    assert "crpsgd_mpi: error: out=" in capsys.readouterr().err and trace.read_bytes() == before
    assert main([str(trace), "--out", str(tmp_path / "x.txt")]) == 2
    assert main([str(trace), "--out", str(tmp_path / "f.png"), "--eps", "-1"]) == 2
    assert main([str(trace), "--out", str(tmp_path / "f.png"), "--y", "test_accuracy"]) == 2
    assert "has no test_accuracy" in capsys.readouterr().err and not (tmp_path / "f.png").exists()


def _fake(algorithm: str, seed: int = 0, **options: object) -> Trace:
    """A trace in memory whose recorded config holds `options` over a few core settings."""
    config = {"algorithm": algorithm, "seed": seed, "rho": 1.1, "batch_size": 1, "schedule": "geometric",
              "gamma": None, "T": 100, "out": f"/tmp/{algorithm}-{seed}.h5", "backend": "local", **options}
    resolved = {**config, "gamma": 0.5 if config["gamma"] is None else config["gamma"], "L": 2.0, "n_features": 6}
    import json

    attrs = {"algorithm": algorithm, "N": 4, "T": 100, "seed": seed, "status": "complete", "config": resolved,
             "run_config": json.dumps(config)}
    empty = pd.DataFrame({"round": [], "sfo": []})
    return Trace(None, attrs, empty, empty, None)


def _labels(traces: list[Trace]) -> tuple[list[str], str]:
    from crpsgd_mpi.figures.curves import group_by_settings

    labels, title, order = label_groups(group_by_settings(traces))
    return [labels[i] for i in order], title


def test_labels_from_what_differs() -> None:
    # seeds and run mechanics only: the algorithm's name
    assert _labels([_fake("cr-psgd", 0), _fake("cr-psgd", 1, backend="mpi", out="/x.h5")]) == (["cr-psgd"], "algorithm")
    # a schedule study; numbers sorted as numbers
    assert _labels([_fake("cr-psgd", schedule="polynomial"), _fake("cr-psgd"), _fake("cr-psgd", schedule="step")]) \
        == (["schedule=geometric", "schedule=polynomial", "schedule=step"], "schedule")
    assert _labels([_fake("cr-psgd", rho=10.0), _fake("cr-psgd", rho=2.0)])[0] == ["rho=2.0", "rho=10.0"]
    # a schedule's own option beside another schedule's: each group shows its own
    assert _labels([_fake("cr-psgd", rho=1.5), _fake("cr-psgd", schedule="step", step_factor=3.0)]) == (
        ["schedule=geometric, rho=1.5", "schedule=step, step_factor=3.0"], "schedule, rho, step_factor")
    # an option one algorithm ignores is shown only where it is not the default
    labels, title = _labels([_fake("cr-psgd", rho=2.0), _fake("psgd", batch_size=4), _fake("psgd", batch_size=4, seed=3)])
    assert labels == ["cr-psgd, rho=2.0", "psgd, batch_size=4"] and title == "algorithm, batch_size, rho"
    # a plug-in's own parameter (recorded only by its runs); gamma as given, not the derived value
    assert _labels([_fake("linear-growth", growth=3), _fake("cr-psgd")])[0] == ["cr-psgd", "linear-growth, growth=3"]
    assert _labels([_fake("cr-psgd"), _fake("cr-psgd", gamma=0.25)])[0] == ["gamma=0.25", "gamma=default"]
