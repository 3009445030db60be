"""Figures stage: alpha-beta model on hand-computed values, epsilon interpolation, plotting a made
trace, the driver's resumability (complete traces skipped, incomplete ones redone), and the tables written into the
docs page that shows them."""

from __future__ import annotations

import math
from pathlib import Path

import h5py
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from conftest import REPO
from conftest import SMALL_FAMILY as FAMILY
from crpsgd_mpi.experiment import Family, load_family, needs_run, run_families
from crpsgd_mpi.figures import Curve, band, first_crossing
from crpsgd_mpi.figures.__main__ import END, PAGE, START, STRAGGLERS
from crpsgd_mpi.figures.__main__ import main as figures_main
from crpsgd_mpi.figures.plots import staircase_figure, study_figure, theoretical_rounds
from crpsgd_mpi.netmodel import Network, allreduce_time, modelled_times
from crpsgd_mpi.trace import Trace, read_trace

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


def _deep_trace(batches: np.ndarray, gammas: np.ndarray, eval_rounds: list[int], loss: list[float],
                acc: list[float], seed: int, cfg: dict[str, object]) -> Trace:
    """A made trace of the deep study: per-round batches and step sizes, evaluations at `eval_rounds`."""
    sfo = np.cumsum(batches)
    rounds = pd.DataFrame({"round": np.arange(1, len(batches) + 1), "sfo": sfo, "batch_size": batches,
                           "stage": 0, "bytes": 0, "wall_time": np.linspace(0.1, 40.0, len(batches)),
                           "gamma": gammas})
    at = [0 if r == 0 else int(sfo[r - 1]) for r in eval_rounds]
    evals = pd.DataFrame({"round": eval_rounds, "sfo": at, "loss": loss, "test_accuracy": acc,
                          "test_loss": loss, "grad_norm_sq": np.nan, "suboptimality": np.nan})
    config = {"T": int(sfo[-1]), "workers": 8, "n_samples": 60000, "momentum": 0.9, "eval_samples": 1000,
              "gamma_schedule": "constant", **cfg}
    attrs = {"N": 8, "T": int(sfo[-1]), "status": "complete", "seed": seed, "config": config,
             "algorithm": config["algorithm"], "wall_time": 40.0 + seed, "eval_time": 4.0}
    return Trace(None, attrs, rounds, evals, None)


def _deep_family(spread: float = 0.002) -> tuple[Family, dict[str, list[Trace]]]:
    """A made grid family over 3 seeds: PSGD B=16 with a step decay (final accuracy 85%, level 84% crossed at
    round 227.2), two CR-PSGD variants at two step sizes (the better one crosses 84% at round 18.75: 12.1x fewer
    rounds), and a step batch schedule that never gets there."""
    fam = Family(name="deep_grid", study="deep", title="made deep grid", epsilon=None, seeds=[0, 1, 2],
                 base={"model": "cnn", "workers": 8},
                 runs={"psgd-b16-step": {"algorithm": "psgd", "batch_size": 16, "gamma_schedule": "step"},
                       "cr-psgd-b16": {"algorithm": "cr-psgd", "rho": 1.05, "B1": 16},
                       "cr-psgd-b64": {"algorithm": "cr-psgd", "rho": 1.05, "B1": 64},
                       "step-batch": {"algorithm": "cr-psgd", "schedule": "step", "B1": 16}},
                 sweep={"gamma": [0.05, 0.1]})
    groups: dict[str, list[Trace]] = {}
    for g in (0.05, 0.1):
        worse = 0.0 if g == 0.1 else 0.2  # gamma 0.1 wins for every run
        for seed in range(3):
            d = spread * (seed - 1)  # the seeds spread the accuracy (by 0.4 points)
            step = {"algorithm": "psgd", "batch_size": 16, "gamma": g, "gamma_schedule": "step",
                    "gamma_factor": 0.1, "gamma_milestones": "117,175"}
            gam = np.where(np.arange(1, 235) > 117, g / 10, g)
            gam = np.where(np.arange(1, 235) > 175, g / 100, gam)
            groups.setdefault(f"psgd-b16-step-gamma_{g:g}", []).append(_deep_trace(
                np.full(234, 16), gam, [0, 100, 200, 234], [2.5, 1.0 - 3 * d, 0.6 + worse, 0.5 + worse],
                [0.1, 0.5, 0.8 + d, 0.85 - worse / 10 + d], seed, step))
            for b1, extra in ((16, 0.0), (64, 0.1)):
                cfg = {"algorithm": "cr-psgd", "rho": 1.05, "B1": b1, "gamma": g}
                groups.setdefault(f"cr-psgd-b{b1}-gamma_{g:g}", []).append(_deep_trace(
                    np.geomspace(b1, 400, 20).astype(int), np.full(20, g), [0, 10, 20],
                    [2.5, 0.9, 0.55 + worse + extra], [0.1, 0.7, 0.86 - extra + d], seed, cfg))
            cfg = {"algorithm": "cr-psgd", "schedule": "step", "B1": 16, "gamma": g}
            groups.setdefault(f"step-batch-gamma_{g:g}", []).append(_deep_trace(
                np.repeat([16, 32, 64, 128], 10), np.full(40, g), [0, 20, 40], [2.5, 1.2, 0.9 + worse],
                [0.1, 0.6, 0.75 + d], seed, cfg))
    return fam, groups


