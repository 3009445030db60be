"""Closed forms of the batch schedules and the budget rule, against the worked counts in NOTES.md."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from fractions import Fraction
from itertools import count, islice

import pytest

from crpsgd_mpi.algorithms import catalyst_counts, resolve_period
from crpsgd_mpi.schedules import GUARD_BITS, BatchSchedule, Constant, FloorPowers, Geometric, Linear, Step, exact_ratio


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


# -- Geometric: exact floors in O(1) amortised per round ----------------------------------------------------

ADVERSARIAL = [
    (1.5, 1), (1.5, 4), (1.5, 2**20), (1.5, 10**6),  # powers of 3/2 are integers while 2^(t-1) divides B1
    (1.2, 1000), (1.2, 5**8), (1.25, 4**9), (1.0625, 16**4), (2.5, 2**19),
    (1.0000000000000002, 1), (1.0000000000000002, 10**6), (1 + 2**-52, 999_983),  # repr 1.0000000000000002
    (1 + 1e-12, 1), (1 + 1e-12, 10**6), (1.0001, 1), (1.0001, 7), (1.0001, 10**6), (1.01, 1), (1.01, 12345),
    (1.1, 1), (1.05, 2), (1.3, 3), (3.7, 1), (3.7, 10**6), (2.0, 1), (2.0, 10**6), (3.0, 7), (1e6, 1), (1e6, 10**6),
    (1.2345678901234567, 1), (1.2345678901234567, 999_999), (1.0000000000000004, 3), (1.9999999999999998, 5),
    (1.1000000000000001, 10**6), (1.0000000000000113, 77), (10.000000000000002, 1), (123456.78901234567, 2),
]


def verify_exact(B1: int, rho: float, batches: list[int]) -> None:
    """batches[k] == floor(B1 r^k) for r = Fraction(repr(rho)), checked as n q^k <= B1 p^k < (n + 1) q^k."""
    r = Fraction(repr(float(rho)))
    num, den = B1, 1
    for k, n in enumerate(batches):
        assert n * den <= num < (n + 1) * den, (rho, B1, k + 1)
        num, den = num * r.numerator, den * r.denominator


def terms(rho: float) -> int:
    """How many rounds to check: a few thousand, fewer where the terms reach thousands of digits."""
    return 3000 if rho < 1.5 else 600


@pytest.mark.parametrize("rho, B1", ADVERSARIAL)
def test_geometric_is_exact(rho: float, B1: int) -> None:
    n = terms(rho)
    batches = list(islice(Geometric(B1, rho).sizes(), n))
    verify_exact(B1, rho, batches)
    r = Fraction(repr(float(rho)))
    for t in [*range(1, 120), *range(120, n + 1, 97)]:
        assert batches[t - 1] == int(r ** (t - 1) * B1), (rho, B1, t)


@pytest.mark.parametrize("bits", [0, 1, 2, 5, 16])
@pytest.mark.parametrize("rho, B1", ADVERSARIAL[::3])
def test_geometric_exact_on_fallback(rho: float, B1: int, bits: int) -> None:
    it = FloorPowers(B1, exact_ratio(rho), bits)
    batches = list(islice(it, terms(rho) // 3))
    verify_exact(B1, rho, batches)
    if bits <= 2 and exact_ratio(rho).denominator > 1:
        assert it.exact_evaluations > 0


@pytest.mark.parametrize("rho, B1, n", [(1.5, 2**20, 21), (1.2, 5**8, 9), (1.25, 4**9, 10), (1.0625, 2**64, 17),
                                        (2.5, 2**19, 20), (2.0, 3, 500), (1e6, 10**6, 300)])
def test_exact_integers_need_no_fallback(rho: float, B1: int, n: int) -> None:
    it = FloorPowers(B1, exact_ratio(rho))
    batches = list(islice(it, n))
    r = exact_ratio(rho)
    assert batches == [B1 * r ** k for k in range(n)]  # every term an integer
    assert it.exact_evaluations == 0


def test_worked_exact_integers() -> None:
    assert list(islice(Geometric(4, 1.5).sizes(), 6)) == [4, 6, 9, 13, 20, 30]  # 13.5, 20.25, 30.375
    assert [Geometric(1000, 1.2).batch(t) for t in (1, 2, 3, 4, 5)] == [1000, 1200, 1440, 1728, 2073]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("rho, B1, T", [(1.0000000000000002, 1, 200_000), (1 + 1e-12, 10**6, 10**11),
                                        (1.0001, 1, 10**6), (1.0001, 10**6, 10**11), (1.01, 1, 10**12)])
def test_cost_per_round_is_bounded(rho: float, B1: int, T: int) -> None:
    """The state stays the size of the bracket (no growing exact rational) and the exact big-integer
    evaluation never runs: each round is a constant number of operations on numbers of a few hundred bits."""
    it = FloorPowers(B1, exact_ratio(rho))
    used = rounds = 0
    for b in it:
        if used + b > T:
            break
        used, rounds = used + b, rounds + 1
        assert it.lo.bit_length() <= GUARD_BITS + 64
    assert it.exact_evaluations == 0 and it.s == GUARD_BITS
    assert (rounds, used) == Geometric(B1, rho).rounds_and_sfo(T)
    assert rounds > 1000


def test_batch_random_access() -> None:
    g = Geometric(3, 1.3)
    ref = list(islice(g.sizes(), 300))
    order = [5, 6, 7, 299, 1, 150, 150, 151, 2, 300, 100]
    assert [g.batch(t) for t in order] == [ref[t - 1] for t in order]
    s = Step(2, 1.5, 7)
    assert [s.batch(t) for t in order] == [list(islice(s.sizes(), 300))[t - 1] for t in order]
    with pytest.raises(ValueError):
        g.batch(0)


def test_geometric_old_formula_unchanged() -> None:
    """The batches equal today's definition int(Fraction(repr(rho)) ** (t - 1) * B1) over a whole run."""
    for B1, rho, T in [(1, 1.3, 3000), (1, 2.0, 40000), (1, 1.2, 500), (3, 1.7, 10**6), (1, 1.01, 20000)]:
        r = Fraction(repr(float(rho)))
        expected = []
        for t in count(1):
            b = int(r ** (t - 1) * B1)
            if sum(expected) + b > T:
                break
            expected.append(b)
        assert list(Geometric(B1, rho).within(T)) == expected


