"""Baselines: local SGD [Stich'18] and PR-SGD [Yu, Yang, Zhu'19]: local steps, then model averaging."""

from __future__ import annotations

import math

import numpy as np

from ..workers import Workers
from .base import Algorithm


def resolve_period(period: int | str, N: int, T: int) -> int:
    """An integer period, or 'stich' = floor(sqrt(T/N)), or 'prsgd' = max(1, floor(T^(1/4) / N^(3/4))),
    both at least 1. Exact integer arithmetic: floor(T^(1/4)/N^(3/4)) = floor((T/N^3)^(1/4))."""
    if isinstance(period, int):
        return period
    if period == "stich":
        return max(1, math.isqrt(T // N))
    if period == "prsgd":
        q = T // N**3
        return max(1, math.isqrt(math.isqrt(q)))
    raise ValueError(f"unknown period {period!r}")


class LocalSGD(Algorithm):
    """Every worker keeps its own model. A round: H local steps x_i <- x_i - gamma g_i (batch b each),
    then one round averages the models, x_i <- mean. floor(T / (H b)) rounds; a period that does not
    fit the remaining budget is not started. Returns the averaged model."""

    name = "local-sgd"

    def __init__(self, T: int, period: int, local_batch: int, gamma: float) -> None:
        self.T, self.H, self.b, self.gamma = T, period, local_batch, gamma

    @property
    def rounds(self) -> int:
        """Number of averaging rounds."""
        return self.T // (self.H * self.b)

    def run(self, workers: Workers, x0: np.ndarray) -> np.ndarray:
        x = np.array(x0, dtype=np.float64)
        models = np.empty((workers.k, x.size))
        for _ in range(self.rounds):
            models[:] = x
            for _ in range(self.H):
                models -= self.gamma * workers.gradients(models, self.b)
            x = workers.average(models).copy()
            workers.end_round(x)
        return x
