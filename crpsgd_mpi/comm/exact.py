"""The exact, order-independent sum: every addend turned into integers on one fixed-point grid per element, the
integers summed (integer addition is exact, so any order and any grouping gives the same total), the total rounded
once to the nearest float.

The guarantee, for N addends x_1..x_N of one element (float64 or float32; float32 is widened exactly):

- **Order-independent, always.** The result is a function of the multiset of addends and N alone, whichever
  process holds which addend and however the partial sums are grouped (MPI library, collective algorithm, number
  of ranks, hosts).
- **Correctly rounded when the addends fit the grid.** Let E be the smallest integer with |x_i| < 2^E for every
  addend (and at least -1021), W = 62 - ceil(log2 N) the bits of one word, K the words per addend (2 for float64, 1
  for float32) and s = min(K*W - E, 1074). The result is RN(sum_i trunc(x_i * 2^s) * 2^-s), rounded to nearest-even
  in the rows' own type. Every double is a multiple of 2^-1074, so when every addend is a multiple of 2^-s (for
  float64 at N <= 16: every addend at least 2^-63 times the largest, or zero, or all addends subnormal), the
  truncation drops nothing and the result is the correctly rounded exact sum, what `math.fsum` returns. Otherwise
  it is within N * 2^-s (about 2^-(2W-53) relative to the largest addend for float64) of it, before the rounding.
- **Zeros and non-finite values.** The sum is -0.0 only when every addend is -0.0 (as IEEE addition gives; `fsum`
  returns +0.0); any infinity or NaN among the addends makes that element NaN, which ends a run as diverged.

On the wire (MPI): one Allreduce(MAX) of int16 codes (2 bytes an element) and one Allreduce(SUM) of K int64 words
(8K bytes an element), neither growing with N; or, where N * m is small, one Allgather of the float rows and the
same arithmetic on every rank (`GATHER_ELEMENTS`). The in-process backend runs the same arithmetic."""

from __future__ import annotations

import math
import os
from typing import Protocol, overload

import numpy as np

#: Below this many elements in all N rows together, gathering the rows and summing them on every rank beats two
#: collectives (measured in `make bench`); the bits are the same either way.
GATHER_ELEMENTS = 1 << 14
#: Codes at or above this mark an element with an infinity or a NaN among its addends.
NONFINITE = 2 * 2047


def word_bits(n_total: int) -> int:
    """Bits of magnitude one int64 word may carry so that the sum of n_total words (and a carry) cannot overflow."""
    return 62 - max(0, math.ceil(math.log2(n_total)))


def words_for(dtype: np.dtype) -> int:
    """Integer words per addend: two for float64 (a 2W-bit grid), one for float32 (a W-bit grid, 24-bit values)."""
    return 1 if np.dtype(dtype).itemsize <= 4 else 2


@overload
def _pow2(e: np.int64) -> np.float64: ...
@overload
def _pow2(e: np.ndarray) -> np.ndarray: ...
def _pow2(e: np.ndarray | np.int64) -> np.ndarray | np.float64:
    """2^e as float64 for integer e in [-1022, 1023], built from its bits (exact, and faster than ldexp)."""
    return ((e + 1023) << 52).view(np.float64)


