"""Algorithm 2, CR-PSGD-Catalyst: CR-PSGD on a sequence of proximal problems h_theta(x; y)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..config import Config
from ..errors import InputError
from ..schedules import BatchSchedule, make_schedule
from ..workers import Workers
from .base import Algorithm, Setting, register_algorithm
from .cr_psgd import CRPSGD


def catalyst_counts(N: int, T: int) -> tuple[int, int]:
    """(outer steps floor(sqrt(N T)), inner budget floor(sqrt(T / N))), in exact integer arithmetic."""
    return math.isqrt(N * T), math.isqrt(T // N) if T >= N else 0


@register_algorithm("catalyst")
class Catalyst(Algorithm):
    """CR-PSGD-Catalyst for non-convex problems (Algorithm 2; --theta, default 2L).

    y0 given; for k = 1 .. floor(sqrt(N T)):
        h(x) = f(x) + theta/2 ||x - y_{k-1}||^2
        y_k = CR-PSGD(h, N, floor(sqrt(T/N)), x1 = y_{k-1}, B1, rho, gamma)
    The prox gradient theta (x - y_{k-1}) is exact and local: no SFO, no round. Each inner call
    restarts its batch schedule at B1. Returns the last y_k. Defaults: theta = 2L, gamma = 1/(L + theta).
    """

    def __init__(self, N: int, T: int, schedule: BatchSchedule, gamma: float, theta: float) -> None:
        self.K, self.inner_T = catalyst_counts(N, T)
        self.schedule, self.gamma, self.theta = schedule, gamma, theta

    @classmethod
    def check(cls, cfg: Config, n_workers: int) -> None:
        _, inner = catalyst_counts(n_workers, cfg.T)
        if inner < cfg.B1:
            raise InputError("T", cfg.T, f"catalyst inner budget floor(sqrt(T/N)) = {inner} < B1 = {cfg.B1} "
                             f"with N = {n_workers}: no inner round fits")
        make_schedule(cfg, n_workers)

    @classmethod
    def create(cls, setting: Setting) -> Catalyst:
        cfg = setting.cfg
        theta = setting.step("theta", cfg.theta, lambda L: 2.0 * L)
        gamma = setting.step("gamma", cfg.gamma, lambda L: 1.0 / (L + theta))
        return cls(setting.n_workers, cfg.T, make_schedule(cfg, setting.n_workers), gamma, theta)

    def constants(self) -> dict[str, Any]:
        return {"gamma": self.gamma, "theta": self.theta}

    def run(self, workers: Workers, x0: np.ndarray) -> np.ndarray:
        y = np.array(x0, dtype=workers.dtype)
        for k in range(1, self.K + 1):
            workers.set_stage(k)
            anchor = y.copy()

            def prox(x: np.ndarray, g: np.ndarray, anchor: np.ndarray = anchor) -> None:
                g += self.theta * (x - anchor)

            inner = CRPSGD(self.inner_T, self.schedule, self.gamma, extra_grad=prox)
            y = inner.run(workers, anchor)
            workers.end_round(y, stage_end=True)
        return y