# -- The schedules the field compares against, and the closed forms of their counts ---------------------------

def iterated(s: BatchSchedule, T: int) -> tuple[int, int]:
    batches = list(s.within(T))
    return len(batches), sum(batches)


BUDGETS = [*range(0, 130), 999, 1000, 1001, 4095, 4096, 10**4, 65_535, 10**5, 123_457, 10**6, 2**31 - 1, 10**15]


def schedules() -> list[BatchSchedule]:
    out: list[BatchSchedule] = [Constant(B) for B in (1, 2, 3, 7, 32, 1000, 10**6)]
    out += [Linear(B1) for B1 in (1, 2, 5, 64, 999)]
    out += [Geometric(B1, rho) for B1 in (1, 3, 64, 1000) for rho in (2.0, 3, 7.0, 10.0, 1.5, 1.1, 2.5, 1e6)]
    out += [Step(B1, f, e) for B1 in (1, 4, 128) for f in (2, 5, 10.0, 1.5, 1.1) for e in (1, 3, 10, 100)]
    return out


@pytest.mark.parametrize("s", schedules(), ids=lambda s: s.describe())
def test_closed_form_matches_iteration(s: BatchSchedule) -> None:
    for T in BUDGETS:
        batches = list(islice(s.within(T), 200_001))
        if len(batches) <= 200_000:
            assert s.rounds_and_sfo(T) == (len(batches), sum(batches)), T
    assert s.rounds_and_sfo(-5) == (0, 0)


def test_closed_form_random_params() -> None:
    rng = random.Random(11)
    for _ in range(300):
        B1, T = rng.randint(1, 50), rng.randint(0, 10**6)
        cases: list[BatchSchedule] = [Constant(rng.randint(1, 500)), Linear(B1), Geometric(B1, rng.randint(2, 9)),
                                      Step(B1, rng.randint(2, 9), rng.randint(1, 200)),
                                      Step(B1, rng.choice([1.5, 1.25, 3.3]), rng.randint(1, 50))]
        for s in cases:
            assert s.rounds_and_sfo(T) == iterated(s, T), (s.describe(), T)