def _scale_factors(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two powers of two whose product is 2^t, |t| <= 2044: x * a * b scales x by 2^t exactly (or underflows only
    where the result is far below the grid, where it truncates to 0 either way)."""
    h = t // 2
    return _pow2(h), _pow2(t - h)


class CompiledSteps(Protocol):
    """What the compiled module `_exact` provides (typed in _exact.pyi): the steps below in C, the same bits."""

    def codes(self, rows: np.ndarray, k: int, m: int, is32: bool, code: np.ndarray, /) -> None: ...
    def encode(self, rows: np.ndarray, k: int, m: int, is32: bool, code: np.ndarray, W: int, K: int,
               words: np.ndarray, /) -> None: ...
    def decode(self, words: np.ndarray, code: np.ndarray, m: int, W: int, K: int, is32: bool, out: np.ndarray,
               /) -> None: ...
    def local(self, rows: np.ndarray, k: int, m: int, is32: bool, W: int, K: int, code: np.ndarray,
              words: np.ndarray, out: np.ndarray, /) -> None: ...


_compiled: CompiledSteps | None
try:
    if os.environ.get("CRPSGD_EXACT") == "numpy":  # tests compare the two implementations' traces
        raise ImportError
    from . import _exact as _compiled
except ImportError:  # no C compiler at install time: the numpy steps below, same bits
    _compiled = None


def implementation() -> str:
    """Which steps run: 'compiled' or 'numpy' (recorded in the trace)."""
    return "numpy" if _compiled is None else "compiled"


class ExactSum:
    """The three steps of the exact sum of m-element rows over n_total addends of `dtype`, with reused buffers:
    `codes` (each process: the max over its rows; then MAX over processes), `encode` (each process: its rows'
    integer words, summed; then SUM over processes), `decode` (every process: the same float result). Compiled
    (crpsgd_mpi/comm/_exact.c) where the package was built with a C compiler, else numpy: the same bits."""

    def __init__(self, n_total: int, m: int, dtype: np.dtype, compiled: bool = True) -> None:
        self.n_total, self.m, self.dtype = n_total, m, np.dtype(dtype)
        if self.dtype not in (np.float64, np.float32):
            raise TypeError(f"the exact sum takes float64 or float32 rows, not {self.dtype}")
        self.W = word_bits(n_total)
        self.K = words_for(self.dtype)
        self.is32 = self.dtype == np.float32
        self.code = np.empty(m, dtype=np.int16)
        self.words = np.empty((self.K, m), dtype=np.int64)
        self.out = np.empty(m, dtype=self.dtype)
        self.compiled = _compiled if compiled else None

    def _rows(self, rows: np.ndarray) -> np.ndarray:
        if rows.dtype != self.dtype or rows.ndim != 2 or rows.shape[1] != self.m:
            raise ValueError(f"rows {rows.shape} {rows.dtype} do not match ({self.m},) {self.dtype}")
        return np.ascontiguousarray(rows)

    # -- step 1: the grid -------------------------------------------------------------------------
    def codes(self, rows: np.ndarray) -> np.ndarray:
        """Per element, the max over the local rows (k, m) of 2 * (binary exponent field) + (addend is not -0.0),
        into `self.code`: the MAX of codes over all addends fixes the grid and flags non-finite values and all -0.0."""
        rows = self._rows(rows)
        if self.compiled is not None:
            self.compiled.codes(rows, rows.shape[0], self.m, self.is32, self.code)
            return self.code
        bits = rows.astype(np.float64).view(np.int64)
        c = ((bits >> 51) & np.int64(0xFFE)) | (bits != np.int64(-0x8000000000000000))
        self.code[:] = c.max(axis=0, initial=0)
        return self.code

    def _shift(self, code: np.ndarray) -> np.ndarray:
        """s per element: the grid is 2^-s."""
        field = np.maximum(code.astype(np.int64) >> 1, 1)
        return np.minimum(self.K * self.W - (field - 1022), 1074)

    # -- step 2: integer words ------------------------------------------------------------------
    def encode(self, rows: np.ndarray, code: np.ndarray) -> np.ndarray:
        """sum over the local rows (k, m) of trunc(x * 2^s) as K int64 words per element (most significant first,
        W bits each), into `self.words`; `code` is the MAX over every addend."""
        rows = self._rows(rows)
        if self.compiled is not None:
            self.compiled.encode(rows, rows.shape[0], self.m, self.is32, code, self.W, self.K, self.words)
            return self.words
        x = rows.astype(np.float64)
        x[~np.isfinite(x)] = 0.0
        s = self._shift(code)
        if self.K == 1:
            a, b = _scale_factors(s)
            np.add.reduce(np.trunc(x * a * b).astype(np.int64), axis=0, out=self.words[0])
            return self.words
        a, b = _scale_factors(s - self.W)
        r = x * a * b
        w = np.trunc(r)
        np.add.reduce(w.astype(np.int64), axis=0, out=self.words[0])
        r = (r - w) * _pow2(np.int64(self.W))
        np.add.reduce(np.trunc(r).astype(np.int64), axis=0, out=self.words[1])
        return self.words

    # -- step 3: one rounding -------------------------------------------------------------------
    def decode(self, words: np.ndarray, code: np.ndarray) -> np.ndarray:
        """The float sum from the total words and the MAX codes, rounded once to nearest-even, into `self.out`."""
        if self.compiled is not None:
            self.compiled.decode(np.ascontiguousarray(words), code, self.m, self.W, self.K, self.is32, self.out)
            return self.out
        s = self._shift(code)
        value = self._round_one(words[0], s) if self.K == 1 else self._round_two(words[0], words[1], s)
        out = self.out
        out[:] = value
        out[code == 0] = -0.0
        out[code >= NONFINITE] = np.nan
        return out

    def _round_two(self, t0: np.ndarray, t1: np.ndarray, s: np.ndarray) -> np.ndarray:
        """RN((t0 * 2^W + t1) * 2^-s) in float64: the magnitude as two words, its top 61 or 62 bits with a sticky
        bit (so that the int64 -> float64 conversion, round to nearest-even, rounds it correctly), then an exact
        scaling."""
        W = self.W
        hi = t0 + (t1 >> W)
        lo = t1 & np.int64((1 << W) - 1)
        neg = hi < 0
        borrow = neg & (lo != 0)
        mh = np.where(neg, -hi - borrow, hi)
        ml = np.where(borrow, (np.int64(1) << W) - lo, lo)
        length = np.frexp(mh.astype(np.float64))[1].astype(np.int64)  # the bit length, or one more
        k = np.clip(62 - length, 0, W)
        drop = W - k
        top = (mh << k) | (ml >> drop)
        top |= (ml & ((np.int64(1) << drop) - 1)) != 0
        a, b = _scale_factors(drop - s)
        mag = top.astype(np.float64) * a * b
        return np.where(neg, -mag, mag)

    def _round_one(self, t: np.ndarray, s: np.ndarray) -> np.ndarray:
        """RN(t * 2^-s) for float32 through an exact float64: the magnitude's top 52 or 53 bits with a sticky bit."""
        neg = t < 0
        m = np.abs(t)
        length = np.frexp(m.astype(np.float64))[1].astype(np.int64)
        drop = np.clip(length - 53, 0, 62)
        top = (m >> drop) | ((m & ((np.int64(1) << drop) - 1)) != 0)
        a, b = _scale_factors(drop - s)
        mag = top.astype(np.float64) * a * b
        return np.where(neg, -mag, mag)

    def local(self, rows: np.ndarray) -> np.ndarray:
        """The exact sum of rows (k, m) that all live here (in process; a gathered table): the same bits as the
        collective steps over any split of the rows. Returns `self.out`, valid until the next call."""
        rows = self._rows(rows)
        if self.compiled is not None:
            self.compiled.local(rows, rows.shape[0], self.m, self.is32, self.W, self.K, self.code, self.words,
                                self.out)
            return self.out
        code = self.codes(rows)
        return self.decode(self.encode(rows, code), code)


def exact_for(cache: dict[tuple[int, np.dtype], ExactSum], n_total: int, rows: np.ndarray) -> ExactSum:
    """The ExactSum for rows of this width and type over n_total addends, made once per backend (its buffers are
    reused every round)."""
    key = (rows.shape[1], rows.dtype)
    ex = cache.get(key)
    if ex is None:
        ex = cache[key] = ExactSum(n_total, rows.shape[1], rows.dtype)
    return ex
