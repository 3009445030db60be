"""The contract of an algorithm: given the workers and a start point, spend the budget, return x."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from ..workers import Workers


class Algorithm(ABC):
    """A parallel SGD method. It talks only to `Workers` (gradients, average, end_round), so it runs
    unchanged on every backend; every SFO and round it spends is counted there."""

    name: str

    @abstractmethod
    def run(self, workers: Workers, x0: np.ndarray) -> np.ndarray:
        """Run to the end of the per-worker SFO budget; return the point the method returns."""
