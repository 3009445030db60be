"""Honest results and actionable errors: a run that ends above its starting loss says so and names the step size;
a failure in a plug-in names its file and line and where the whole traceback is; under mpiexec one line of ours."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from mpijobs import ShellJob, ours

from crpsgd_mpi.show import main as show

SMALL = ["--samples", "3000", "--features", "8", "--eval-points", "6", "--T", "2000"]
BUG = textwrap.dedent("""
    import numpy as np
    from crpsgd_mpi import Algorithm, register_algorithm

    def helper(g):
        return g + np.ones(3)

    @register_algorithm("buggy")
    class Buggy(Algorithm):
        '''Broken on worker 1 only.'''
        @classmethod
        def create(cls, setting):
            return cls()

        def run(self, workers, x0, resume=None):
            g = workers.average(workers.gradients(x0, 1))
            if 1 in workers.backend.local_workers:
                return helper(g)
            return x0 - 0.1 * workers.average(workers.gradients(x0, 1))
""")


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "crpsgd_mpi.run", *args], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)


def test_a_run_ending_above_its_start_says_so(tmp_path: Path) -> None:
    """The issue's case: the default problem, PSGD B = 1 at the theory step 1/L (1.249 against 0.693)."""
    bad = run(tmp_path, "--backend", "local", "--workers", "4", "--algorithm", "psgd", "--T", "3000", "--out", "a.h5")
    assert bad.returncode == 0 and "warning: the final loss" in bad.stdout and "is above the starting loss" in \
        bad.stdout and "gamma=" in bad.stdout.splitlines()[-1], bad.stdout
    good = run(tmp_path, "--backend", "local", "--workers", "4", "--algorithm", "psgd", "--gamma", "0.3", "--T",
               "3000", "--out", "b.h5")
    assert good.returncode == 0 and "warning" not in good.stdout


def test_a_plugin_failure_names_its_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bug.py").write_text(BUG)
    res = run(tmp_path, "--backend", "local", "--workers", "2", "--plugin", "bug.py", "--algorithm", "buggy", *SMALL,
              "--out", "t.h5")
    (line,) = res.stderr.splitlines()
    assert res.returncode == 1 and line.startswith("crpsgd_mpi: failed: ValueError: operands could not be broadcast")
    assert "(at " in line and "bug.py:6 in helper; full traceback: python -m crpsgd_mpi.show t.h5)" in line
    capsys.readouterr()
    assert show([str(tmp_path / "t.h5")]) == 0
    text = capsys.readouterr().out
    assert "t.h5: failed" in text and "Traceback (most recent call last)" in text and 'bug.py", line 6' in text
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    assert show([str(tmp_path / "junk.h5")]) == 2
    (err,) = capsys.readouterr().err.splitlines()
    assert err.startswith("crpsgd_mpi: error: trace=") and "junk.h5" in err


@pytest.mark.mpi
@pytest.mark.timeout(120)
def test_one_line_of_ours_under_mpiexec(tmp_path: Path) -> None:
    (tmp_path / "bug.py").write_text(BUG)
    job = ShellJob(f"mpiexec -n 3 python -m crpsgd_mpi.run --plugin bug.py --algorithm buggy {' '.join(SMALL)} "
                   "--out t.h5", cwd=tmp_path)
    assert job.wait(90) == 1, job.output()
    lines = ours(job.output())
    assert len(lines) == 1, lines
    assert lines[0].startswith("crpsgd_mpi: failed: rank 1: ValueError") and "bug.py:6 in helper" in lines[0]
