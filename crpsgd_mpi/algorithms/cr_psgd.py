"""Algorithm 1, CR-PSGD: data-parallel SGD whose batch follows a schedule (exponential growth by default)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..arith import row_dots
from ..config import Config
from ..errors import InputError
from ..schedules import BatchSchedule, make_schedule
from ..workers import Workers
from .base import Algorithm, Setting, State, register_algorithm

#: Exact extra gradient term of the objective, added after averaging (Catalyst's prox term).
Extra = Callable[[np.ndarray, np.ndarray], None]


@register_algorithm("cr-psgd")
class CRPSGD(Algorithm):
    """Parallel SGD with a growing batch (Algorithm 1; --schedule picks how it grows, default geometric).

    t = 1; while B_1 + ... + B_t <= T:
        every worker i: g_ti = mean of B_t stochastic gradients at x_t
        g_t = (1/N) sum_i g_ti                  (one round)
        x_{t+1} = x_t - gamma g_t;  B_{t+1} from the schedule (geometric: floor(rho^t B_1));  t += 1
    return x_t (the last iterate)
    An adaptive schedule also receives the mean of the workers' squared gradient norms, sent in the same round.
    """

    owns = ("schedule", "gamma")

    def __init__(self, T: int, schedule: BatchSchedule, gamma: float, extra_grad: Extra | None = None) -> None:
        self.T, self.schedule, self.gamma, self.extra_grad = T, schedule, gamma, extra_grad

    @classmethod
    def check(cls, cfg: Config, n_workers: int) -> None:
        if cfg.T < cfg.B1:
            raise InputError("T", cfg.T, f"must be >= B1 ({cfg.B1}), or no round fits the budget")
        make_schedule(cfg, n_workers)

    @classmethod
    def create(cls, setting: Setting) -> CRPSGD:
        cfg = setting.cfg
        return cls(cfg.T, make_schedule(cfg, setting.n_workers), setting.step("gamma", cfg.gamma, lambda L: 1.0 / L))

    def run(self, workers: Workers, x0: np.ndarray, resume: State | None = None) -> np.ndarray:
        x = np.array(x0 if resume is None else resume["x"], dtype=workers.dtype)
        plan = self.schedule.plan(self.T)
        if resume is not None:
            plan.restore(resume["plan"])
        self._x, self._plan = x, plan
        spread = np.empty((workers.k, x.size + 1), dtype=x.dtype) if plan.needs_spread else None
        while (batch := plan.next()) is not None:
            rows = workers.gradients(x, batch)
            if spread is None:
                g = workers.average(rows)
            else:
                spread[:, :-1] = rows
                spread[:, -1] = row_dots(rows, rows)
                mean = workers.average(spread)
                g = mean[:-1]
                plan.observe(g, float(mean[-1]), workers.n, batch)
            if self.extra_grad is not None:
                self.extra_grad(x, g)
            x -= self.gamma * g
            workers.end_round(x)
        return x

    def state(self) -> State:
        return {"x": self._x.copy(), "plan": self._plan.state()}
