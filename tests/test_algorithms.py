"""Conformance of every algorithm to its pseudo-code: counts from traces vs closed forms, and iterates
vs an independent, deliberately naive re-implementation that uses the same random streams."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy.special import expit

from conftest import HEART, run_cli
from crpsgd_mpi.config import Config
from crpsgd_mpi.data import load
from crpsgd_mpi.schedules import Geometric, Linear, Step
from crpsgd_mpi.seeding import Stream, rng_for
from crpsgd_mpi.trace import read_trace

SMALL = ["--samples", "2000", "--features", "8", "--backend", "local", "--eval-points", "5"]


def trace_of(tmp_path: Path, *args: str) -> object:
    out = tmp_path / "t.h5"
    assert run_cli(*SMALL, *args, "--out", str(out), "--overwrite") == 0
    return read_trace(out)


def geometric(B1: int, rho: float, T: int) -> list[int]:
    out, t = [], 1
    while True:
        b = B1 if t == 1 else math.floor(rho ** (t - 1) * B1 + 1e-9)
        if sum(out) + b > T:
            return out
        out.append(b)
        t += 1


@pytest.mark.parametrize("N, T, B1, rho", [(10, 10_000, 1, 2.0), (4, 5000, 3, 1.5), (3, 2000, 1, 1.1), (1, 999, 5, 2.5)])
def test_cr_psgd_counts(tmp_path: Path, N: int, T: int, B1: int, rho: float) -> None:
    tr = trace_of(tmp_path, "--workers", str(N), "--T", str(T), "--B1", str(B1), "--rho", str(rho))
    expected = geometric(B1, rho, T)
    r = tr.rounds
    assert r["batch_size"].tolist() == expected
    assert r["round"].tolist() == list(range(1, len(expected) + 1))
    assert r["sfo"].tolist() == np.cumsum(expected).tolist()
    assert (r["stage"] == 0).all() and (r["bytes"] == 9 * 8).all()
    assert tr.attrs["unspent_sfo"] == T - sum(expected)


def test_catalyst_worked_count(tmp_path: Path) -> None:
    tr = trace_of(tmp_path, "--algorithm", "catalyst", "--workers", "4", "--T", "10000", "--B1", "1",
                  "--rho", "2", "--regularizer", "nonconvex")
    r = tr.rounds
    assert len(r["round"]) == 1000 and r["sfo"].iloc[-1] == 6200
    assert r["batch_size"].tolist() == [1, 2, 4, 8, 16] * 200
    assert r["stage"].tolist() == [k for k in range(1, 201) for _ in range(5)]
    # every y^(k) is evaluated
    assert set(range(5, 1001, 5)) <= set(tr.evals["round"].tolist())


@pytest.mark.parametrize("N, T, B", [(10, 1000, 1), (3, 1000, 7), (2, 50, 50)])
def test_psgd_counts(tmp_path: Path, N: int, T: int, B: int) -> None:
    tr = trace_of(tmp_path, "--algorithm", "psgd", "--workers", str(N), "--T", str(T), "--batch-size", str(B))
    assert len(tr.rounds["round"]) == T // B
    assert (tr.rounds["batch_size"] == B).all() and tr.rounds["sfo"].iloc[-1] == (T // B) * B


@pytest.mark.parametrize("period, N, T, b, H", [("stich", 10, 10_000, 1, 31), ("prsgd", 2, 10_000, 1, 5),
                                                 ("7", 3, 1000, 2, 7)])
def test_local_sgd_counts(tmp_path: Path, period: str, N: int, T: int, b: int, H: int) -> None:
    tr = trace_of(tmp_path, "--algorithm", "local-sgd", "--workers", str(N), "--T", str(T), "--period", period,
                  "--local-batch", str(b))
    assert tr.config["period_resolved"] == H
    R = T // (H * b)
    assert len(tr.rounds["round"]) == R
    assert tr.rounds["sfo"].tolist() == [H * b * (i + 1) for i in range(R)]


# -- iterates against a naive re-implementation --------------------------------------------------
def naive_grad(X: np.ndarray, y: np.ndarray, x: np.ndarray, lam: float) -> np.ndarray:
    g = np.zeros_like(x)
    for a, label in zip(X, y):
        g += -label * a * expit(-label * float(a @ x))
    return g / len(y) + lam * x


def setup_naive(N: int, seed: int, dataset: str = "synthetic") -> tuple[list, list]:
    cfg = Config(samples=300, features=4, dataset=dataset, seed=seed)
    data = load(cfg, N, range(N))
    rngs = [rng_for(seed, Stream.SAMPLING, w) for w in range(N)]
    return data.shards, rngs


def test_cr_psgd_iterates_follow_pseudocode(tmp_path: Path) -> None:
    N, T, B1, rho, gamma, lam, seed = 3, 60, 2, 1.5, 0.5, 1e-3, 11
    out = tmp_path / "t.h5"
    assert run_cli("--samples", "300", "--features", "4", "--backend", "local", "--workers", str(N), "--T", str(T),
                   "--B1", str(B1), "--rho", str(rho), "--gamma", str(gamma), "--lam", str(lam),
                   "--seed", str(seed), "--out", str(out)) == 0
    shards, rngs = setup_naive(N, seed)
    x = np.zeros(shards[0].X.shape[1])
    t, used, B = 1, 0, B1
    while used + B <= T:
        gs = []
        for s, rng in zip(shards, rngs):
            idx = rng.integers(0, s.n, size=B)
            gs.append(naive_grad(s.X[idx], s.y[idx], x, lam))
        x = x - gamma * sum(gs) / N
        used += B
        B = math.floor(rho**t * B1 + 1e-9)
        t += 1
    np.testing.assert_allclose(read_trace(out).x, x, rtol=1e-12, atol=1e-14)


def test_local_sgd_iterates_follow_pseudocode(tmp_path: Path) -> None:
    N, T, H, b, gamma, lam, seed = 2, 40, 4, 3, 0.3, 1e-3, 5
    out = tmp_path / "t.h5"
    assert run_cli("--samples", "300", "--features", "4", "--backend", "local", "--workers", str(N), "--T", str(T),
                   "--algorithm", "local-sgd", "--period", str(H), "--local-batch", str(b), "--gamma", str(gamma),
                   "--lam", str(lam), "--seed", str(seed), "--out", str(out)) == 0
    shards, rngs = setup_naive(N, seed)
    x = np.zeros(shards[0].X.shape[1])
    for _ in range(T // (H * b)):
        models = []
        for s, rng in zip(shards, rngs):
            m = x.copy()
            for _ in range(H):
                idx = rng.integers(0, s.n, size=b)
                m = m - gamma * naive_grad(s.X[idx], s.y[idx], m, lam)
            models.append(m)
        x = sum(models) / N
    np.testing.assert_allclose(read_trace(out).x, x, rtol=1e-12, atol=1e-14)


def test_catalyst_iterates_follow_pseudocode(tmp_path: Path) -> None:
    N, T, B1, rho, gamma, theta, lam, seed = 2, 32, 1, 2.0, 0.4, 0.7, 1e-3, 3
    out = tmp_path / "t.h5"
    assert run_cli("--samples", "300", "--features", "4", "--backend", "local", "--workers", str(N), "--T", str(T),
                   "--algorithm", "catalyst", "--B1", str(B1), "--rho", str(rho), "--gamma", str(gamma),
                   "--theta", str(theta), "--lam", str(lam), "--seed", str(seed), "--out", str(out)) == 0
    shards, rngs = setup_naive(N, seed)
    y = np.zeros(shards[0].X.shape[1])
    K, inner = math.isqrt(N * T), math.isqrt(T // N)  # 8 outer steps, inner budget 4: batches 1, 2
    for _ in range(K):
        x, used, B, t = y.copy(), 0, B1, 1
        while used + B <= inner:
            gs = []
            for s, rng in zip(shards, rngs):
                idx = rng.integers(0, s.n, size=B)
                gs.append(naive_grad(s.X[idx], s.y[idx], x, lam))
            x = x - gamma * (sum(gs) / N + theta * (x - y))
            used += B
            B = math.floor(rho**t * B1)
            t += 1
        y = x
    np.testing.assert_allclose(read_trace(out).x, y, rtol=1e-12, atol=1e-14)


def test_sparse_libsvm_run(tmp_path: Path) -> None:
    tr = trace_of(tmp_path, "--dataset", str(HEART), "--storage", "sparse", "--workers", "3", "--T", "60")
    dense = trace_of(tmp_path / "d", "--dataset", str(HEART), "--storage", "dense", "--workers", "3", "--T", "60")
    assert tr.config["n_features"] == 14
    np.testing.assert_allclose(tr.x, dense.x, rtol=1e-10, atol=1e-13)


# -- the batch schedules of the field (--schedule) ------------------------------------------------
@pytest.mark.parametrize("args, schedule", [
    (["--schedule", "linear", "--B1", "3"], Linear(3)),
    (["--schedule", "step", "--B1", "2", "--step-factor", "1.5", "--step-every", "4"], Step(2, 1.5, 4)),
    (["--schedule", "step", "--B1", "1", "--step-factor", "2", "--step-every", "10"], Step(1, 2, 10)),
    (["--schedule", "geometric", "--B1", "1", "--rho", "2"], Geometric(1, 2.0)),
])
@pytest.mark.parametrize("T", [1000, 4321])
def test_deterministic_schedules_counts_equal_closed_form(tmp_path: Path, args: list[str], schedule: object,
                                                          T: int) -> None:
    tr = trace_of(tmp_path, "--workers", "3", "--T", str(T), *args)
    R, sfo = schedule.rounds_and_sfo(T)  # type: ignore[attr-defined]
    assert len(tr.rounds) == R and tr.rounds["sfo"].iloc[-1] == sfo and tr.attrs["unspent_sfo"] == T - sfo
    assert tr.rounds["batch_size"].tolist() == list(schedule.within(T))  # type: ignore[attr-defined]
    assert (tr.rounds["bytes"] == 9 * 8).all()


def test_norm_test_follows_pseudocode(tmp_path: Path) -> None:
    N, T, B1, theta, gamma, lam, seed = 3, 400, 2, 0.6, 0.5, 1e-3, 7
    out = tmp_path / "t.h5"
    assert run_cli("--samples", "300", "--features", "4", "--backend", "local", "--workers", str(N), "--T", str(T),
                   "--schedule", "norm-test", "--B1", str(B1), "--norm-theta", str(theta), "--gamma", str(gamma),
                   "--lam", str(lam), "--seed", str(seed), "--out", str(out)) == 0
    shards, rngs = setup_naive(N, seed)
    x = np.zeros(shards[0].X.shape[1])
    B, left, batches = B1, T, []
    while left >= 1:
        b = min(B, left)
        left -= b
        gs = []
        for s, rng in zip(shards, rngs):
            idx = rng.integers(0, s.n, size=b)
            gs.append(naive_grad(s.X[idx], s.y[idx], x, lam))
        g = sum(gs) / N
        # sample variance of the N worker means (each of b samples) estimates sigma^2 / b
        s2 = sum(float((gi - g) @ (gi - g)) for gi in gs) / (N - 1)
        if s2 / N > theta**2 * float(g @ g):
            B = max(B, math.ceil(b * s2 / (N * theta**2 * float(g @ g))))
        x = x - gamma * g
        batches.append(b)
    tr = read_trace(out)
    assert tr.rounds["batch_size"].tolist() == batches and sum(batches) == T and len(set(batches)) > 2
    assert (tr.rounds["bytes"] == (5 + 1) * 8).all()  # the squared norm rides in the same round: 8 bytes more
    np.testing.assert_allclose(tr.x, x, rtol=1e-10, atol=1e-13)


def test_norm_test_needs_two_workers(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(*SMALL, "--workers", "1", "--schedule", "norm-test", "--T", "100") == 2
    assert "schedule='norm-test'" in capsys.readouterr().err
