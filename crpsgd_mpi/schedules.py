"""Batch-size schedules (registered by name for `--schedule`), the closed forms of their round and SFO counts under a
budget, and the adaptive norm test."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from fractions import Fraction
from itertools import chain, count, repeat
from typing import TYPE_CHECKING

import numpy as np

from .arith import dot
from .errors import InputError
from .registry import SCHEDULES, Setting

if TYPE_CHECKING:
    from .config import Config

#: Fractional bits the bracket of `FloorPowers` starts with. Its width after k steps is at most
#: 2 (r^k - 1)/(r - 1) <= 2k (B_k + 1) units of 2^-bits, so for k, B_k < 2^64 the exact fallback runs only where
#: B1 r^k lies within 2^-120 of an integer without being one.
GUARD_BITS = 256
#: Up to this many stages (rounds of the geometric schedule), the largest batch under a budget is found by walking the
#: schedule exactly (O(1) per stage); beyond, a closed-form upper bound (`_largest_staged`).
EXACT_STAGES = 20_000


def exact_ratio(x: float) -> Fraction:
    """An int exactly; a float as the rational value of its shortest decimal repr (1.2 -> 6/5)."""
    return Fraction(x) if isinstance(x, int) else Fraction(repr(float(x)))


class FloorPowers(Iterator[int]):
    """floor(B1 r^k) for k = 0, 1, 2, ..., exactly, for a rational r = p/q > 1, in O(1) amortised per term
    (for terms of bounded size, as under a budget; exact arithmetic would cost O(k) for term k).

    Keeps integers lo, e with lo <= B1 r^k 2^s <= lo + e, stepped by lo <- floor(lo p / q) (remainder rem)
    and e <- ceil(e p / q) + [rem > 0]: a rigorous bracket of the exact value, since
    ceil((lo + e) p / q) <= floor(lo p / q) + [rem > 0] + ceil(e p / q). The term is lo >> s when that
    equals (lo + e) >> s. Otherwise (the value lies within e 2^-s of an integer, or e has grown) the term is
    computed exactly as B1 p^k // q^k and the bracket restarted from the exact value, at a precision with room
    for twice the bits of k and of the term. An exact integer B1 r^k never needs that: x 2^s integral means
    q^k divides B1 2^s, so every earlier step divided exactly and e = 0."""

    __slots__ = ("B1", "p", "q", "bits", "k", "s", "lo", "e", "exact_evaluations")

    def __init__(self, B1: int, r: Fraction, bits: int = GUARD_BITS) -> None:
        if B1 < 1 or not r > 1:
            raise ValueError("need B1 >= 1 and r > 1")
        self.B1, self.p, self.q, self.bits = B1, r.numerator, r.denominator, bits
        self.k, self.s, self.lo, self.e = 0, bits, B1 << bits, 0
        self.exact_evaluations = 0

    def __next__(self) -> int:
        lo, e, s = self.lo, self.e, self.s
        n = lo >> s
        if e and (lo + e) >> s != n:
            n = self._restart()
            lo, e = self.lo, self.e
        p, q = self.p, self.q
        self.lo, rem = divmod(lo * p, q)
        if e or rem:
            self.e = -(-e * p // q) + (rem != 0)
        self.k += 1
        return n

    def _restart(self) -> int:
        k = self.k
        num, den = self.B1 * self.p**k, self.q**k
        n = num // den
        self.s = max(self.s, self.bits + 2 * (k.bit_length() + n.bit_length() + 2))
        self.lo, rem = divmod(num << self.s, den)
        self.e = int(rem != 0)
        self.exact_evaluations += 1
        return n


class _Cursor:
    """Random access into an endless sequence by re-reading it: forward steps are O(1), a step back restarts."""

    __slots__ = ("fresh", "it", "i", "value")

    def __init__(self, fresh: Callable[[], Iterator[int]]) -> None:
        self.fresh, self.it, self.i, self.value = fresh, fresh(), -1, 0

    def at(self, i: int) -> int:
        if i < 0:
            raise ValueError("rounds are numbered from 1")
        if i < self.i:
            self.it, self.i = self.fresh(), -1
        while self.i < i:
            self.value, self.i = next(self.it), self.i + 1
        return self.value


def _ilog(base: int, m: int) -> int:
    """Largest k >= 0 with base^k <= m (base >= 2, m >= 1): a float estimate, corrected exactly."""
    k = max(int(math.log(m) / math.log(base)), 0)
    while k and base**k > m:
        k -= 1
    while base ** (k + 1) <= m:
        k += 1
    return k


def _staged_counts(B1: int, r: Fraction, every: int, budget: int) -> tuple[int, int]:
    """(rounds, SFO) under `budget` of the schedule running c_k = floor(B1 r^k) for `every` rounds, k = 0, 1, ...

    The first K stages cost every S_K. Integer r: S_K = B1 (r^K - 1)/(r - 1), so K is the largest with
    r^K <= (budget // every)(r - 1) // B1 + 1, an integer logarithm. Other r: the sum of floors has no closed
    form; the stages are walked with the exact `FloorPowers`, O(K) = O(log(budget) / log r) steps. Then the
    unfinished stage K runs (budget - every S_K) // c_K < every rounds."""
    budget = max(budget, 0)
    if r.denominator == 1:
        base = r.numerator
        K = _ilog(base, (budget // every) * (base - 1) // B1 + 1)
        used, c = every * B1 * ((base**K - 1) // (base - 1)), B1 * base**K
    else:
        used = K = 0
        for c in FloorPowers(B1, r):
            if used + every * c > budget:
                break
            used, K = used + every * c, K + 1
    extra = (budget - used) // c
    return K * every + extra, used + extra * c


def _largest_staged(B1: int, r: Fraction, every: int, budget: int) -> int:
    """An upper bound on the largest batch run under `budget` by the schedule running c_k = floor(B1 r^k) for `every`
    rounds each, k = 0, 1, ... (B1 when no round fits): exact where at most EXACT_STAGES stages can run (walked with
    `FloorPowers`), else a closed form.

    With K the last stage that runs a round and x = B1 r^K >= c_K > x - 1: every complete stage before it was paid
    for, every sum_{k<K} c_k + c_K <= budget, and sum_{k<K} c_k >= (x - B1)/(r - 1) - K, so
    x < ((budget + 1 + every K)(r - 1) + every B1) / (every + r - 1), with K <= min(budget / (every B1),
    1 + log((budget + 1)/B1) / log r)."""
    if budget < B1:
        return B1
    log_r = math.log(r)
    cap = budget // (every * B1)
    stages = min(cap, 2 + int(math.log((budget + 1) / B1) / log_r)) if log_r > 0 else cap
    if stages <= EXACT_STAGES:
        used, largest = 0, B1
        for c in FloorPowers(B1, r):
            if used + c > budget:  # not one round of this stage fits
                break
            largest, used = c, used + every * c
            if used > budget:  # this stage ran in part: nothing runs after it
                break
        return largest
    rf = float(r)
    bound = ((budget + 1 + every * stages) * (rf - 1.0) + every * B1) / (every + rf - 1.0)
    return int(min(budget, max(B1, math.floor(bound) + 1)))


class BatchSchedule(ABC):
    """The per-worker batch size of round t = 1, 2, ..."""

    @abstractmethod
    def batch(self, t: int) -> int:
        """Batch size used in round t (1-based)."""

    @abstractmethod
    def describe(self) -> str:
        """One line: the schedule's name and formula with its parameters."""

    def sizes(self) -> Iterator[int]:
        """B_1, B_2, ... without end, O(1) amortised each."""
        return map(self.batch, count(1))

    def within(self, budget: int) -> Iterator[int]:
        """Batch sizes of the rounds run under a per-worker SFO budget: round t runs while
        B_1 + ... + B_t <= budget (the test includes the batch about to be used)."""
        used = 0
        for b in self.sizes():
            if used + b > budget:
                return
            used += b
            yield b

    def rounds_and_sfo(self, budget: int) -> tuple[int, int]:
        """(rounds, SFO per worker) of `within(budget)`; here by running it, in subclasses in closed form."""
        batches = list(self.within(budget))
        return len(batches), sum(batches)

    def plan(self, budget: int) -> Plan:
        """One pass under `budget`, as an algorithm consumes it (adaptive schedules override this)."""
        return Plan(self.within(budget))

    def largest_batch(self, budget: int) -> int:
        """An upper bound on the largest batch of a round run under `budget`: what the memory plan provides for
        (`limits.plan_run`). Here the largest of `within(budget)` when at most EXACT_STAGES rounds spend the budget,
        else the budget itself (no round's batch exceeds it); the built-in schedules override it in closed form, an
        adaptive plug-in schedule must (or it is planned at the budget)."""
        used, largest = 0, 1
        try:
            for i, b in enumerate(self.sizes()):
                if used + b > budget:
                    return largest
                if i >= EXACT_STAGES:
                    break
                used, largest = used + b, max(largest, b)
        except Exception:  # noqa: BLE001 - an adaptive plug-in's sizes() may refuse to be walked
            pass
        return max(budget, 1)


class Plan:
    """One pass of a schedule under a budget: `next()` gives each round's per-worker batch (None: the budget is
    spent). An adaptive plan (`needs_spread`) also wants, after each round, the mean of the workers' gradients and
    the mean of their squared norms (`observe`); the algorithm then sends one more number per worker in the same
    round (the ledger counts its 8 bytes)."""

    needs_spread = False

    def __init__(self, batches: Iterator[int]) -> None:
        self._batches = batches
        self._given = 0

    def next(self) -> int | None:
        """The next round's batch size, or None when the next batch does not fit the budget."""
        batch = next(self._batches, None)
        self._given += batch is not None
        return batch

    def observe(self, mean_grad: np.ndarray, mean_sq_norm: float, n_workers: int, batch: int) -> None:
        """What the round just averaged (used only by adaptive plans)."""
        return None

    def state(self) -> dict[str, int]:
        """Where the pass is (for an exact resume). A plug-in plan that overrides `next` must override this (and
        `restore`) too; otherwise it cannot be resumed (TypeError: the run then takes no checkpoints)."""
        if type(self).next is not Plan.next and type(self).state is Plan.state:
            raise TypeError(f"{type(self).__name__} overrides next() but not state(): its position cannot be saved")
        return {"given": self._given}

    def restore(self, state: dict[str, int]) -> None:
        """Go on from `state` (a fresh plan of the same schedule and budget)."""
        for _ in range(int(state["given"])):
            self.next()


class Geometric(BatchSchedule):
    """CR-PSGD: B_t = floor(rho^(t-1) B1), exactly, with rho the rational value of its decimal repr (so
    rho = 1.2 gives floor(1.2^t B1) of the real 1.2, free of rounding). O(1) amortised per round for any rho
    (`FloorPowers`); counts in closed form for integer rho (`_staged_counts`)."""

    def __init__(self, B1: int, rho: float) -> None:
        if B1 < 1 or not rho > 1:
            raise ValueError("need B1 >= 1 and rho > 1")
        self.B1, self.rho = B1, rho
        self._rho = exact_ratio(rho)
        self._cursor = _Cursor(self.sizes)

    def batch(self, t: int) -> int:
        return self._cursor.at(t - 1)

    def sizes(self) -> Iterator[int]:
        return FloorPowers(self.B1, self._rho)

    def rounds_and_sfo(self, budget: int) -> tuple[int, int]:
        return _staged_counts(self.B1, self._rho, 1, budget)

    def largest_batch(self, budget: int) -> int:
        return _largest_staged(self.B1, self._rho, 1, budget)

    def describe(self) -> str:
        return f"geometric: B_t = floor({self.B1} * {self._rho_text()}^(t-1))"

    def _rho_text(self) -> str:
        return str(self._rho.numerator) if self._rho.denominator == 1 else repr(float(self.rho))


class Constant(BatchSchedule):
    """Fixed batch B every round: floor(T / B) rounds."""

    def __init__(self, B: int) -> None:
        if B < 1:
            raise ValueError("need B >= 1")
        self.B = B

    def batch(self, t: int) -> int:
        return self.B

    def sizes(self) -> Iterator[int]:
        return repeat(self.B)

    def rounds_and_sfo(self, budget: int) -> tuple[int, int]:
        R = max(budget, 0) // self.B
        return R, R * self.B

    def largest_batch(self, budget: int) -> int:
        return self.B

    def describe(self) -> str:
        return f"constant: B_t = {self.B}"


class Linear(BatchSchedule):
    """B_t = B1 t. R rounds cost B1 R (R + 1) / 2, so R is the largest with R (R + 1) <= floor(2 T / B1):
    R = (isqrt(4 floor(2 T / B1) + 1) - 1) // 2."""

    def __init__(self, B1: int) -> None:
        if B1 < 1:
            raise ValueError("need B1 >= 1")
        self.B1 = B1

    def batch(self, t: int) -> int:
        return self.B1 * t

    def sizes(self) -> Iterator[int]:
        return count(self.B1, self.B1)

    def rounds_and_sfo(self, budget: int) -> tuple[int, int]:
        m = 2 * max(budget, 0) // self.B1
        R = (math.isqrt(4 * m + 1) - 1) // 2
        return R, self.B1 * R * (R + 1) // 2

    def largest_batch(self, budget: int) -> int:
        return self.B1 * max(self.rounds_and_sfo(budget)[0], 1)

    def describe(self) -> str:
        return f"linear: B_t = {self.B1} t"


class Step(BatchSchedule):
    """Increase the batch instead of decaying the step [Smith et al., ICLR 2018]: the batch is multiplied by
    `factor` every `every` rounds, B_t = floor(B1 factor^floor((t-1)/every)), exactly as in `Geometric` (an int
    factor exactly, a float by its decimal repr). Counts in closed form for an integer factor."""

    def __init__(self, B1: int, factor: float, every: int) -> None:
        if B1 < 1 or not factor > 1 or every < 1:
            raise ValueError("need B1 >= 1, factor > 1 and every >= 1")
        self.B1, self.factor, self.every = B1, factor, every
        self._factor = exact_ratio(factor)
        self._stages = _Cursor(self._stage_sizes)

    def _stage_sizes(self) -> Iterator[int]:
        return FloorPowers(self.B1, self._factor)

    def batch(self, t: int) -> int:
        if t < 1:
            raise ValueError("rounds are numbered from 1")
        return self._stages.at((t - 1) // self.every)

    def sizes(self) -> Iterator[int]:
        return chain.from_iterable(repeat(c, self.every) for c in self._stage_sizes())

    def rounds_and_sfo(self, budget: int) -> tuple[int, int]:
        return _staged_counts(self.B1, self._factor, self.every, budget)

    def largest_batch(self, budget: int) -> int:
        return _largest_staged(self.B1, self._factor, self.every, budget)

    def describe(self) -> str:
        f = self._factor
        text = str(f.numerator) if f.denominator == 1 else repr(float(self.factor))
        return f"step: B_t = floor({self.B1} * {text}^floor((t-1)/{self.every}))"


class NormTest(BatchSchedule):
    """Adaptive: the norm test of Byrd et al. (2012) / Big Batch SGD (De et al., 2017), data-parallel. A round's
    averaged gradient g (N B samples) is accurate enough when its variance is small against its norm,
    Var(g) <= theta^2 ||g||^2; otherwise the next batch is the smallest that would pass,
    B' = ceil(B s^2 / (N theta^2 ||g||^2)), never smaller than the current one. The variance is estimated from the
    spread of the N workers' minibatch means (each of B samples), s^2 = N/(N-1) (mean_i ||g_i||^2 - ||g||^2), which
    estimates sigma^2 / B: this needs N >= 2 and one more number per worker in the same round, no per-sample gradient.
    A batch larger than what is left of the budget takes what is left (the last round)."""

    def __init__(self, B1: int, theta: float) -> None:
        if B1 < 1 or not theta > 0:
            raise ValueError("need B1 >= 1 and theta > 0")
        self.B1, self.theta = B1, theta

    def batch(self, t: int) -> int:
        raise TypeError("the norm test's batches depend on the gradients: use plan()")

    def describe(self) -> str:
        return f"norm-test: B_1 = {self.B1}, grows when Var(g) > {self.theta:g}^2 ||g||^2"

    def plan(self, budget: int) -> Plan:
        return _NormTestPlan(self.B1, self.theta, budget)

    def largest_batch(self, budget: int) -> int:
        """The budget: the test may ask for any batch, and a round takes at most what is left of the budget."""
        return max(budget, 1)


class _NormTestPlan(Plan):
    needs_spread = True

    def __init__(self, B1: int, theta: float, budget: int) -> None:
        self.batch, self.theta2, self.left = B1, theta * theta, budget

    def next(self) -> int | None:
        if self.left < 1:
            return None
        batch = min(self.batch, self.left)
        self.left -= batch
        return batch

    def state(self) -> dict[str, int]:
        return {"batch": self.batch, "left": self.left}

    def restore(self, state: dict[str, int]) -> None:
        self.batch, self.left = int(state["batch"]), int(state["left"])

    def observe(self, mean_grad: np.ndarray, mean_sq_norm: float, n_workers: int, batch: int) -> None:
        g2 = dot(mean_grad, mean_grad)
        spread = n_workers / (n_workers - 1) * max(mean_sq_norm - g2, 0.0)  # estimates sigma^2 / batch
        if spread <= n_workers * self.theta2 * g2:
            return
        wanted = self.left if g2 == 0.0 else math.ceil(batch * spread / (n_workers * self.theta2 * g2))
        self.batch = max(self.batch, wanted)


@SCHEDULES.register("geometric", owns=("B1", "rho"))
def _geometric(setting: Setting) -> BatchSchedule:
    """B_t = floor(B1 rho^(t-1)): Algorithm 1 (--B1, --rho)."""
    return Geometric(setting.cfg.B1, setting.cfg.rho)


@SCHEDULES.register("linear", owns=("B1",))
def _linear(setting: Setting) -> BatchSchedule:
    """B_t = B1 t (--B1)."""
    return Linear(setting.cfg.B1)


@SCHEDULES.register("step", owns=("B1", "step_factor", "step_every"))
def _step(setting: Setting) -> BatchSchedule:
    """B_t = floor(B1 factor^floor((t-1)/every)): Smith et al. 2018 (--B1, --step-factor, --step-every)."""
    cfg = setting.cfg
    return Step(cfg.B1, cfg.step_factor, cfg.step_every)


@SCHEDULES.register("norm-test", owns=("B1", "norm_theta"))
def _norm_test(setting: Setting) -> BatchSchedule:
    """Adaptive: grow the batch while Var(g) > theta^2 ||g||^2 (Byrd et al. 2012; --B1, --norm-theta; N >= 2)."""
    if setting.n_workers < 2:
        raise InputError("schedule", "norm-test", "estimates the gradient variance from the spread of the workers' "
                         "gradients: needs at least 2 workers")
    return NormTest(setting.cfg.B1, setting.cfg.norm_theta)


def make_schedule(cfg: Config, n_workers: int) -> BatchSchedule:
    """The schedule `cfg.schedule` names, built for N workers."""
    return SCHEDULES.build(cfg.schedule, Setting(cfg, n_workers))


def schedule_bound(cfg: Config, n_workers: int, budget: int) -> tuple[int, str]:
    """(the largest batch of the configured schedule run under `budget`, "B1" when that is B1 else "T"), for the
    memory plan: exact or a closed form for the built-ins (`BatchSchedule.largest_batch`); a plug-in's schedule that
    cannot be built or bounded is planned at the budget (its error comes in the run)."""
    try:
        bound = int(make_schedule(cfg, n_workers).largest_batch(budget))
    except InputError:
        raise
    except Exception:  # noqa: BLE001 - a plug-in's schedule
        bound = budget
    return bound, ("B1" if bound <= cfg.B1 else "T")
