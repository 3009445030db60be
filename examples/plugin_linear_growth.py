"""A plug-in algorithm: PSGD with linearly growing batches, B_t = B1 * t, while the budget lasts.

One file, nothing in the package edited; it gets every guarantee of a built-in (counted SFO, rounds and bytes,
the trace, the failure paths), it steps with the run's update rule (`workers.optimizer`: --momentum, --nesterov,
--weight-decay, --gamma-schedule, with rounds/gamma in the trace), and with `state()` and `run(..., resume=)` its runs
can be resumed exactly:

    mpiexec -n 4 python -m crpsgd_mpi.run --plugin examples/plugin_linear_growth.py --algorithm linear-growth
    python -m crpsgd_mpi.run --backend local --workers 4 --plugin examples/plugin_linear_growth.py \\
        --algorithm linear-growth --B1 2 --T 5000
"""

from __future__ import annotations

import numpy as np

from crpsgd_mpi import Algorithm, Config, InputError, Setting, Workers, register_algorithm
from crpsgd_mpi.algorithms.base import State


@register_algorithm("linear-growth")
class LinearGrowth(Algorithm):
    """PSGD with linearly growing batches: B_t = B1 t while B_1 + ... + B_t <= T (--B1, --gamma, default 1/L)."""

    def __init__(self, T: int, B1: int, gamma: float) -> None:
        self.T, self.B1, self.gamma = T, B1, gamma

    @classmethod
    def check(cls, cfg: Config, n_workers: int) -> None:
        if cfg.B1 > cfg.T:
            raise InputError("B1", cfg.B1, f"must be <= T ({cfg.T}), or no round fits the budget")

    @classmethod
    def create(cls, setting: Setting) -> LinearGrowth:
        cfg = setting.cfg
        return cls(cfg.T, cfg.B1, setting.step("gamma", cfg.gamma, lambda L: 1.0 / L))

    @property
    def rounds(self) -> int:
        """The R with B1 R (R + 1) / 2 <= T (a step-size schedule such as cosine needs it)."""
        R = 0
        while self.B1 * (R + 1) * (R + 2) // 2 <= self.T:
            R += 1
        return R

    def run(self, workers: Workers, x0: np.ndarray, resume: State | None = None) -> np.ndarray:
        x = np.array(x0 if resume is None else resume["x"], dtype=workers.dtype)
        self.x, self.t, self.used = x, 1, 0
        self.opt = workers.optimizer(self.gamma, lambda: self.rounds)  # x - gamma g by default; momentum if asked
        if resume is not None:
            self.t, self.used = int(resume["t"]), int(resume["used"])
            self.opt.restore(resume, x)
        while self.used + self.B1 * self.t <= self.T:
            batch = self.B1 * self.t
            g = workers.average(workers.gradients(x, batch))  # every worker's mean gradient, averaged: one round
            self.opt.step(x, g, self.t)  # round t's step
            self.used, self.t = self.used + batch, self.t + 1
            workers.end_round(x)  # a checkpoint may be taken here: the state is that of the end of this round
        return x

    def state(self) -> State:
        return {"x": self.x.copy(), "t": self.t, "used": self.used, **self.opt.state()}
