"""Plug-ins get what built-ins get: found by name (a file, a module, an entry point, a config key), exact counts, the
trace, the failure paths, bit-identical under both backends; a broken plug-in is one line and exit 2."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from mpijobs import ShellJob

from conftest import REPO, mpi_run, run_cli
from crpsgd_mpi.registry import Registry
from crpsgd_mpi.schedules import Linear
from crpsgd_mpi.trace import read_trace

PLUGIN = REPO / "examples" / "plugin_linear_growth.py"
SMALL = ["--samples", "3000", "--features", "8", "--eval-points", "6"]


@pytest.mark.parametrize("T, B1", [(5000, 1), (5000, 3), (777, 5)])
def test_example_plugin_counts_equal_closed_form(tmp_path: Path, T: int, B1: int) -> None:
    out = tmp_path / "t.h5"
    assert run_cli("--backend", "local", "--workers", "4", *SMALL, "--plugin", str(PLUGIN), "--algorithm",
                   "linear-growth", "--T", str(T), "--B1", str(B1), "--out", str(out)) == 0
    tr = read_trace(out)
    R, sfo = Linear(B1).rounds_and_sfo(T)
    assert len(tr.rounds) == R and tr.rounds["sfo"].iloc[-1] == sfo and tr.attrs["unspent_sfo"] == T - sfo
    assert tr.rounds["batch_size"].tolist() == [B1 * t for t in range(1, R + 1)]
    assert (tr.rounds["bytes"] == 9 * 8).all() and tr.attrs["bytes_per_rank"] == R * 9 * 8
    assert tr.status == "complete" and tr.config["gamma"] == pytest.approx(1 / tr.config["L"])


@pytest.mark.mpi
@pytest.mark.timeout(180)
def test_example_plugin_under_plain_mpiexec_equals_in_process(tmp_path: Path) -> None:
    out = tmp_path / "mpi.h5"
    job = ShellJob(f"mpiexec -n 4 python -m crpsgd_mpi.run --plugin {PLUGIN} --algorithm linear-growth "
                   f"{' '.join(SMALL)} --T 3000 --out {out} --quiet", cwd=REPO)
    assert job.wait(150) == 0, job.output()
    assert run_cli("--backend", "local", "--workers", "4", *SMALL, "--plugin", str(PLUGIN), "--algorithm",
                   "linear-growth", "--T", "3000", "--out", str(tmp_path / "local.h5")) == 0
    a, b = read_trace(out), read_trace(tmp_path / "local.h5")
    assert a.config["backend"] == "mpi" and b.config["backend"] == "local"
    for c in ("round", "sfo", "batch_size", "bytes"):
        assert np.array_equal(a.rounds[c], b.rounds[c]), c
    assert np.array_equal(a.evals["loss"], b.evals["loss"]) and np.array_equal(a.x, b.x)


@pytest.mark.mpi
@pytest.mark.timeout(120)
def test_plugin_failure_on_one_rank_ends_the_job_and_marks_the_trace(tmp_path: Path) -> None:
    plugin = tmp_path / "breaks.py"
    plugin.write_text(textwrap.dedent('''
        """Fails on worker 2 in round 7."""
        from crpsgd_mpi import ALGORITHMS
        psgd = ALGORITHMS.get("psgd")

        class Breaks(psgd):
            """PSGD that breaks."""
            def run(self, workers, x0):
                hook = workers.on_round
                def on_round(x, stage_end):
                    hook(x, stage_end)
                    if workers.ledger.rounds == 7 and 2 in workers.backend.local_workers:
                        raise ZeroDivisionError("plug-in bug")
                workers.on_round = on_round
                return super().run(workers, x0)

        ALGORITHMS.register("breaks", Breaks)
    '''))
    out = tmp_path / "t.h5"
    res = mpi_run(4, [*SMALL, "--plugin", str(plugin), "--algorithm", "breaks", "--T", "100000", "--out", str(out)],
                  timeout=90)
    assert res.returncode not in (0, 2) and not res.timed_out
    tr = read_trace(out)
    assert tr.status == "failed" and "rank 2" in tr.attrs["message"] and "ZeroDivisionError" in tr.attrs["message"]
    assert len(tr.rounds) >= 7


def test_plugin_from_a_config_file_and_a_module_name(tmp_path: Path) -> None:
    pkg = tmp_path / "mypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "sched.py").write_text(textwrap.dedent('''
        """A schedule plug-in: doubling every 3 rounds, as a factory of the config."""
        from crpsgd_mpi import SCHEDULES
        from crpsgd_mpi.schedules import Step

        @SCHEDULES.register("every-three")
        def every_three(setting):
            """B_t = B1 2^floor((t-1)/3)."""
            return Step(setting.cfg.B1, 2, 3)
    '''))
    cfg = tmp_path / "c.toml"
    cfg.write_text('plugin = ["mypkg.sched"]\nschedule = "every-three"\nT = 300\nworkers = 2\nbackend = "local"\n')
    out = tmp_path / "t.h5"
    sys.path.insert(0, str(tmp_path))
    try:
        assert run_cli("--config", str(cfg), *SMALL, "--out", str(out)) == 0
    finally:
        sys.path.remove(str(tmp_path))
    assert read_trace(out).rounds["batch_size"].tolist()[:7] == [1, 1, 1, 2, 2, 2, 4]


def test_installed_package_entry_point_is_found(tmp_path: Path) -> None:
    (tmp_path / "epdemo.py").write_text(textwrap.dedent('''
        """An installed package's algorithm."""
        from crpsgd_mpi.algorithms import PSGD

        class Halved(PSGD):
            """PSGD whose step is half the default."""
            @classmethod
            def create(cls, setting):
                algo = super().create(setting)
                algo.gamma /= 2
                return algo
    '''))
    info = tmp_path / "epdemo-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: epdemo\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[crpsgd_mpi.algorithms]\nhalved-psgd = epdemo:Halved\n")
    env = {"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}
    listed = subprocess.run([sys.executable, "-m", "crpsgd_mpi.run", "--list"], capture_output=True, text=True,
                            env=env, timeout=60)
    assert "halved-psgd" in listed.stdout and "PSGD whose step is half" in listed.stdout
    out = tmp_path / "t.h5"
    run = subprocess.run([sys.executable, "-m", "crpsgd_mpi.run", "--backend", "local", "--workers", "2", *SMALL,
                          "--algorithm", "halved-psgd", "--T", "200", "--out", str(out), "--quiet"],
                         capture_output=True, text=True, env={**env, "CRPSGD_CACHE": str(tmp_path)}, timeout=60)
    assert run.returncode == 0, run.stderr
    tr = read_trace(out)
    assert tr.config["gamma"] == pytest.approx(0.5 / tr.config["L"])


@pytest.mark.parametrize("text, expected", [
    (None, "plugin='{path}': no such file"),
    ("x = 1 / 0\n", "plugin='{path}': failed while importing (line 1): ZeroDivisionError: division by zero"),
    ("import no_such_module_xyz\n", "plugin='{path}': failed while importing (line 1): ModuleNotFoundError: "
                                    "No module named 'no_such_module_xyz'"),
])
def test_broken_plugin_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str | None,
                                              expected: str) -> None:
    path = tmp_path / "broken.py"
    if text is not None:
        path.write_text(text)
    assert run_cli("--backend", "local", "--plugin", str(path), "--out", str(tmp_path / "t.h5")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["crpsgd_mpi: error: " + expected.format(path=path)]
    assert not (tmp_path / "t.h5").exists()


def test_help_and_unknown_names_list_what_the_plugin_registered(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("--plugin", str(PLUGIN), "--help") == 0
    assert "linear-growth" in capsys.readouterr().out
    assert run_cli("--backend", "local", "--algorithm", "linear-grwoth", "--plugin", str(PLUGIN)) == 2
    err = capsys.readouterr().err
    registered = err.split("unknown algorithm; registered: ")[1].split(", ")  # other tests' plug-ins may be there
    assert {"catalyst", "cr-psgd", "linear-growth", "local-sgd", "psgd"} <= {n.strip() for n in registered}, err


def test_registry_refuses_a_second_object_under_one_name() -> None:
    reg: Registry = Registry("thing", "thing", "crpsgd_mpi.errors")
    reg.register("a", 1)
    reg.register("a", 1)  # the same object again is harmless (a module imported twice)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a", 2)
    reg.register("a", 2, replace=True)
    assert reg.get("a") == 2 and reg.names() == ["a"]
    with pytest.raises(ValueError):
        reg.register("two words", 3)
