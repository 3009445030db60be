"""Every script in examples/ runs as a reader would run it (a fresh process, in an empty folder) and prints what it
promises."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

EXAMPLES = REPO / "examples"


def run_example(name: str, tmp_path: Path, *args: str) -> str:
    res = subprocess.run([sys.executable, str(EXAMPLES / name), *args], cwd=tmp_path, capture_output=True, text=True,
                         timeout=120, env={"PATH": "/usr/bin:/bin", "CRPSGD_CACHE": str(tmp_path / "cache"),
                                           "MPLBACKEND": "Agg", "HOME": str(tmp_path)})
    print(res.stdout, res.stderr)
    assert res.returncode == 0 and "Traceback" not in res.stderr
    return res.stdout


@pytest.mark.timeout(150)
def test_pl_figure(tmp_path: Path) -> None:
    out = run_example("pl_figure.py", tmp_path, "fig.png")
    assert (tmp_path / "fig.png").stat().st_size > 10_000
    rounds = {line.split("rounds")[0].strip(): int(line.split("rounds")[1].split()[0]) for line in out.splitlines()}
    assert rounds == {"CR-PSGD, rho = 1.05": 127, "PSGD, B = 1": 10000, "PSGD, B = 256": 39}


@pytest.mark.timeout(150)
def test_sweep_over_n(tmp_path: Path) -> None:
    out = run_example("sweep_n.py", tmp_path)
    slope = float(out.split("fitted log-log slope")[1].split()[0])
    assert -1.4 < slope < -0.6


@pytest.mark.timeout(150)
def test_compare_schedules(tmp_path: Path) -> None:
    out = run_example("compare_schedules.py", tmp_path)
    for name in ("geometric", "linear", "step", "norm-test"):
        assert f"\n{name:>9} " in "\n" + out.split("\n", 1)[1]


def test_every_example_is_tested() -> None:
    here = Path(__file__).read_text() + (REPO / "tests" / "test_plugins.py").read_text()
    for script in EXAMPLES.glob("*.py"):
        assert script.name in here, f"{script.name} has no test"


@pytest.mark.timeout(300)
def test_polynomial_family_sweep_then_compare(tmp_path: Path) -> None:
    """The researcher's loop as typed from the repository's root: plugin_polynomial_batches.py swept over power and
    two seeds by `python -m crpsgd_mpi.sweep examples/polynomial_family.toml`, then one figure and table from
    `python -m crpsgd_mpi.compare`, whose labels say `power`."""
    env = {"PATH": "/usr/bin:/bin", "CRPSGD_CACHE": str(tmp_path / "cache"), "MPLBACKEND": "Agg",
           "HOME": str(tmp_path)}
    sweep = subprocess.run([sys.executable, "-m", "crpsgd_mpi.sweep", "examples/polynomial_family.toml", "--results",
                            str(tmp_path / "res")], cwd=REPO, capture_output=True, text=True, timeout=240, env=env)
    assert sweep.returncode == 0, sweep.stdout + sweep.stderr
    traces = sorted((tmp_path / "res" / "polynomial_family").glob("*.h5"))
    assert len(traces) == 4
    cmp = subprocess.run([sys.executable, "-m", "crpsgd_mpi.compare", *map(str, traces), "--out",
                          str(tmp_path / "poly.png")], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         env=env)
    assert cmp.returncode == 0, cmp.stderr
    rows = [line for line in cmp.stdout.splitlines() if line.startswith("power=")]
    assert [r.split()[0] for r in rows] == ["power=1.0", "power=2.0"] and all("2 (0,1)" in r for r in rows), cmp.stdout
    assert (tmp_path / "poly.png").stat().st_size > 10_000
