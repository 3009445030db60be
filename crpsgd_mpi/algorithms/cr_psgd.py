"""Algorithm 1, CR-PSGD: parallel SGD with exponentially growing batches."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..schedules import Geometric
from ..workers import Workers
from .base import Algorithm

#: Exact extra gradient term of the objective, added after averaging (Catalyst's prox term).
Extra = Callable[[np.ndarray, np.ndarray], None]


class CRPSGD(Algorithm):
    """
    t = 1; while B_1 + ... + B_t <= T:
        every worker i: g_ti = mean of B_t stochastic gradients at x_t
        g_t = (1/N) sum_i g_ti                  (one round)
        x_{t+1} = x_t - gamma g_t;  B_{t+1} = floor(rho^t B_1);  t += 1
    return x_t (the last iterate)
    """

    name = "cr-psgd"

    def __init__(self, T: int, B1: int, rho: float, gamma: float, extra_grad: Extra | None = None) -> None:
        self.T, self.gamma = T, gamma
        self.schedule = Geometric(B1, rho)
        self.extra_grad = extra_grad

    def run(self, workers: Workers, x0: np.ndarray) -> np.ndarray:
        x = np.array(x0, dtype=np.float64)
        for batch in self.schedule.within(self.T):
            g = workers.average(workers.gradients(x, batch))
            if self.extra_grad is not None:
                self.extra_grad(x, g)
            x -= self.gamma * g
            workers.end_round(x)
        return x
