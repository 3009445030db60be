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
    The local steps use the run's update rule with the step size of the round they belong to (gamma_t for the H
    steps before average t). With momentum each worker keeps its own buffer v_i; after an averaging round
    (--momentum-average): keep (default) leaves every v_i as it is, average replaces each by their mean, sent in
    the same round as the models (the round's payload, and its counted bytes, double), reset sets them to zero.
    """

    resumable = True

    owns = ("period", "local_batch", "gamma")

    def __init__(self, T: int, period: int, local_batch: int, gamma: float, momentum_average: str = "keep") -> None:
        self.T, self.H, self.b, self.gamma = T, period, local_batch, gamma
        self.momentum_average = momentum_average

    @classmethod
    def check(cls, cfg: Config, n_workers: int) -> None:
        if cfg.local_batch > cfg.T:
            raise InputError("local_batch", cfg.local_batch, f"must be <= T ({cfg.T}), or no round fits the budget")
        period = resolve_period(cfg.period, n_workers, cfg.T)
        if period * cfg.local_batch > cfg.T:
            raise InputError("period", cfg.period, f"period x local_batch = {period * cfg.local_batch} "
                             f"exceeds T = {cfg.T}: no round fits")

    @classmethod
    def largest_batch(cls, cfg: Config, n_workers: int) -> tuple[int, str]:
        return cfg.local_batch, "local_batch"

    @classmethod
    def create(cls, setting: Setting) -> LocalSGD:
        cfg = setting.cfg
        period = resolve_period(cfg.period, setting.n_workers, cfg.T)
        return cls(cfg.T, period, cfg.local_batch, setting.step("gamma", cfg.gamma, lambda L: 1.0 / L),
                   cfg.momentum_average)

    def constants(self) -> dict[str, Any]:
        return {"gamma": self.gamma, "period_resolved": self.H}

    @property
    def rounds(self) -> int:
        """Number of averaging rounds."""
        return self.T // (self.H * self.b)

    def run(self, workers: Workers, x0: np.ndarray, resume: State | None = None) -> np.ndarray:
        x = np.array(x0 if resume is None else resume["x"], dtype=workers.dtype)
        d = x.size
        models = np.empty((workers.k, d), dtype=x.dtype)
        opt = self._opt = workers.optimizer(self.gamma, self.rounds)
        if resume is not None:
            opt.restore(resume.get("workers", {}), models)
        share = workers.rule.momentum > 0 and self.momentum_average == "average"
        payload = np.empty((workers.k, 2 * d), dtype=x.dtype) if share else None
        first = 0 if resume is None else int(resume["round"])
        for r in range(first, self.rounds):
            models[:] = x
            for _ in range(self.H):
                opt.step(models, workers.gradients(models, self.b), r + 1)
            if payload is None:
                x = workers.average(models).copy()
            else:  # the buffers ride in the same round as the models
                assert opt.velocity is not None  # share: momentum > 0, so step() has made the buffer
                payload[:, :d] = models
                payload[:, d:] = opt.velocity
                mean = workers.average(payload)
                x = mean[:d].copy()
                opt.velocity[:] = mean[d:]
            if self.momentum_average == "reset":
                opt.reset()
            self._round, self._x = r + 1, x  # after the average every worker's model is x
            workers.end_round(x)
        return x

    def worker_state(self) -> dict[str, np.ndarray]:
        """Each local worker's momentum buffer (with momentum)."""
        return dict(self._opt.state())

    def state(self) -> State:
        return {"round": self._round, "x": self._x.copy()}
