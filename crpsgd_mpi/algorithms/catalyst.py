"""Algorithm 2, CR-PSGD-Catalyst: CR-PSGD on a sequence of proximal problems h_theta(x; y)."""

from __future__ import annotations

import math

import numpy as np

from ..workers import Workers
from .base import Algorithm
from .cr_psgd import CRPSGD


def catalyst_counts(N: int, T: int) -> tuple[int, int]:
    """(outer steps floor(sqrt(N T)), inner budget floor(sqrt(T / N))), in exact integer arithmetic."""
    return math.isqrt(N * T), math.isqrt(T // N) if T >= N else 0


class Catalyst(Algorithm):
    """
    y0 given; for k = 1 .. floor(sqrt(N T)):
        h(x) = f(x) + theta/2 ||x - y_{k-1}||^2
        y_k = CR-PSGD(h, N, floor(sqrt(T/N)), x1 = y_{k-1}, B1, rho, gamma)
    The prox gradient theta (x - y_{k-1}) is exact and local: no SFO, no round. Each inner call
    restarts its batch schedule at B1. Returns the last y_k.
    """

    name = "catalyst"

    def __init__(self, N: int, T: int, B1: int, rho: float, gamma: float, theta: float) -> None:
        self.K, self.inner_T = catalyst_counts(N, T)
        self.B1, self.rho, self.gamma, self.theta = B1, rho, gamma, theta

    def run(self, workers: Workers, x0: np.ndarray) -> np.ndarray:
        y = np.array(x0, dtype=np.float64)
        for k in range(1, self.K + 1):
            workers.set_stage(k)
            anchor = y.copy()

            def prox(x: np.ndarray, g: np.ndarray, anchor: np.ndarray = anchor) -> None:
                g += self.theta * (x - anchor)

            inner = CRPSGD(self.inner_T, self.B1, self.rho, self.gamma, extra_grad=prox)
            y = inner.run(workers, anchor)
            workers.end_round(y, stage_end=True)
        return y
