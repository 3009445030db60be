"""Figures stage: alpha-beta model on hand-computed values, epsilon interpolation, plotting a made
trace, the driver's resumability (complete traces skipped, incomplete ones redone), and the tables written into the
docs page that shows them."""

from __future__ import annotations

import math
from pathlib import Path

import h5py
import matplotlib.pyplot as plt
import numpy as np
import pytest

from conftest import REPO
from conftest import SMALL_FAMILY as FAMILY
from crpsgd_mpi.experiment import load_family, needs_run, run_families
from crpsgd_mpi.figures import Curve, band, first_crossing
from crpsgd_mpi.figures.__main__ import END, PAGE, START, STRAGGLERS
from crpsgd_mpi.figures.__main__ import main as figures_main
from crpsgd_mpi.figures.plots import staircase_figure, study_figure, theoretical_rounds
from crpsgd_mpi.netmodel import Network, allreduce_time, modelled_times
from crpsgd_mpi.trace import read_trace

NET = Network("test", alpha=1e-5, beta=1e-9)


def test_alpha_beta_hand_values() -> None:
    # ring, n = 4, 8000 bytes: 2*3*1e-5 + 2*3/4*8000*1e-9 = 6e-5 + 1.2e-5
    assert allreduce_time(8000, 4, NET, "ring") == pytest.approx(7.2e-5)
    # tree, n = 5: ceil(log2 5) = 3 -> 2*3*(1e-5 + 8e-6) = 1.08e-4
    assert allreduce_time(8000, 5, NET, "tree") == pytest.approx(1.08e-4)
    assert allreduce_time(8000, 1, NET) == 0.0
    t = modelled_times(np.array([2, 6]), np.array([8000, 8000]), 4, NET, seconds_per_sfo=1e-6)
    np.testing.assert_allclose(t, [2e-6 + 7.2e-5, 6e-6 + 2 * 7.2e-5])


def test_first_crossing_interpolates_in_log() -> None:
    x = np.array([0.0, 10.0, 20.0])
    y = np.array([1.0, 1e-1, 1e-3])
    assert first_crossing(x, y, 1e-2) == pytest.approx(15.0)
    assert first_crossing(x, y, 1e-1) == pytest.approx(10.0)
    assert math.isnan(first_crossing(x, y, 1e-4))
    assert first_crossing(x, y, 2.0) == 0.0


def test_band_median_and_quartiles() -> None:
    grid = np.array([1.0, 2.0])
    curves = [Curve(np.array([1.0, 2.0]), np.array([v, v])) for v in (1.0, 10.0, 100.0)]
    med, q1, q3 = band(curves, grid)
    np.testing.assert_allclose(med, [10.0, 10.0])
    assert np.all(q1 < med) and np.all(med < q3)


def test_driver_skips_complete_and_redoes_incomplete(tmp_path: Path) -> None:
    fam_path = tmp_path / "fam.toml"
    fam_path.write_text(FAMILY)
    results = tmp_path / "results"
    assert run_families([fam_path], results, verbose=False) == 0
    runs = load_family(fam_path).expand(results)
    assert len(runs) == 4 and not any(needs_run(r) for r in runs)
    stamps = {r.path: r.path.stat().st_mtime_ns for r in runs}
    with h5py.File(runs[0].path, "r+") as f:
        f.attrs["status"] = "interrupted"
    assert needs_run(runs[0])
    assert run_families([fam_path], results, verbose=False) == 0
    assert runs[0].path.stat().st_mtime_ns != stamps[runs[0].path]
    assert all(r.path.stat().st_mtime_ns == stamps[r.path] for r in runs[1:])
    assert read_trace(runs[0].path).status == "complete"


def test_plotting_a_made_trace(tmp_path: Path) -> None:
    fam_path = tmp_path / "fam.toml"
    fam_path.write_text(FAMILY)
    results = tmp_path / "results"
    run_families([fam_path], results, verbose=False)
    fam = load_family(fam_path)
    from crpsgd_mpi.figures.curves import load_family_traces

    groups = load_family_traces(results / "fam")
    assert sorted(groups) == ["cr-psgd", "psgd-b4"] and all(len(v) == 2 for v in groups.values())
    captured = {}
    orig = plt.Figure.savefig

    def spy(self: plt.Figure, *a: object, **k: object) -> None:
        captured["lines"] = [len(ax.get_lines()) for ax in self.axes]
        orig(self, *a, **k)

    plt.Figure.savefig = spy  # type: ignore[method-assign]
    try:
        paths = study_figure("fam", fam, groups, tmp_path / "fig")
    finally:
        plt.Figure.savefig = orig  # type: ignore[method-assign]
    assert all(p.stat().st_size > 1000 for p in paths)
    # SFO panel: 2 medians + 1 slope line; rounds panel: 2 medians + 2 closed-form round markers
    assert captured["lines"] == [3, 4]
    tr = groups["cr-psgd"][0]
    assert theoretical_rounds(tr.config) == len(tr.rounds["round"])
    assert staircase_figure("st", {"cr-psgd": tr}, tmp_path / "fig")[0].stat().st_size > 1000



def _between(text: str, markers: tuple[str, str]) -> str:
    start, end = markers
    assert text.count(start) == 1 and text.count(end) == 1, f"{start} / {end} must each be there once"
    return text.split(start, 1)[1].split(end, 1)[0]


def test_tables_go_into_the_docs_page(tmp_path: Path) -> None:
    """`python -m crpsgd_mpi.figures` rewrites the tables of docs/results.rst (the page that shows them; the README
    holds none) between their marker comments, and leaves the rest of the page as it was."""
    page_text = (REPO / PAGE).read_text()
    for markers in ((START, END), STRAGGLERS):
        assert "+====" in _between(page_text, markers)  # the committed page holds a table for each pair
        assert markers[0] not in (REPO / "README.rst").read_text()
    experiments = tmp_path / "experiments"
    experiments.mkdir()
    (experiments / "fam.toml").write_text(FAMILY)
    results = tmp_path / "results"
    assert run_families([experiments / "fam.toml"], results, verbose=False) == 0
    page = tmp_path / "results.rst"
    page.write_text(page_text)
    assert figures_main(["--results", str(results), "--experiments", str(experiments), "--out", str(tmp_path / "fig"),
                         "--page", str(page)]) == 0
    after = page.read_text()
    table = _between(after, (START, END))
    assert "| fam " in table and "cr-psgd" in table and "psgd-b4" in table and "pl_synthetic" not in table
    assert (tmp_path / "fig" / "results.rst").read_text().strip() in table
    assert "| fam " in _between(after, STRAGGLERS)
    outside = [after.split(START)[0], after.split(END)[1].split(STRAGGLERS[0])[0], after.split(STRAGGLERS[1])[1]]
    assert outside == [page_text.split(START)[0], page_text.split(END)[1].split(STRAGGLERS[0])[0],
                       page_text.split(STRAGGLERS[1])[1]]
