"""The exact sum (crpsgd_mpi/comm/exact.py, crpsgd_mpi/comm/_exact.c) against the guarantee in its module docstring,
checked by an independent oracle in Python integers.

For N addends x_1..x_N of one element (float32 widened exactly), E the smallest integer with |x_i| < 2^E for all i
(at least -1022), W = 62 - ceil(log2 N), K = 2 words for float64 and 1 for float32, s = min(K*W - E, 1074):

- the result is RN(sum_i trunc(x_i * 2^s) * 2^-s), rounded once to nearest-even in the rows' dtype, with IEEE
  overflow: a sum whose correctly rounded value passes the largest finite value is +-inf (that is what the tests
  assert near DBL_MAX and FLT_MAX; an intermediate overflow is impossible on integers, so e.g.
  DBL_MAX + DBL_MAX - DBL_MAX is DBL_MAX);
- so it equals math.fsum (float64) / the correctly rounded exact sum (float32) when every addend is a multiple of
  2^-s, which holds for typical data (normal rows, N <= 16: checked, so that property cannot pass vacuously);
- -0.0 only when every addend is -0.0; any inf or NaN among an element's addends makes that element NaN;
- the same bits whatever the order of the rows and however they are split into groups (codes: MAX over groups;
  words: int64 SUM over groups), compiled or numpy, and LocalBackend(reduction="exact") returns these bits (mean:
  the sum divided by N in the dtype).

The oracle computes trunc(x * 2^s) from float.as_integer_ratio(), sums Python integers and rounds the exact rational
t * 2^-s itself (round_scaled, checked against Python's correctly rounded int / int division and against a single
float64 -> float32 conversion); it imports nothing from the module under test.

Reproducible like tests/test_properties.py (``derandomize=True``; ``CRPSGD_PROPERTY_SCALE``,
``CRPSGD_PROPERTY_RANDOM``, ``CRPSGD_PROPERTY_SHRINK`` as there).
"""

from __future__ import annotations

import collections
import math
import os
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import strategies as st

from crpsgd_mpi.comm import exact
from crpsgd_mpi.comm.exact import ExactSum
from crpsgd_mpi.comm.local import LocalBackend

# ---- the profile: reproducible, sized for CI (as in tests/test_properties.py) ----------------------------------

_SCALE = float(os.environ.get("CRPSGD_PROPERTY_SCALE", "1"))
_PHASES = [Phase.explicit, Phase.reuse, Phase.generate, Phase.target]
CI = settings(
    derandomize=os.environ.get("CRPSGD_PROPERTY_RANDOM") != "1",
    database=None,
    deadline=None,
    print_blob=True,
    phases=_PHASES + [Phase.shrink] if os.environ.get("CRPSGD_PROPERTY_SHRINK") == "1" else _PHASES,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
                           HealthCheck.large_base_example],
)


def examples(n: int) -> settings:
    """The CI profile with n examples (times $CRPSGD_PROPERTY_SCALE)."""
    return settings(CI, max_examples=max(1, round(n * _SCALE)))


# The numpy steps overflow to inf on purpose where a sum passes the largest finite value (numpy warns; the C steps
# do not): the tests assert the infinities themselves.
pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered in (multiply|cast):RuntimeWarning")

needs_compiled = pytest.mark.skipif(exact._compiled is None,
                                    reason="crpsgd_mpi.comm._exact is not built (no C compiler at install time, or "
                                           "`python setup.py build_ext --inplace` not run): nothing to compare")
ENGINES = [pytest.param(True, id="compiled", marks=needs_compiled), pytest.param(False, id="numpy")]

# ---- the two formats ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fmt:
    dtype: type
    uint: type
    p: int  # significand bits, the hidden one included
    emin: int  # exponent of the smallest normal
    emax: int  # exponent of the largest finite
    ebits: int
    mbits: int
    K: int  # words per addend in the guarantee

    @property
    def name(self) -> str:
        return np.dtype(self.dtype).name


F64 = Fmt(np.float64, np.uint64, 53, -1022, 1023, 11, 52, 2)
F32 = Fmt(np.float32, np.uint32, 24, -126, 127, 8, 23, 1)
FMTS = [pytest.param(F64, id="float64"), pytest.param(F32, id="float32")]
DBL_MAX = float(np.finfo(np.float64).max)
FLT_MAX = float(np.finfo(np.float32).max)
TINY64 = math.ldexp(1.0, -1074)
TINY32 = math.ldexp(1.0, -149)

# ---- the oracle: Python integers only ----------------------------------------------------------------------------


def word_bits(n: int) -> int:
    """W = 62 - ceil(log2 n), ceil(log2 n) as an integer bit length (no floating log)."""
    return 62 - (n - 1).bit_length()


