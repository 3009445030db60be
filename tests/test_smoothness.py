"""L: the same for every seed, converged to its stated tolerance (checked against a dense eigensolver), computed
collectively, and a run says so when the estimate did not converge."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import HEART, run_cli
from crpsgd_mpi.comm.local import LocalBackend
from crpsgd_mpi.config import Config
from crpsgd_mpi.data import load
from crpsgd_mpi.problems import lanczos
from crpsgd_mpi.problems.logreg import LogisticRegression
from crpsgd_mpi.trace import read_trace


def true_L(cfg: Config) -> float:
    data = load(cfg, 1, range(1))
    X = np.vstack([s.X.toarray() if hasattr(s.X, "toarray") else s.X for s in data.shards])
    return float(np.linalg.eigvalsh(X.T @ X / X.shape[0])[-1]) / 4 + cfg.lam


@pytest.mark.parametrize("options", [
    {},  # the issue's case: the default synthetic problem, top two eigenvalues within 3%: Lanczos
    {"samples": 3000, "features": 10},  # d = 11: one Lanczos cycle spans the whole space
    {"dataset": str(HEART), "storage": "sparse"},
    {"dataset": str(HEART), "storage": "dense"},
], ids=["synthetic-lanczos", "synthetic-small-d", "heart-sparse", "heart-dense"])
def test_L_is_converged_and_the_same_for_every_seed_and_N(options: dict[str, object]) -> None:
    values = []
    for seed, n in ((0, 2), (1, 2), (7, 5)):
        cfg = Config(**options, seed=seed)  # type: ignore[arg-type]
        problem = LogisticRegression(cfg, n, range(n))
        smooth = problem.smoothness(LocalBackend(n).sum)
        assert smooth.converged
        values.append(smooth.L)
    truth = true_L(Config(**options))  # type: ignore[arg-type]
    assert values == pytest.approx([truth] * 3, rel=1e-10, abs=0)


def test_the_issue_command_records_a_seed_independent_L(tmp_path: Path) -> None:
    Ls = []
    for seed in (0, 1):
        out = tmp_path / f"L{seed}.h5"
        assert run_cli("--backend", "local", "--workers", "2", "--T", "10", "--seed", str(seed), "--eval-points", "2",
                       "--out", str(out)) == 0
        c = read_trace(out).config
        assert c["L_method"] == "Lanczos (fixed order)" and c["L_converged"] is True and c["L_products"] > 0
        Ls.append(c["L"])
    assert Ls[0] == pytest.approx(Ls[1], rel=1e-12) and Ls[0] == pytest.approx(true_L(Config()), rel=1e-10)


def test_an_unconverged_L_is_said_and_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(lanczos, "MAX_PRODUCTS", 3)
    monkeypatch.setattr(lanczos, "BASIS", 3)
    out = tmp_path / "t.h5"
    assert run_cli("--backend", "local", "--workers", "2", "--T", "10", "--eval-points", "2", "--out", str(out)) == 0
    c = read_trace(out).config
    assert c["L_converged"] is False and np.isfinite(c["L"]) and c["L"] > 0
    assert "crpsgd_mpi: note: the estimate of L (Lanczos (fixed order)) did not converge" in capsys.readouterr().err


@pytest.mark.parametrize("d, gap", [(1, 0.0), (2, 0.5), (11, 0.1), (60, 1e-3), (200, 0.03)])
def test_lanczos_finds_the_top_eigenvalue(d: int, gap: float) -> None:
    """Against a dense eigensolver, on spectra with a small gap at the top (restarts needed) and tiny dimensions."""
    rng = np.random.default_rng(d)
    Q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    eig = np.sort(rng.uniform(0.0, 1.0, d))
    eig[-1] = eig[-2] + gap if d > 1 else 0.7
    A = (Q * eig) @ Q.T
    top = lanczos.top_eigenvalue(lambda v: A @ v, rng.standard_normal(d))
    assert top.converged and top.value == pytest.approx(eig[-1], rel=1e-9)


def test_lanczos_of_a_zero_or_rank_one_operator() -> None:
    assert lanczos.top_eigenvalue(lambda v: 0.0 * v, np.ones(5)) == (0.0, True, 1)
    u = np.arange(1.0, 7.0)
    top = lanczos.top_eigenvalue(lambda v: u * float(u @ v), np.ones(6))
    assert top.converged and top.value == pytest.approx(float(u @ u), rel=1e-12)
