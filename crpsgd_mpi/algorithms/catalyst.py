"""Algorithm 2, CR-PSGD-Catalyst: CR-PSGD on a sequence of proximal problems h_theta(x; y)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..config import Config
from ..errors import InputError
from ..optim import check_rounds
from ..schedules import BatchSchedule, make_schedule, schedule_bound
from ..workers import Workers
from .base import Algorithm, Setting, State, register_algorithm
from .cr_psgd import CRPSGD, planned_rounds


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
    The inner steps use the run's update rule; each outer step starts its momentum at zero (a new problem h, a new
    start point y_{k-1}), while the step-size schedule runs over the whole run's rounds (K stages x the inner
    rounds: --gamma-milestones count the rounds as the trace numbers them, cosine reaches zero at the run's end).
    """

    resumable = True

    owns = ("schedule", "gamma", "theta")
    # set by run(), read by state(): the stage in progress (or the next one), its inner CR-PSGD (None between
    # stages) and its anchor y_{k-1} (or y_k between stages)
    _k: int
    _inner: CRPSGD | None
    _y: np.ndarray

    def __init__(self, N: int, T: int, schedule: BatchSchedule, gamma: float, theta: float) -> None:
        self.K, self.inner_T = catalyst_counts(N, T)
        self.schedule, self.gamma, self.theta = schedule, gamma, theta

    @classmethod
    def check(cls, cfg: Config, n_workers: int) -> None:
        _, inner = catalyst_counts(n_workers, cfg.T)
        if inner < cfg.B1:
            raise InputError("T", cfg.T, f"catalyst inner budget floor(sqrt(T/N)) = {inner} < B1 = {cfg.B1} "
                             f"with N = {n_workers}: no inner round fits")
        schedule = make_schedule(cfg, n_workers)
        check_rounds(cfg, lambda: _total_rounds(schedule, n_workers, cfg.T), f"schedule {cfg.schedule!r} adapts the "
                     "batch to the gradients, so the rounds are not known until the run ends")

    @classmethod
    def largest_batch(cls, cfg: Config, n_workers: int) -> tuple[int, str]:
        return schedule_bound(cfg, n_workers, catalyst_counts(n_workers, cfg.T)[1])  # the inner budget

    @classmethod
    def create(cls, setting: Setting) -> Catalyst:
        cfg = setting.cfg
        theta = setting.step("theta", cfg.theta, lambda L: 2.0 * L)
        gamma = setting.step("gamma", cfg.gamma, lambda L: 1.0 / (L + theta))
        return cls(setting.n_workers, cfg.T, make_schedule(cfg, setting.n_workers), gamma, theta)

    def constants(self) -> dict[str, Any]:
        return {"gamma": self.gamma, "theta": self.theta}

    def run(self, workers: Workers, x0: np.ndarray, resume: State | None = None) -> np.ndarray:
        first = 1 if resume is None else int(resume["k"])
        y = np.array(x0 if resume is None else resume["y"], dtype=workers.dtype)
        inner_resume = None if resume is None else resume.get("inner")
        rounds = self._rounds() if workers.rule.needs_rounds else None
        for k in range(first, self.K + 1):
            workers.set_stage(k)
            anchor = y.copy()

            def prox(x: np.ndarray, g: np.ndarray, anchor: np.ndarray = anchor) -> None:
                g += self.theta * (x - anchor)

            self._k, self._inner = k, CRPSGD(self.inner_T, self.schedule, self.gamma, extra_grad=prox, rounds=rounds)
            self._y = anchor
            y = self._inner.run(workers, anchor, resume=inner_resume if k == first else None)
            self._k, self._inner, self._y = k + 1, None, y  # the stage is over: a resume starts the next one
            workers.end_round(y, stage_end=True)
        return y

    def _rounds(self) -> int | None:
        """Rounds of the whole run: K stages of the inner schedule's rounds under the inner budget."""
        inner = planned_rounds(self.schedule, self.inner_T)
        return None if inner is None else self.K * inner

    def state(self) -> State:
        """The stage in progress, its anchor y_{k-1} and the inner CR-PSGD's state; between stages, the next stage
        and y_k."""
        if self._inner is None:
            return {"k": self._k, "y": self._y.copy()}
        return {"k": self._k, "y": self._y.copy(), "inner": self._inner.state()}


def _total_rounds(schedule: BatchSchedule, N: int, T: int) -> int | None:
    K, inner = catalyst_counts(N, T)
    count = planned_rounds(schedule, inner)
    return None if count is None else K * count
