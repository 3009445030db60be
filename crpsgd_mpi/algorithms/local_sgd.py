"""Baselines: local SGD [Stich'18] and PR-SGD [Yu, Yang, Zhu'19]: local steps, then model averaging."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..config import Config
from ..errors import InputError
from ..workers import Workers
from .base import Algorithm, Setting, State, register_algorithm


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


@register_algorithm("local-sgd")
class LocalSGD(Algorithm):
    """Local SGD / PR-SGD: H local steps on every worker's own model, then one round averages them (--period).

    Every worker keeps its own model. A round: H local steps x_i <- x_i - gamma g_i (batch b each),
    then one round averages the models, x_i <- mean. floor(T / (H b)) rounds; a period that does not
    fit the remaining budget is not started. Returns the averaged model.
    """

    owns = ("period", "local_batch", "gamma")

    def __init__(self, T: int, period: int, local_batch: int, gamma: float) -> None:
        self.T, self.H, self.b, self.gamma = T, period, local_batch, gamma

    @classmethod
    def check(cls, cfg: Config, n_workers: int) -> None:
        if cfg.local_batch > cfg.T:
            raise InputError("local_batch", cfg.local_batch, f"must be <= T ({cfg.T}), or no round fits the budget")
        period = resolve_period(cfg.period, n_workers, cfg.T)
        if period * cfg.local_batch > cfg.T:
            raise InputError("period", cfg.period, f"period x local_batch = {period * cfg.local_batch} "
                             f"exceeds T = {cfg.T}: no round fits")

    @classmethod
    def create(cls, setting: Setting) -> LocalSGD:
        cfg = setting.cfg
        period = resolve_period(cfg.period, setting.n_workers, cfg.T)
        return cls(cfg.T, period, cfg.local_batch, setting.step("gamma", cfg.gamma, lambda L: 1.0 / L))

    def constants(self) -> dict[str, Any]:
        return {"gamma": self.gamma, "period_resolved": self.H}

    @property
    def rounds(self) -> int:
        """Number of averaging rounds."""
        return self.T // (self.H * self.b)

    def run(self, workers: Workers, x0: np.ndarray, resume: State | None = None) -> np.ndarray:
        x = np.array(x0 if resume is None else resume["x"], dtype=workers.dtype)
        models = np.empty((workers.k, x.size), dtype=x.dtype)
        first = 0 if resume is None else int(resume["round"])
        for r in range(first, self.rounds):
            models[:] = x
            for _ in range(self.H):
                models -= self.gamma * workers.gradients(models, self.b)
            x = workers.average(models).copy()
            self._round, self._x = r + 1, x  # after the average every worker's model is x
            workers.end_round(x)
        return x

    def state(self) -> State:
        return {"round": self._round, "x": self._x.copy()}
