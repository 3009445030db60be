"""Compute-time models of the modelled clock: hand values (2 workers, 3 rounds), the max over workers,
Uniform = netmodel.modelled_times, seeded and prefix-stable draws, blocked path = naive loop, the figure."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from conftest import SMALL_FAMILY as FAMILY
from crpsgd_mpi import stragglers
from crpsgd_mpi.experiment import load_family, run_families
from crpsgd_mpi.figures.curves import load_family_traces
from crpsgd_mpi.figures.plots import table_rows
from crpsgd_mpi.figures.straggler_figure import straggler_figure, straggler_study, straggler_table
from crpsgd_mpi.netmodel import ETHERNET_10G, Network, modelled_times
from crpsgd_mpi.seeding import Stream, rng_for
from crpsgd_mpi.stragglers import (
    Heterogeneous,
    Pareto,
    ShiftedExponential,
    Uniform,
    delay_quantile,
    retime,
    round_compute_times,
    time_to_epsilon,
    times_at,
    worker_times,
)

NET = Network("test", alpha=1e-5, beta=1e-9)
SFO = np.array([2, 5, 9])  # cumulative: 2, 3, 4 SFO per worker in rounds 1..3
BYTES = np.array([800, 800, 800])
COMM = 2 * 1e-5 + 800 * 1e-9  # ring, n = 2: 2(n-1) alpha + 2(n-1)/n bytes beta
S = 1e-3
# unit delays X[r, w] = [[1, 2], [0, 0.5], [0.5, 0]]: the slowest worker is 1, 1, 0; max X = 2, 0.5, 0.5
EXP_U = np.array([[1 - math.exp(-1), 1 - math.exp(-2)], [0.0, 1 - math.exp(-0.5)], [1 - math.exp(-0.5), 0.0]])
LOMAX2_U = np.array([[0.75, 8 / 9], [0.0, 5 / 9], [5 / 9, 0.0]])  # (1 - u)^(-1/2) - 1 = the same X


class FixedUniforms:
    """Stands in for the straggler generator: hands out the rows of `u` in order, whatever the block size."""

    def __init__(self, u: np.ndarray) -> None:
        self.flat, self.n, self.pos = u.ravel(), u.shape[1], 0

    def random(self, shape: tuple[int, int]) -> np.ndarray:
        k = shape[0] * shape[1]
        out = self.flat[self.pos:self.pos + k].reshape(shape)
        self.pos += k
        return out


@pytest.fixture
def fixed(monkeypatch: pytest.MonkeyPatch) -> object:
    def use(u: np.ndarray) -> None:
        monkeypatch.setattr(stragglers, "rng_for", lambda *a: FixedUniforms(u))
    return use


def test_quantiles_by_hand() -> None:
    np.testing.assert_allclose(delay_quantile(ShiftedExponential(S, 1.0), EXP_U), [[1, 2], [0, 0.5], [0.5, 0]])
    np.testing.assert_allclose(delay_quantile(Pareto(S, 2.0), LOMAX2_U), [[1, 2], [0, 0.5], [0.5, 0]])


def test_deterministic_models_by_hand() -> None:
    np.testing.assert_allclose(retime(SFO, BYTES, 2, NET, Uniform(S)), np.cumsum([2e-3 + COMM, 3e-3 + COMM, 4e-3 + COMM]))
    # worker 1 is three times slower: every round waits for it
    het = Heterogeneous(S, (1.0, 3.0))
    np.testing.assert_allclose(worker_times(het, np.array([2, 3, 4]), 2), [[2e-3, 6e-3], [3e-3, 9e-3], [4e-3, 12e-3]])
    np.testing.assert_allclose(retime(SFO, BYTES, 2, NET, het), np.cumsum([6e-3 + COMM, 9e-3 + COMM, 12e-3 + COMM]))


@pytest.mark.parametrize("model,u", [(ShiftedExponential(S, 0.5), EXP_U), (Pareto(S, 2.0, 0.5), LOMAX2_U)])
def test_random_per_work_by_hand(fixed: object, model: ShiftedExponential | Pareto, u: np.ndarray) -> None:
    fixed(u)  # type: ignore[operator]
    # s b (1 + 0.5 X): worker matrix, then the max over workers
    np.testing.assert_allclose(worker_times(model, np.array([2, 3, 4]), 2),
                               [[3e-3, 4e-3], [3e-3, 3.75e-3], [5e-3, 4e-3]])
    fixed(u)  # type: ignore[operator]
    np.testing.assert_allclose(retime(SFO, BYTES, 2, NET, model), np.cumsum([4e-3 + COMM, 3.75e-3 + COMM, 5e-3 + COMM]))


@pytest.mark.parametrize("model,u", [(ShiftedExponential(S, 1e-3, "round"), EXP_U),
                                     (Pareto(S, 2.0, 1e-3, "round"), LOMAX2_U)])
def test_random_per_round_by_hand(fixed: object, model: ShiftedExponential | Pareto, u: np.ndarray) -> None:
    fixed(u)  # type: ignore[operator]
    # s b + 1 ms X, whatever the batch
    np.testing.assert_allclose(retime(SFO, BYTES, 2, NET, model), np.cumsum([4e-3 + COMM, 3.5e-3 + COMM, 4.5e-3 + COMM]))


def test_uniform_reproduces_modelled_times_exactly() -> None:
    rng = np.random.default_rng(3)
    sfo = np.cumsum(rng.integers(1, 500, 300))
    nbytes = rng.choice([408, 6280, 80000], 300)
    for n, alg in ((10, "ring"), (7, "tree"), (1, "ring")):
        expected = modelled_times(sfo, nbytes, n, ETHERNET_10G, 1.3e-7, alg)
        np.testing.assert_array_equal(retime(sfo, nbytes, n, ETHERNET_10G, Uniform(1.3e-7), algorithm=alg), expected)


MODELS = [ShiftedExponential(1e-6, 1.0), Pareto(1e-6, 1.5, 0.5), ShiftedExponential(1e-6, 1e-4, "round"),
          Pareto(1e-6, 1.1, 1e-4, "round")]


@pytest.mark.parametrize("model", MODELS)
def test_seeded_and_prefix_stable(model: ShiftedExponential | Pareto, monkeypatch: pytest.MonkeyPatch) -> None:
    work = np.arange(1, 201, dtype=float)
    full = round_compute_times(model, work, 13, seed=5)
    np.testing.assert_array_equal(full, round_compute_times(model, work, 13, seed=5))
    assert not np.array_equal(full, round_compute_times(model, work, 13, seed=6))
    np.testing.assert_array_equal(round_compute_times(model, work[:57], 13, seed=5), full[:57])
    monkeypatch.setattr(stragglers, "BLOCK", 40)  # 3 rounds per block: the last block is cut short
    np.testing.assert_array_equal(round_compute_times(model, work, 13, seed=5), full)


@pytest.mark.parametrize("model", MODELS)
def test_vectorised_equals_naive_loop(model: ShiftedExponential | Pareto, monkeypatch: pytest.MonkeyPatch) -> None:
    n, work = 6, np.array([1.0, 7.0, 64.0, 3.0, 500.0])
    u = rng_for(11, Stream.STRAGGLERS).random((work.size, n))
    s, per_work = model.seconds_per_sfo, model.per == "work"
    naive = np.empty(work.size)
    for r in range(work.size):
        slowest = 0.0
        for w in range(n):
            e = -math.log(1 - u[r, w])
            x = math.expm1(e / model.shape) if isinstance(model, Pareto) else e
            slowest = max(slowest, s * work[r] + (s * work[r] if per_work else 1.0) * model.scale * x)
        naive[r] = slowest
    monkeypatch.setattr(stragglers, "BLOCK", 13)
    np.testing.assert_allclose(round_compute_times(model, work, n, seed=11), naive, rtol=1e-13)
    np.testing.assert_allclose(worker_times(model, work, n, seed=11).max(axis=1), naive, rtol=1e-13)


def test_many_workers_in_blocks() -> None:
    work = np.full(2000, 100.0)
    t = round_compute_times(ShiftedExponential(1e-6, 1.0), work, 10_000, seed=0)
    # max of 10^4 Exp(1) is about log(10^4) + 0.58 = 9.8
    assert t.shape == (2000,) and 9.0 < np.median(t / 1e-4 - 1) < 10.5


def test_bad_models_refused() -> None:
    with pytest.raises(ValueError):
        retime(SFO, BYTES, 3, NET, Heterogeneous(S, (1.0, 2.0)))
    with pytest.raises(ValueError):
        retime(SFO, BYTES, 2, NET, ShiftedExponential(S, 1.0, "sample"))
    with pytest.raises(ValueError):
        retime(SFO, BYTES, 2, NET, Pareto(S, 0.0))


def test_times_at_evaluations_and_time_to_epsilon() -> None:
    cum = np.array([1.0, 2.5, 4.0])
    t = times_at(np.array([1, 2, 3]), cum, np.array([0, 1, 3]))
    np.testing.assert_array_equal(t, [0.0, 1.0, 4.0])
    assert time_to_epsilon(t, np.array([1.0, 0.05, 0.001]), 0.01) == 4.0
    assert time_to_epsilon(t, np.array([1.0, 0.05, 0.001]), 1.0) == 0.0
    assert math.isnan(time_to_epsilon(t, np.array([1.0, 0.05, 0.02]), 0.01))
    with pytest.raises(ValueError):
        times_at(np.array([1, 2, 3]), cum, np.array([0, 4]))


def test_straggler_study_and_figure(tmp_path: Path) -> None:
    fam_path = tmp_path / "fam.toml"
    fam_path.write_text(FAMILY)
    run_families([fam_path], tmp_path / "results", verbose=False)
    fam, groups = load_family(fam_path), load_family_traces(tmp_path / "results" / "fam")
    blocks = straggler_study([(fam, groups, 2e-7)])
    assert [b.measured for b in blocks] == [True, False]
    header, rows = straggler_table(blocks)
    assert header[3] == "none" and len(rows) == 4
    # without stragglers: the results table's 10 GbE column
    plain = {r[1]: r[7] for r in table_rows(fam, groups, 2e-7)}
    assert all(r[3] == plain[r[2]] for r in rows[:2])
    for r in rows:
        nums = [float(v) for v in r[3:] if v != "not reached"]
        assert nums == [] or min(nums) == nums[0]  # stragglers never make a run faster
    paths = straggler_figure("st", blocks, tmp_path / "fig")
    assert all(p.stat().st_size > 1000 for p in paths)
