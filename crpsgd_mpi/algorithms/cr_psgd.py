"""Algorithm 1, CR-PSGD: data-parallel SGD whose batch follows a schedule (exponential growth by default)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..arith import row_dots
from ..config import Config
from ..errors import InputError
from ..optim import check_rounds
from ..schedules import BatchSchedule, make_schedule
from ..workers import Workers
from .base import Algorithm, Setting, State, register_algorithm

#: Exact extra gradient term of the objective, added after averaging (Catalyst's prox term).
Extra = Callable[[np.ndarray, np.ndarray], None]


def planned_rounds(schedule: BatchSchedule, budget: int) -> int | None:
    """The rounds `schedule` runs under a per-worker budget, or None when they are not known in advance (an adaptive
    schedule, or one that cannot be walked)."""
    if schedule.plan(budget).needs_spread:
        return None
    try:
        return int(schedule.rounds_and_sfo(budget)[0])
    except TypeError:
        return None


@register_algorithm("cr-psgd")
class CRPSGD(Algorithm):
    """Parallel SGD with a growing batch (Algorithm 1; --schedule picks how it grows, default geometric).

    t = 1; while B_1 + ... + B_t <= T:
        every worker i: g_ti = mean of B_t stochastic gradients at x_t
        g_t = (1/N) sum_i g_ti                  (one round)
        x_{t+1} = x_t - gamma g_t;  B_{t+1} from the schedule (geometric: floor(rho^t B_1));  t += 1
    return x_t (the last iterate)
    The step is the run's update rule (`optim.UpdateRule`: momentum, weight decay, gamma_t of --gamma-schedule; by
    default exactly x_t - gamma g_t); its momentum buffer is one vector, the same on every worker.
    An adaptive schedule also receives the mean of the workers' squared gradient norms, sent in the same round.
    """

    resumable = True

    owns = ("schedule", "gamma")

    def __init__(self, T: int, schedule: BatchSchedule, gamma: float, extra_grad: Extra | None = None,
                 rounds: int | None = None) -> None:
        """`rounds`: the run's rounds for the step-size schedule when they are not this schedule's under T
        (Catalyst: all its stages')."""
        self.T, self.schedule, self.gamma, self.extra_grad = T, schedule, gamma, extra_grad
        self.rounds = rounds

    @classmethod
    def check(cls, cfg: Config, n_workers: int) -> None:
        if cfg.T < cfg.B1:
            raise InputError("T", cfg.T, f"must be >= B1 ({cfg.B1}), or no round fits the budget")
        schedule = make_schedule(cfg, n_workers)
        check_rounds(cfg, lambda: planned_rounds(schedule, cfg.T), f"schedule {cfg.schedule!r} adapts the batch "
                     "to the gradients, so the rounds are not known until the run ends")

    @classmethod
    def create(cls, setting: Setting) -> CRPSGD:
        cfg = setting.cfg
        return cls(cfg.T, make_schedule(cfg, setting.n_workers), setting.step("gamma", cfg.gamma, lambda L: 1.0 / L))

    def _planned(self) -> int | None:
        return self.rounds if self.rounds is not None else planned_rounds(self.schedule, self.T)

    def run(self, workers: Workers, x0: np.ndarray, resume: State | None = None) -> np.ndarray:
        x = np.array(x0 if resume is None else resume["x"], dtype=workers.dtype)
        plan = self.schedule.plan(self.T)
        opt = workers.optimizer(self.gamma, self._planned)
        if resume is not None:
            plan.restore(resume["plan"])
            opt.restore(resume, x)
        self._x, self._plan, self._opt = x, plan, opt
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
            opt.step(x, g, workers.rounds_done)
            workers.end_round(x)
        return x

    def state(self) -> State:
        return {"x": self._x.copy(), "plan": self._plan.state(), **self._opt.state()}
