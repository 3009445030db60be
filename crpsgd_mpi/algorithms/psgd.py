"""Baseline: classical data-parallel SGD with a fixed batch, one round per step."""

from __future__ import annotations

import numpy as np

from ..schedules import Constant
from ..workers import Workers
from .base import Algorithm


class PSGD(Algorithm):
    """floor(T / B) steps: every worker averages B stochastic gradients at x, one round averages them
    over the workers, x <- x - gamma g. Returns the last iterate."""

    name = "psgd"

    def __init__(self, T: int, B: int, gamma: float) -> None:
        self.T, self.gamma = T, gamma
        self.schedule = Constant(B)

    def run(self, workers: Workers, x0: np.ndarray) -> np.ndarray:
        x = np.array(x0, dtype=np.float64)
        for batch in self.schedule.within(self.T):
            g = workers.average(workers.gradients(x, batch))
            g *= self.gamma
            x -= g
            workers.end_round(x)
        return x