def exponent_bound(xs: list[float]) -> int:
    """The smallest integer E with |x| < 2^E for every x, at least -1022 (frexp: |x| = f * 2^e, 0.5 <= f < 1)."""
    return max([-1022] + [math.frexp(x)[1] for x in xs if x != 0.0])


def grid_shift(xs: list[float], n: int, fmt: Fmt) -> int:
    """s: the grid of the guarantee is 2^-s."""
    return min(fmt.K * word_bits(n) - exponent_bound(xs), 1074)


def trunc_scaled(x: float, s: int) -> int:
    """trunc(x * 2^s), exactly."""
    p, q = x.as_integer_ratio()
    k = q.bit_length() - 1  # q = 2^k
    if s >= k:
        return p << (s - k)
    return -((-p) >> (k - s)) if p < 0 else p >> (k - s)


def on_grid(x: float, s: int) -> bool:
    """x is a multiple of 2^-s."""
    p, q = x.as_integer_ratio()
    k = q.bit_length() - 1
    return s >= k or p & ((1 << (k - s)) - 1) == 0


def round_scaled(t: int, s: int, fmt: Fmt) -> float:
    """t * 2^-s rounded to nearest-even in fmt (subnormals, and IEEE overflow to +-inf), as a Python float; an exact
    zero is +0.0."""
    if t == 0:
        return 0.0
    a = abs(t)
    q = max(a.bit_length() - 1 - s, fmt.emin) - (fmt.p - 1)  # the exponent of one unit in the last place
    drop = q + s  # bits of a below that unit
    if drop <= 0:
        mant = a << -drop
    else:
        mant, rem, half = a >> drop, a & ((1 << drop) - 1), 1 << (drop - 1)
        if rem > half or (rem == half and mant & 1):
            mant += 1
    value = math.inf if mant.bit_length() + q > fmt.emax + 1 else math.ldexp(mant, q)  # mant <= 2^p: exact
    return -value if t < 0 else value


def oracle_column(xs: list[float], n: int, fmt: Fmt) -> float:
    """The guarantee for one element's addends (n = N, all addends of the element)."""
    if not all(math.isfinite(x) for x in xs):
        return math.nan
    if all(x == 0.0 and math.copysign(1.0, x) < 0 for x in xs):
        return -0.0
    s = grid_shift(xs, n, fmt)
    return round_scaled(sum(trunc_scaled(x, s) for x in xs), s, fmt)


def exact_rounded(xs: list[float], fmt: Fmt) -> float:
    """The correctly rounded exact sum of finite addends (every double is a multiple of 2^-1074)."""
    return round_scaled(sum(trunc_scaled(x, 1074) for x in xs), 1074, fmt)


def columns(rows: np.ndarray) -> list[list[float]]:
    return rows.T.tolist()  # Python floats; float32 widened exactly


def oracle(rows: np.ndarray, fmt: Fmt) -> np.ndarray:
    return np.array([oracle_column(c, rows.shape[0], fmt) for c in columns(rows)], dtype=fmt.dtype)


def same_bits(got: np.ndarray, want: np.ndarray, fmt: Fmt) -> np.ndarray:
    """Per element: the same bits, or both NaN (any NaN)."""
    return (got.view(fmt.uint) == want.view(fmt.uint)) | (np.isnan(got) & np.isnan(want))


def hexes(xs: list[float], limit: int = 12) -> str:
    h = [float(x).hex() for x in xs[:limit]]
    return "[" + ", ".join(h) + (f", ... ({len(xs)} addends)" if len(xs) > limit else "") + "]"


def assert_same_bits(got: np.ndarray, want: np.ndarray, fmt: Fmt, rows: np.ndarray, what: str) -> None:
    ok = same_bits(got, want, fmt)
    if not ok.all():
        j = int(np.flatnonzero(~ok)[0])
        raise AssertionError(f"{what} ({fmt.name}, N={rows.shape[0]}, m={rows.shape[1]}), {int((~ok).sum())} "
                             f"element(s) differ; element {j}: got {float(got[j]).hex()}, want "
                             f"{float(want[j]).hex()}; addends {hexes(rows[:, j].tolist())}")


def is_negative_zero(v: float) -> bool:
    return v == 0.0 and math.copysign(1.0, v) < 0


# ---- tables of addends -------------------------------------------------------------------------------------------

#: How one element's N addends are made (each column of a table gets one kind).
KINDS = ("normal", "wide", "narrow", "cancel", "tie", "subnormal", "zeros", "nonfinite", "huge", "tiny")


def random_floats(rng: np.random.Generator, n: int, fmt: Fmt, lo: int, hi: int) -> np.ndarray:
    """n values of random sign and mantissa with exponent field uniform in [lo, hi] (0: subnormal or zero)."""
    e = rng.integers(lo, hi + 1, n, dtype=np.uint64)
    mant = rng.integers(0, 1 << fmt.mbits, n, dtype=np.uint64)
    sign = rng.integers(0, 2, n, dtype=np.uint64)
    bits = (sign << np.uint64(fmt.ebits + fmt.mbits)) | (e << np.uint64(fmt.mbits)) | mant
    return bits.astype(fmt.uint).view(fmt.dtype)