def test_closed_form_is_not_iteration() -> None:
    """Integer ratios: the counts for an astronomic budget come from an integer logarithm."""
    assert Geometric(3, 7).rounds_and_sfo(10**300) == iterated(Geometric(3, 7), 10**300)
    R, sfo = Step(1, 2, 10**9).rounds_and_sfo(10**30)
    K = 69  # stages 0..K-1 cost 10^9 (2^K - 1) <= 10^30 < 10^9 (2^70 - 1)
    assert 10**9 * (2**K - 1) <= 10**30 < 10**9 * (2 ** (K + 1) - 1)
    assert R == K * 10**9 + (10**30 - 10**9 * (2**K - 1)) // 2**K and sfo <= 10**30
    R, sfo = Linear(1).rounds_and_sfo(10**40)
    assert sfo == R * (R + 1) // 2 <= 10**40 < (R + 1) * (R + 2) // 2
    assert Constant(3).rounds_and_sfo(10**50) == (10**50 // 3, 10**50 - 1)


def test_worked_counts() -> None:
    assert Constant(32).rounds_and_sfo(1000) == (31, 992)
    assert Linear(1).rounds_and_sfo(10) == (4, 10)  # 1+2+3+4
    assert Linear(1).rounds_and_sfo(14) == (4, 10)  # +5 = 15 > 14
    assert list(Linear(3).within(100)) == [3, 6, 9, 12, 15, 18, 21]  # 84; +24 = 108 > 100
    assert Linear(3).rounds_and_sfo(100) == (7, 84)
    assert Geometric(1, 2.0).rounds_and_sfo(10_000) == (13, 8191)  # NOTES.md
    assert Geometric(1, 3).rounds_and_sfo(100) == (4, 40)  # 1+3+9+27; +81 = 121 > 100
    assert Geometric(4, 1.5).rounds_and_sfo(50) == (4, 32)  # 4+6+9+13; +20 = 52 > 50
    assert list(Step(1, 2, 3).within(20)) == [1, 1, 1, 2, 2, 2, 4, 4]  # 17; +4 = 21 > 20
    assert Step(1, 2, 3).rounds_and_sfo(20) == (8, 17)
    assert list(Step(10, 1.5, 2).within(100)) == [10, 10, 15, 15, 22, 22]  # 22.5 floored; 94; +33 = 127 > 100
    assert Step(10, 1.5, 2).rounds_and_sfo(100) == (6, 94)
    # Smith et al.: batch x5 at each of the would-be learning-rate decays
    assert [Step(128, 5, 30).batch(t) for t in (1, 30, 31, 60, 61, 91)] == [128, 128, 640, 640, 3200, 16000]


def test_step_and_linear_definitions() -> None:
    for B1, f, every in [(1, 2, 1), (3, 1.5, 4), (7, 1.1, 10), (2, 10.0, 3)]:
        r = Fraction(repr(float(f)))
        expected = [int(B1 * r ** ((t - 1) // every)) for t in range(1, 400)]
        assert list(islice(Step(B1, f, every).sizes(), 399)) == expected
        assert [Step(B1, f, every).batch(t) for t in range(1, 400, 13)] == expected[::13]
    assert list(islice(Linear(5).sizes(), 4)) == [5, 10, 15, 20] and Linear(5).batch(7) == 35
    assert list(Step(1, 2, 1).within(10**4)) == list(Geometric(1, 2.0).within(10**4))


def test_describe() -> None:
    assert Constant(32).describe() == "constant: B_t = 32"
    assert Linear(4).describe() == "linear: B_t = 4 t"
    assert Geometric(1, 2.0).describe() == "geometric: B_t = floor(1 * 2^(t-1))"
    assert Geometric(3, 1.2).describe() == "geometric: B_t = floor(3 * 1.2^(t-1))"
    assert Step(128, 5, 30).describe() == "step: B_t = floor(128 * 5^floor((t-1)/30))"
    assert Step(1, 1.5, 2).describe() == "step: B_t = floor(1 * 1.5^floor((t-1)/2))"


@pytest.mark.parametrize("make", [lambda: Linear(0), lambda: Step(0, 2, 1), lambda: Step(1, 1.0, 1),
                                  lambda: Step(1, 2, 0), lambda: Geometric(1, 1.0), lambda: Constant(0)])
def test_invalid(make: Callable[[], BatchSchedule]) -> None:
    with pytest.raises(ValueError):
        make()