def test_deep_grid_figure_table_and_verdict(tmp_path: Path) -> None:
    """The deep study over 3 seeds: the winners of a grid (CR-PSGD's variants as one method), the curves and grid
    figures, the table's medians and ranges, and the verdict computed from the made traces."""
    from crpsgd_mpi.figures.__main__ import DEEP, deep_table, splice
    from crpsgd_mpi.figures.deep import deep_figure, deep_rows, deep_verdict, grid_report, settings_of, winners

    fam, groups = _deep_family()
    won = winners(settings_of(fam, groups))
    assert {m: s.name for m, s in won.items()} == {
        "psgd-b16-step": "psgd-b16-step-gamma_0.1", "cr-psgd": "cr-psgd-b16-gamma_0.1",
        "step-batch": "step-batch-gamma_0.1"}
    report = grid_report(fam, groups)
    assert "8 of 8 grid settings finished" in report and "cr-psgd -> gamma 0.1 (cr-psgd-b16: rho 1.05, B1 16)" in report
    paths = deep_figure("deep_grid", fam, groups, tmp_path)
    assert [p.name for p in paths] == ["deep_grid.png", "deep_grid.pdf", "deep_grid_gamma.png", "deep_grid_gamma.pdf"]
    assert all(p.stat().st_size > 1000 for p in paths)
    rows = deep_rows(fam, groups)
    assert [r[1] for r in rows] == ["psgd-b16-step", "cr-psgd-b16 (rho 1.05, B1 16)", "step-batch"]
    assert rows[0][2] == "0.1 (x0.1 at rounds 117,175)" and rows[0][3] == "3" and rows[0][4] == "234"
    assert rows[0][8] == "85.0 (84.8-85.2)" and rows[0][11] == "9%"
    verdict = deep_verdict(fam, groups)
    assert len(verdict) == 2
    assert "reaches 84.0% (within 1 point) after 19 rounds against 227 for PSGD B=16 (12.1x fewer)" in verdict[0]
    assert verdict[0].endswith("yes.") and "CR-PSGD (cr-psgd-b16, gamma 0.1)" in verdict[0]
    assert verdict[1].startswith("deep_grid: step-batch") and "does not reach 84.0%" in verdict[1]
    assert verdict[1].endswith("no.")
    table = deep_table(rows, verdict)
    page = splice(f"before\n{DEEP[0]}\n\nold\n{DEEP[1]}\nafter\n", DEEP, table)
    assert "old" not in page and "- " + verdict[0] in page and page.endswith(f"{DEEP[1]}\nafter\n")
    # a family without a sweep (the final one): every run is shown, CR-PSGD's variants each with its row
    runs = {"psgd-b16-step": fam.runs["psgd-b16-step"], "cr-psgd": fam.runs["cr-psgd-b64"]}
    final = Family(name="deep", study="deep", title="made", epsilon=None, seeds=[0, 1, 2], base=fam.base,
                      runs=runs, sweep={})
    made = {"psgd-b16-step": groups["psgd-b16-step-gamma_0.1"], "cr-psgd": groups["cr-psgd-b64-gamma_0.1"]}
    assert [r[1] for r in deep_rows(final, made)] == ["psgd-b16-step", "cr-psgd"]
    (line,) = deep_verdict(final, made)
    assert "does not reach 84.0% (final 76.0%, best 76.0%, in 20 rounds" in line and line.endswith(": no.")