def make_column(rng: np.random.Generator, n: int, kind: str, fmt: Fmt) -> np.ndarray:
    top = (1 << fmt.ebits) - 2  # the largest exponent field of a finite value
    bias = (1 << (fmt.ebits - 1)) - 1
    if kind == "normal":
        return (rng.standard_normal(n) * 10.0 ** rng.uniform(-3, 3)).astype(fmt.dtype)
    if kind == "wide":  # the whole range, subnormals included
        return random_floats(rng, n, fmt, 0, top)
    if kind == "narrow":  # every addend at least 2^-63 times the largest, or zero
        f = int(rng.integers(64, top + 1))
        col = random_floats(rng, n, fmt, f - 62, f)
        col[rng.random(n) < 0.1] = 0.0
        return col
    if kind == "subnormal":  # all subnormal (or zero)
        return random_floats(rng, n, fmt, 0, 0)
    if kind == "zeros":  # signed zeros; all -0.0 half the time
        if rng.random() < 0.5:
            return np.full(n, -0.0, dtype=fmt.dtype)
        return np.where(rng.random(n) < 0.5, -0.0, 0.0).astype(fmt.dtype)
    if kind == "huge":  # next to the largest finite value: sums overflow
        col = random_floats(rng, n, fmt, top - 1, top)
        if rng.random() < 0.3:
            col[:] = np.finfo(fmt.dtype).max * np.where(rng.random(n) < 0.5, -1, 1)
        return col
    if kind == "tiny":  # exponents over 3p + 60 binades below the largest: addends on, near and far below the grid
        f = int(rng.integers(1, top + 1))
        col = random_floats(rng, n, fmt, max(0, f - 3 * fmt.p - 60), f)
        return col
    if kind == "cancel":  # pairs x, -x and a residue far below x
        pairs = (n - 1) // 2
        f = int(rng.integers(bias - 20, top + 1))
        x = random_floats(rng, pairs, fmt, max(0, f - 40), f)
        d = int(rng.integers(1, 2 * fmt.K * 62))
        residue = random_floats(rng, n - 2 * pairs, fmt, max(0, f - d - 2), max(0, f - d))
        return rng.permutation(np.concatenate([x, -x, residue])).astype(fmt.dtype)
    if kind == "tie":  # x + half an ulp of x, +- a far residue (on or below the grid), and pairs y, -y
        e = int(rng.integers(fmt.emin + 2 * fmt.p + 70, fmt.emax))
        x = math.ldexp(1.0 + float(rng.integers(0, 1 << (fmt.p - 1))) * 2.0 ** (1 - fmt.p), e)
        # d: anywhere down to past the grid, or where a float64 intermediate would lose it (53 - 24 bits below)
        d = int(rng.integers(1, 2 * fmt.K * 62) if rng.random() < 0.5 else rng.integers(25, 40))
        col = [x, math.ldexp(1.0, e - fmt.p), float(rng.choice([-1, 1, 1])) * math.ldexp(1.0, e - fmt.p - d)][:n]
        ys = random_floats(rng, (n - len(col)) // 2, fmt, e + 1 + (1 << (fmt.ebits - 1)) - 1 - 8,
                           e + (1 << (fmt.ebits - 1)) - 1).tolist()
        col += ys + [-y for y in ys] + [0.0] * (n - len(col) - 2 * len(ys))
        col = np.array(col, dtype=fmt.dtype)
        return col if rng.random() < 0.5 else -col[rng.permutation(n)]
    if kind == "nonfinite":  # an inf or NaN among otherwise ordinary addends
        col = make_column(rng, n, str(rng.choice(["normal", "wide", "huge", "zeros"])), fmt)
        for i in rng.choice(n, size=int(rng.integers(1, min(n, 3) + 1)), replace=False):
            col[i] = rng.choice([np.inf, -np.inf, np.nan])
        return col
    raise ValueError(kind)


SPECIAL_N = [1, 2, 3, 4, 5, 8, 9, 16, 17, 63, 64, 65, 1024, 1025, 2048, 2049, 4096]


