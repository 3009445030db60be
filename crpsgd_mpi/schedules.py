"""Batch-size schedules and the closed forms of their round and SFO counts under a budget."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from fractions import Fraction


class BatchSchedule(ABC):
    """The per-worker batch size of round t = 1, 2, ..."""

    @abstractmethod
    def batch(self, t: int) -> int:
        """Batch size used in round t (1-based)."""

    def within(self, budget: int) -> Iterator[int]:
        """Batch sizes of the rounds run under a per-worker SFO budget: round t runs while
        B_1 + ... + B_t <= budget (the test includes the batch about to be used)."""
        used, t = 0, 1
        while True:
            b = self.batch(t)
            if used + b > budget:
                return
            used += b
            yield b
            t += 1


class Geometric(BatchSchedule):
    """CR-PSGD: B_1 given, B_{t+1} = floor(rho^t B_1), computed exactly in rational arithmetic on the
    decimal value of rho (so rho = 1.2 gives floor(1.2^t B_1) of the real 1.2, free of rounding)."""

    def __init__(self, B1: int, rho: float) -> None:
        if B1 < 1 or not rho > 1:
            raise ValueError("need B1 >= 1 and rho > 1")
        self.B1, self.rho = B1, rho
        self._rho = Fraction(repr(float(rho)))

    def batch(self, t: int) -> int:
        return int(self._rho ** (t - 1) * self.B1)


class Constant(BatchSchedule):
    """Fixed batch B every round."""

    def __init__(self, B: int) -> None:
        if B < 1:
            raise ValueError("need B >= 1")
        self.B = B

    def batch(self, t: int) -> int:
        return self.B
