"""Closed forms of the batch schedules and the budget rule, against the worked counts in NOTES.md."""

from __future__ import annotations

import math

import pytest

from crpsgd_mpi.algorithms import catalyst_counts, resolve_period
from crpsgd_mpi.schedules import Constant, Geometric


def test_worked_count_cr_psgd() -> None:
    batches = list(Geometric(1, 2.0).within(10_000))
    assert batches == [2**t for t in range(13)]
    assert (len(batches), sum(batches), 10_000 - sum(batches)) == (13, 8191, 1809)


@pytest.mark.parametrize("B1, rho, T", [(1, 1.5, 1000), (3, 1.3, 5000), (7, 3.0, 100_000), (2, 1.05, 777)])
def test_geometric_matches_definition(B1: int, rho: float, T: int) -> None:
    expected, used, t = [], 0, 1
    while True:
        b = B1 if t == 1 else math.floor(rho ** (t - 1) * B1 + 1e-9)
        if used + b > T:
            break
        expected.append(b)
        used += b
        t += 1
    assert list(Geometric(B1, rho).within(T)) == expected


def test_floor_repeats_batch_sizes() -> None:
    # floor(1.1^t) stays 1 for t <= 7: the same batch size repeats
    batches = list(Geometric(1, 1.1).within(20))
    assert batches[:8] == [1, 1, 1, 1, 1, 1, 1, 1] and batches[8] == 2
    assert sum(batches) <= 20 < sum(batches) + Geometric(1, 1.1).batch(len(batches) + 1)


def test_exact_rational_floor() -> None:
    # 1.2^3 * 1000 = 1728 exactly; float arithmetic gives 1727.9999999999998
    assert math.floor(1.2**3 * 1000) == 1727
    assert Geometric(1000, 1.2).batch(4) == 1728


def test_constant() -> None:
    assert list(Constant(3).within(10)) == [3, 3, 3]


def test_catalyst_worked_count() -> None:
    K, inner = catalyst_counts(4, 10_000)
    assert (K, inner) == (200, 50)
    batches = list(Geometric(1, 2.0).within(inner))
    assert batches == [1, 2, 4, 8, 16]
    assert K * len(batches) == 1000 and K * sum(batches) == 6200


@pytest.mark.parametrize("N, T", [(10, 10_000), (3, 99), (7, 12345), (16, 10**6)])
def test_counts_are_exact_floors(N: int, T: int) -> None:
    K, inner = catalyst_counts(N, T)
    assert K == math.floor(math.sqrt(N * T)) and inner == math.floor(math.sqrt(T / N))
    assert resolve_period("stich", N, T) == max(1, math.floor(math.sqrt(T / N)))
    assert resolve_period("prsgd", N, T) == max(1, math.floor(T**0.25 / N**0.75 + 1e-12))