@st.composite
def tables(draw: st.DrawFn, fmt: Fmt, kinds: tuple[str, ...] = KINDS, max_n: int = 4096, max_m: int = 300,
           max_cells: int = 4000) -> np.ndarray:
    """An (N, m) table of `fmt` rows, each column of one of `kinds`, from a seeded generator."""
    n = draw(st.one_of(st.integers(1, 20), st.sampled_from([k for k in SPECIAL_N if k <= max_n]),
                       st.integers(1, max_n)))
    m = draw(st.integers(1, max(1, min(max_m, max_cells // n))))
    chosen = draw(st.lists(st.sampled_from(kinds), min_size=1, max_size=4))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    rows = np.empty((n, m), dtype=fmt.dtype)
    with np.errstate(over="ignore"):
        for j in range(m):
            rows[:, j] = make_column(rng, n, chosen[j % len(chosen)], fmt)
    note(f"{fmt.name} N={n} m={m} kinds={chosen}")
    return rows


def finite_floats(fmt: Fmt) -> st.SearchStrategy[float]:
    w = 64 if fmt is F64 else 32
    big = DBL_MAX if fmt is F64 else FLT_MAX
    sub = math.ldexp(1.0, fmt.emin)
    return st.one_of(st.floats(allow_nan=False, allow_infinity=False, width=w),
                     st.floats(min_value=-sub, max_value=sub, width=w),  # subnormals and zeros
                     st.sampled_from([0.0, -0.0, 1.0, -1.0, big, -big, sub, math.ldexp(1.0, fmt.emin - fmt.p + 1)]))


@st.composite
def small_tables(draw: st.DrawFn, fmt: Fmt, nonfinite: bool = True) -> np.ndarray:
    """Small tables drawn value by value (Hypothesis' own float distribution, shrinkable), optionally with inf and
    NaN, and with columns that cancel: x, -x pairs and a residue."""
    n = draw(st.integers(1, 7))
    m = draw(st.integers(1, 5))
    element = finite_floats(fmt)
    if nonfinite:
        element = st.one_of(element, st.sampled_from([math.inf, -math.inf, math.nan]))
    cols = []
    for _ in range(m):
        if n >= 3 and draw(st.booleans()):
            xs = draw(st.lists(finite_floats(fmt), min_size=(n - 1) // 2, max_size=(n - 1) // 2))
            rest = draw(st.lists(element, min_size=n - 2 * len(xs), max_size=n - 2 * len(xs)))
            cols.append(draw(st.permutations(xs + [-x for x in xs] + rest)))
        else:
            cols.append(draw(st.lists(element, min_size=n, max_size=n)))
    return np.array(cols, dtype=fmt.dtype).T.copy()


def any_table(fmt: Fmt) -> st.SearchStrategy[np.ndarray]:
    return st.one_of(tables(fmt), small_tables(fmt))


# ---- the oracle's own rounding, checked --------------------------------------------------------------------------


@examples(150)
@given(t=st.one_of(st.integers(-2**70, 2**70), st.integers(-2**200, 2**200),
                   st.tuples(st.integers(2**52, 2**53 - 1), st.integers(0, 80)).map(lambda kj: (2 * kj[0] + 1) << kj[1])),
       s=st.integers(-1100, 1250))
def test_oracle_rounding_float64(t: int, s: int) -> None:
    """round_scaled for float64 is Python's int / int division (correctly rounded, subnormals included), with
    OverflowError read as +-inf."""
    num, den = (t, 1 << s) if s >= 0 else (t << -s, 1)
    try:
        want = num / den
    except OverflowError:
        want = math.copysign(math.inf, t)
    got = round_scaled(t, s, F64)
    assert got == want and math.copysign(1.0, got) == math.copysign(1.0, want), (t, s, got, want)
    if math.isfinite(want):
        assert float(Fraction(num, den)) == want


@examples(150)
@given(t=st.one_of(st.integers(-2**53, 2**53), st.integers(2**23, 2**24 - 1).map(lambda k: 2 * k + 1)),
       s=st.integers(-140, 200))
def test_oracle_rounding_float32(t: int, s: int) -> None:
    """round_scaled for float32 is one float64 -> float32 conversion where t * 2^-s is exact in float64 (|t| <=
    2^53, no float64 underflow): a single rounding (ties to even, subnormals, overflow to inf)."""
    exact64 = math.ldexp(t, -s)  # exact: |t| <= 2^53 and the range is far inside float64
    with np.errstate(over="ignore"):
        want = float(np.float32(exact64))
    got = round_scaled(t, s, F32)
    assert got == want and math.copysign(1.0, got) == math.copysign(1.0, want), (t, s, got, want)


def test_oracle_float32_is_not_a_double_rounding() -> None:
    """The case the oracle must not get wrong: 1 + 2^-24 + 2^-56 is above the float32 tie 1 + 2^-24, but float64
    first rounds it to the tie, which float32 then rounds to even (1.0)."""
    xs = [1.0, 2.0**-24, 2.0**-56]
    assert float(np.float32(math.fsum(xs))) == 1.0  # the double rounding
    assert exact_rounded(xs, F32) == 1.0 + 2.0**-23
    assert oracle_column(xs, 3, F32) == 1.0 + 2.0**-23  # s = 60 - 1 = 59: every addend is on the grid


# ---- named cases -------------------------------------------------------------------------------------------------

P = 2.0
NAMED: list[tuple[str, Fmt, list[float], float]] = [
    # one addend: itself, always (the grid has K*W >= 62 bits below it)
    ("one addend", F64, [math.pi], math.pi),
    ("one subnormal addend", F64, [TINY64], TINY64),
    ("one addend DBL_MAX", F64, [-DBL_MAX], -DBL_MAX),
    ("one addend -0.0", F64, [-0.0], -0.0),
    # catastrophic cancellation
    ("cancellation, residue on the grid", F64, [1.0, P**-100, -1.0], P**-100),  # s = 2*60 - 1 = 119
    ("cancellation, residue below the grid (fsum: 2^-130)", F64, [1.0, P**-130, -1.0], 0.0),
    ("cancellation of huge pairs, residue below the grid (fsum: 1.0)", F64, [1e308, 1.0, -1e308], 0.0),
    ("cancellation of many pairs", F64, [1.5, -2.0**50, 3.0, 2.0**50, -1.5, 2.0**-40, -3.0, 0.1, -0.1], 2.0**-40),
    # s = 2*58 - 601 = -485 with 2^600 among the addends: the residue 2^-40 is below the grid (fsum: 2^-40)
    ("cancellation of many pairs, one 2^600", F64, [1.5, -P**600, 3.0, P**600, -1.5, P**-40, -3.0, 0.1, -0.1], 0.0),
    # rounding: once, to nearest-even
    ("tie to even (down)", F64, [1.0, P**-53], 1.0),
    ("tie to even (up)", F64, [1.0 + P**-52, P**-53], 1.0 + P**-51),
    ("above the tie by a far bit", F64, [1.0, P**-53, P**-110], 1.0 + P**-52),
    # subnormals
    ("all subnormal", F64, [TINY64] * 1000, math.ldexp(1000.0, -1074)),
    ("subnormals that cancel", F64, [TINY64, -TINY64, 3 * TINY64, -2 * TINY64], TINY64),
    ("subnormals into the normal range", F64, [math.ldexp(1.0, -1023)] * 3, math.ldexp(3.0, -1023)),
    ("normal plus smallest subnormal", F64, [P**-1022, TINY64], P**-1022 + TINY64),
    # signed zeros: -0.0 only when every addend is -0.0
    ("-0.0 + -0.0", F64, [-0.0, -0.0], -0.0),
    ("-0.0 + +0.0", F64, [-0.0, 0.0], 0.0),
    ("exact cancellation to zero", F64, [-1.0, 1.0, -0.0], 0.0),
    ("subnormal cancellation to zero", F64, [-TINY64, -0.0, TINY64], 0.0),
    # infinities and NaN: NaN
    ("+inf", F64, [math.inf, 1.0], math.nan),
    ("+inf + +inf", F64, [math.inf, math.inf], math.nan),
    ("+inf - inf", F64, [math.inf, -math.inf], math.nan),
    ("NaN", F64, [-0.0, math.nan], math.nan),
    ("-inf next to DBL_MAX", F64, [DBL_MAX, -math.inf], math.nan),
    # near DBL_MAX: the correctly rounded sum, overflowing to inf as IEEE rounding does; no intermediate overflow
    ("DBL_MAX + DBL_MAX", F64, [DBL_MAX, DBL_MAX], math.inf),
    ("-DBL_MAX - DBL_MAX", F64, [-DBL_MAX, -DBL_MAX], -math.inf),
    ("DBL_MAX + half an ulp: tie, rounds to 2^1024", F64, [DBL_MAX, P**970], math.inf),
    ("DBL_MAX + a quarter ulp", F64, [DBL_MAX, P**969], DBL_MAX),
    ("DBL_MAX + DBL_MAX - DBL_MAX (fsum: OverflowError)", F64, [DBL_MAX, DBL_MAX, -DBL_MAX], DBL_MAX),
    # float32: one word, one rounding to float32
    ("float32: above the tie by a far bit (not float64 then float32)", F32, [1.0, P**-24, P**-56], 1.0 + P**-23),
    ("float32: tie to even", F32, [1.0, P**-24], 1.0),
    ("float32: residue below the one-word grid", F32, [1.0, P**-70, -1.0], 0.0),  # s = 60 - 1 = 59
    ("float32: residue on the grid", F32, [1.0, P**-50, -1.0], P**-50),
    ("float32: subnormals", F32, [TINY32] * 3, 3 * TINY32),
    ("float32: FLT_MAX + FLT_MAX", F32, [FLT_MAX, FLT_MAX], math.inf),
    ("float32: FLT_MAX + half an ulp", F32, [FLT_MAX, P**103], math.inf),
    ("float32: -0.0 + -0.0", F32, [-0.0, -0.0], -0.0),
    ("float32: -inf", F32, [1.0, -math.inf], math.nan),
]


@pytest.mark.parametrize("compiled", ENGINES)
@pytest.mark.parametrize(("fmt", "xs", "want"), [pytest.param(f, x, w, id=name) for name, f, x, w in NAMED])
def test_named_cases(fmt: Fmt, xs: list[float], want: float, compiled: bool) -> None:
    """Hand-worked sums: the oracle and the implementation give the stated value, bit for bit."""
    rows = np.array(xs, dtype=fmt.dtype).reshape(-1, 1)
    want_a = np.array([want], dtype=fmt.dtype)
    assert_same_bits(oracle(rows, fmt), want_a, fmt, rows, "oracle")
    got = ExactSum(len(xs), 1, fmt.dtype, compiled=compiled).local(rows).copy()
    assert_same_bits(got, want_a, fmt, rows, "local")
    # the same element next to others, and in reverse order
    wide = np.concatenate([rows[::-1], np.full((len(xs), 2), 1.0, dtype=fmt.dtype)], axis=1)
    got = ExactSum(len(xs), 3, fmt.dtype, compiled=compiled).local(wide).copy()
    assert_same_bits(got[:1], want_a, fmt, rows, "local, reversed, with other elements")


# ---- (1) compiled == numpy ---------------------------------------------------------------------------------------


@needs_compiled
@pytest.mark.parametrize("fmt", FMTS)
@examples(30)
@given(data=st.data())
def test_compiled_equals_numpy(fmt: Fmt, data: st.DataObject) -> None:
    """Every step of the C extension gives the numpy reference's bits: codes, words, decode, local (NaN as NaN)."""
    rows = data.draw(any_table(fmt))
    n, m = rows.shape
    c, p = ExactSum(n, m, fmt.dtype, compiled=True), ExactSum(n, m, fmt.dtype, compiled=False)
    assert c.compiled is not None and p.compiled is None
    code_c, code_p = c.codes(rows).copy(), p.codes(rows).copy()
    np.testing.assert_array_equal(code_c, code_p)
    words_c, words_p = c.encode(rows, code_c).copy(), p.encode(rows, code_c).copy()
    np.testing.assert_array_equal(words_c, words_p)
    assert_same_bits(c.decode(words_c, code_c).copy(), p.decode(words_c, code_c).copy(), fmt, rows, "decode")
    local_c = c.local(rows).copy()
    assert_same_bits(local_c, p.local(rows).copy(), fmt, rows, "local")
    # a non-contiguous table is read as its contiguous copy
    assert_same_bits(c.local(np.asfortranarray(rows)).copy(), local_c, fmt, rows, "local, Fortran order")


# ---- (2) the oracle ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("compiled", ENGINES)
@pytest.mark.parametrize("fmt", FMTS)
@examples(30)
@given(data=st.data())
def test_matches_oracle(fmt: Fmt, compiled: bool, data: st.DataObject) -> None:
    """local() is RN(sum trunc(x * 2^s) * 2^-s) in the dtype (or NaN / -0.0 by the rules), bit for bit; and encode's
    words carry exactly sum trunc(x * 2^s) for finite elements (K words of W bits, most significant first)."""
    rows = data.draw(any_table(fmt))
    n, m = rows.shape
    ex = ExactSum(n, m, fmt.dtype, compiled=compiled)
    assert_same_bits(ex.local(rows).copy(), oracle(rows, fmt), fmt, rows, "local vs oracle")
    code = ex.codes(rows).copy()
    words = ex.encode(rows, code).copy()
    W = word_bits(n)
    for j, xs in enumerate(columns(rows)):
        if all(math.isfinite(x) for x in xs):
            s = grid_shift(xs, n, fmt)
            total = int(words[0, j]) if fmt.K == 1 else (int(words[0, j]) << W) + int(words[1, j])
            assert total == sum(trunc_scaled(x, s) for x in xs), (j, hexes(xs))


@pytest.mark.parametrize("compiled", ENGINES)
@pytest.mark.parametrize("fmt", FMTS)
@examples(20)
@given(data=st.data())
def test_near_the_largest_value(fmt: Fmt, compiled: bool, data: st.DataObject) -> None:
    """Addends next to DBL_MAX / FLT_MAX (and ties): the oracle's bits, the sums that overflow as +-inf, never NaN
    (no intermediate overflow). Some examples do overflow (checked over the run)."""
    rows = data.draw(tables(fmt, kinds=("huge", "tie"), max_n=64))
    got = ExactSum(rows.shape[0], rows.shape[1], fmt.dtype, compiled=compiled).local(rows).copy()
    assert_same_bits(got, oracle(rows, fmt), fmt, rows, "local vs oracle")
    assert not np.isnan(got).any()
    OVERFLOWS[fmt.name, compiled] += int(np.isinf(got).sum())


OVERFLOWS: collections.Counter = collections.Counter()


@pytest.mark.parametrize("compiled", ENGINES)
@pytest.mark.parametrize("fmt", FMTS)
def test_near_the_largest_value_did_overflow(fmt: Fmt, compiled: bool) -> None:
    """test_near_the_largest_value was not vacuous about overflow (run after it, in file order)."""
    if (fmt.name, compiled) not in OVERFLOWS:
        pytest.skip("test_near_the_largest_value did not run in this session")
    assert OVERFLOWS[fmt.name, compiled] > 0


# ---- (3) == fsum on the grid -------------------------------------------------------------------------------------


def check_on_grid_columns(rows: np.ndarray, got: np.ndarray, fmt: Fmt) -> int:
    """For each finite column whose addends are all multiples of 2^-s (and not all -0.0): got is the correctly
    rounded exact sum (math.fsum for float64, where fsum does not raise OverflowError; for float32 the exact sum
    rounded once to float32). Returns how many columns were checked."""
    n = rows.shape[0]
    checked = 0
    for j, xs in enumerate(columns(rows)):
        if not all(math.isfinite(x) for x in xs) or all(is_negative_zero(x) for x in xs):
            continue
        s = grid_shift(xs, n, fmt)
        if not all(on_grid(x, s) for x in xs):
            continue
        want = exact_rounded(xs, fmt)
        if fmt is F64:
            try:
                fsum = math.fsum(xs)
            except OverflowError:  # a partial sum past DBL_MAX: fsum refuses, the exact rounding above decides
                pass
            else:
                assert fsum == want and math.copysign(1, fsum) == math.copysign(1, want), (hexes(xs), fsum, want)
        assert float(got[j]) == want and math.copysign(1, got[j]) == math.copysign(1, want), (
            f"element {j}: got {float(got[j]).hex()}, want {want.hex()}; addends {hexes(xs)}")
        checked += 1
    return checked


@pytest.mark.parametrize("fmt", FMTS)
@examples(30)
@given(data=st.data())
def test_correctly_rounded_on_the_grid(fmt: Fmt, data: st.DataObject) -> None:
    """Wherever every addend is a multiple of 2^-s the result is the correctly rounded exact sum (fsum)."""
    rows = data.draw(any_table(fmt))
    check_on_grid_columns(rows, ExactSum(rows.shape[0], rows.shape[1], fmt.dtype).local(rows).copy(), fmt)


@pytest.mark.parametrize("fmt", FMTS)
@examples(25)
@given(data=st.data())
def test_typical_data_is_on_the_grid(fmt: Fmt, data: st.DataObject) -> None:
    """The condition holds for typical data, so property (3) is not vacuous: normal rows at N <= 16, and (float64,
    the docstring's claim) any addends at least 2^-63 times the largest or zero, or all subnormal; every column is
    on the grid and equals fsum / the correctly rounded sum."""
    kinds = ("normal", "narrow", "subnormal") if fmt is F64 else ("normal",)
    rows = data.draw(tables(fmt, kinds=kinds, max_n=16))
    n, m = rows.shape
    for xs in columns(rows):
        s = grid_shift(xs, n, fmt)
        assert all(on_grid(x, s) for x in xs), (s, hexes(xs))
    got = ExactSum(n, m, fmt.dtype).local(rows).copy()
    assert check_on_grid_columns(rows, got, fmt) == sum(not all(is_negative_zero(x) for x in xs)
                                                        for xs in columns(rows))


def test_normal_rows_equal_fsum() -> None:
    """A plain instance of the same: 16 rows of 200 normal values, every element == math.fsum of its column (and the
    sum taken in row order differs from fsum somewhere, so this is not a test naive summation would pass)."""
    rows = np.random.default_rng(7).standard_normal((16, 200))
    got = ExactSum(16, 200, np.float64).local(rows).copy()
    want = np.array([math.fsum(c) for c in columns(rows)])
    np.testing.assert_array_equal(got.view(np.uint64), want.view(np.uint64))
    assert (np.add.reduce(rows, axis=0) != want).any()


# ---- (4) order and grouping --------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FMTS)
@examples(30)
@given(data=st.data(), seed=st.integers(0, 2**32 - 1))
def test_grouping_and_order_independence(fmt: Fmt, data: st.DataObject, seed: int) -> None:
    """The rows split at random among groups (some empty; each group computing with the compiled or the numpy
    steps): MAX of the groups' codes, int64 SUM of the groups' words encoded with that MAX, one decode -> the bits
    of local() over all rows; and local() of the rows in any order -> the same bits."""
    rows = data.draw(any_table(fmt))
    n, m = rows.shape
    rng = np.random.default_rng(seed)
    engines = [True, False] if exact._compiled is not None else [False]
    want = ExactSum(n, m, fmt.dtype).local(rows).copy()
    groups = int(rng.integers(1, min(n, 8) + 2))
    owner = rng.integers(0, groups, n)
    parts = [rows[owner == g] for g in range(groups)]
    steps = [ExactSum(n, m, fmt.dtype, compiled=bool(rng.choice(engines))) for _ in parts]
    code = np.max([ex.codes(part).copy() for ex, part in zip(steps, parts)], axis=0).astype(np.int16)
    words = np.sum([ex.encode(part, code).copy() for ex, part in zip(steps, parts)], axis=0, dtype=np.int64)
    for compiled in engines:
        got = ExactSum(n, m, fmt.dtype, compiled=compiled).decode(words, code).copy()
        assert_same_bits(got, want, fmt, rows, f"{groups} groups (sizes {[len(p) for p in parts]}), "
                                                f"decode compiled={compiled}")
        perm = rng.permutation(n)
        got = ExactSum(n, m, fmt.dtype, compiled=compiled).local(rows[perm]).copy()
        assert_same_bits(got, want, fmt, rows, f"rows permuted, compiled={compiled}")


# ---- (5) signed zeros, (6) non-finite values ---------------------------------------------------------------------


@pytest.mark.parametrize("compiled", ENGINES)
@pytest.mark.parametrize("fmt", FMTS)
@examples(30)
@given(data=st.data())
def test_signed_zero_rule(fmt: Fmt, compiled: bool, data: st.DataObject) -> None:
    """A result is -0.0 exactly when every addend of its element is -0.0 (fsum gives +0.0 there); an exact zero sum
    of anything else (cancellation, +0.0 among the zeros) is +0.0."""
    rows = data.draw(st.one_of(tables(fmt, kinds=("zeros", "cancel", "subnormal", "normal")),
                               small_tables(fmt, nonfinite=False)))
    n, m = rows.shape
    got = ExactSum(n, m, fmt.dtype, compiled=compiled).local(rows).copy()
    for j, xs in enumerate(columns(rows)):
        all_negative_zero = all(is_negative_zero(x) for x in xs)
        assert is_negative_zero(float(got[j])) == all_negative_zero, (j, float(got[j]), hexes(xs))
        if all_negative_zero:
            assert math.copysign(1.0, math.fsum(xs)) == 1.0  # the documented difference from fsum


@pytest.mark.parametrize("compiled", ENGINES)
@pytest.mark.parametrize("fmt", FMTS)
@examples(30)
@given(data=st.data())
def test_nonfinite_makes_nan(fmt: Fmt, compiled: bool, data: st.DataObject) -> None:
    """Any inf or NaN among an element's addends makes that element NaN (inf + inf too); the other elements are the
    sums of their own addends (as if the non-finite columns were not there)."""
    rows = data.draw(st.one_of(tables(fmt, kinds=("nonfinite", "normal", "huge", "wide")), small_tables(fmt)))
    n, m = rows.shape
    got = ExactSum(n, m, fmt.dtype, compiled=compiled).local(rows).copy()
    bad = ~np.isfinite(rows).all(axis=0)
    assert np.isnan(got[bad]).all(), [hexes(c) for c in columns(rows[:, bad])]
    if (~bad).any():
        alone = ExactSum(n, int((~bad).sum()), fmt.dtype, compiled=compiled).local(rows[:, ~bad].copy())
        assert_same_bits(got[~bad], alone.copy(), fmt, rows[:, ~bad], "finite elements next to non-finite ones")
        assert not np.isnan(got[~bad]).any()


# ---- the in-process backend --------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FMTS)
@examples(30)
@given(data=st.data())
def test_local_backend_exact(fmt: Fmt, data: st.DataObject) -> None:
    """LocalBackend(N, reduction="exact"): sum() is ExactSum's result, bit for bit; mean() is that sum divided by N
    in the rows' dtype (one IEEE division)."""
    rows = data.draw(any_table(fmt))
    n, m = rows.shape
    want = ExactSum(n, m, fmt.dtype).local(rows).copy()
    backend = LocalBackend(n, reduction="exact")
    total = backend.sum(rows)
    assert total.dtype == fmt.dtype
    assert_same_bits(total, want, fmt, rows, "LocalBackend.sum")
    mean = backend.mean(rows).copy()
    assert mean.dtype == fmt.dtype
    with np.errstate(invalid="ignore", over="ignore"):
        want_mean = want / np.array(n, dtype=fmt.dtype)
    assert want_mean.dtype == fmt.dtype
    assert_same_bits(mean, want_mean, fmt, rows, "LocalBackend.mean")
    assert_same_bits(backend.sum(rows[::-1]), want, fmt, rows, "LocalBackend.sum, rows reversed")
