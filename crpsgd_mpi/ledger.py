"""Exact accounting: SFO per worker, communication rounds and bytes, one row per round; evaluation plan."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .config import DEFAULT_EVAL_POINTS

ROUND_COLUMNS = ("round", "sfo", "batch_size", "stage", "bytes", "wall_time", "gamma")
#: The round columns of floating-point numbers (the others are counts).
FLOAT_ROUND_COLUMNS = ("wall_time", "gamma")
EVAL_COLUMNS = ("round", "sfo", "loss", "grad_norm_sq", "suboptimality", "test_loss", "test_accuracy")


class Ledger:
    """Counts what the paper counts. Rows of finished rounds wait in `pending` until taken. Each row also records
    the round's step size, `step_size` itself or `step_size(round)` (set by `Workers.optimizer`; NaN for an
    algorithm that steps on its own)."""

    def __init__(self) -> None:
        self.sfo = 0
        self.rounds = 0
        self.bytes = 0
        self.stage = 0
        self.batch = 0
        self.start = time.perf_counter()
        self.excluded = 0.0
        self.step_size: float | Callable[[int], float] | None = None
        self._pending: list[tuple[int, int, int, int, int, float, float]] = []

    def add_sfo(self, batch: int) -> None:
        """Each worker used one batch of `batch` stochastic gradients."""
        self.sfo += batch
        self.batch = batch

    def add_round(self, nbytes: int) -> None:
        """One communication round that moved `nbytes` of payload per rank."""
        self.rounds += 1
        self.bytes += nbytes
        step = self.step_size
        gamma = math.nan if step is None else step(self.rounds) if callable(step) else float(step)
        self._pending.append((self.rounds, self.sfo, self.batch, self.stage, nbytes, self.elapsed(), gamma))

    def state(self) -> dict[str, float]:
        """The counts and the clock (for an exact resume)."""
        return {"sfo": self.sfo, "rounds": self.rounds, "bytes": self.bytes, "stage": self.stage, "batch": self.batch,
                "elapsed": self.elapsed()}

    def restore(self, state: dict[str, float]) -> None:
        """Go on from `state`: the counts as they were, the clock running on from its reading."""
        self.sfo, self.rounds, self.bytes = int(state["sfo"]), int(state["rounds"]), int(state["bytes"])
        self.stage, self.batch = int(state["stage"]), int(state["batch"])
        self.start, self.excluded = time.perf_counter() - float(state["elapsed"]), 0.0
        self._pending = []

    def restart_clock(self) -> None:
        """Start the wall clock now (after set-up)."""
        self.start = time.perf_counter()
        self.excluded = 0.0

    def exclude(self, seconds: float) -> None:
        """Take `seconds` (spent on instrumentation, e.g. evaluations) off the clock."""
        self.excluded += seconds

    def elapsed(self) -> float:
        """Seconds of algorithm time since the clock started (excluded time taken off)."""
        return time.perf_counter() - self.start - self.excluded

    @property
    def n_pending(self) -> int:
        """Rows not yet taken."""
        return len(self._pending)

    def take_rows(self) -> dict[str, np.ndarray]:
        """The pending round rows as columns; clears them."""
        rows = self._pending
        self._pending = []
        cols = list(zip(*rows)) if rows else [()] * len(ROUND_COLUMNS)
        return {c: np.asarray(v, dtype=np.float64 if c in FLOAT_ROUND_COLUMNS else np.int64)
                for c, v in zip(ROUND_COLUMNS, cols, strict=True)}


class EvalPlan:
    """When to evaluate the full objective: after the first round whose cumulative SFO per worker
    reaches each of `points` targets spaced geometrically in [1, T], plus at the start and the end."""

    def __init__(self, T: int, points: int) -> None:
        self.targets = np.unique(np.ceil(np.geomspace(1.0, float(T), points)).astype(np.int64))
        self._next = 0
        self._next_sfo = int(self.targets[0])

    def due(self, sfo: int) -> bool:
        """True (once) when `sfo` has reached the next target; skips every target reached."""
        if sfo < self._next_sfo:
            return False
        self._next = int(np.searchsorted(self.targets, sfo, side="right"))
        self._next_sfo = int(self.targets[self._next]) if self._next < self.targets.size else 2**63 - 1
        return True

    def state(self) -> int:
        """The next target's index (for an exact resume)."""
        return self._next

    def restore(self, position: int) -> None:
        """Go on from `position`."""
        self._next = int(position)
        self._next_sfo = int(self.targets[self._next]) if self._next < self.targets.size else 2**63 - 1


#: Networks: the evaluations a run plans by default may cost at most this share of its training work (T SFO per
#: worker x N workers); what the user sets is never changed. About 20% of the run's time at most (below).
EVAL_SHARE = 0.25
#: The cost of one evaluated sample (a forward pass in eval mode, 500 samples a batch), counted in SFO (a forward and
#: backward pass of a training minibatch). Measured on CPU, one thread, per sample: cnn 0.16 (B=1) to 0.56 (B=64) of
#: an SFO, resnet20 0.14 to 0.54; counted as 0.5, so the evaluations take at most EVAL_SHARE x 0.56 / 0.5 = 28% of
#: the training time (22% of the run), 15-20% at typical batch sizes.
EVAL_COST = 0.5
#: Networks: training samples an evaluation covers by default when the budget allows them.
DEFAULT_EVAL_SAMPLES = 10_000
#: Samples of each kind (training, test) per evaluation below which the default points shrink before the samples do.
MIN_EVAL_SAMPLES = 1000


@dataclass(frozen=True)
class EvalBudget:
    """A network run's evaluation settings: `eval_points` (the plan has at most eval_points + 1 evaluations, the
    start included), `eval_samples` training and `test_samples` test samples scored at each (counts above the data
    set's mean all of it)."""

    eval_points: int
    eval_samples: int
    test_samples: int

    def work(self, n_train: int, n_test: int) -> float:
        """The planned evaluation work in SFO: evaluations x samples scored x EVAL_COST."""
        scored = min(self.eval_samples, n_train) + min(self.test_samples, n_test)
        return (self.eval_points + 1) * scored * EVAL_COST


def evaluation_budget(T: int, n_workers: int, n_train: int, n_test: int, eval_points: int | None = None,
                      eval_samples: int | None = None, test_samples: int | None = None) -> EvalBudget:
    """The evaluation settings of a network run: the given ones as they are; the others by the rule (docs,
    "Deep networks"): the run may score A = EVAL_SHARE x T x N / EVAL_COST samples in all its evaluations.
    Defaults are 40 points, 10000 training samples (at most the training set), the whole test set. While they do
    not fit, first the samples shrink (down to MIN_EVAL_SAMPLES of each kind), then the points (down to 2), then the
    samples again (down to one per worker); each evaluation gets A / (points + 1), shared evenly between the
    training and test samples not given (what one cannot use goes to the other). Default training samples are a
    multiple of N (the same number on every worker). Only below about T = 12 can the floors exceed the share."""
    N = n_workers
    allowance = int(EVAL_SHARE * T * N / EVAL_COST)
    e0, t0 = min(DEFAULT_EVAL_SAMPLES, n_train), n_test
    e_want = e0 if eval_samples is None else min(eval_samples, n_train)
    t_want = t0 if test_samples is None else min(test_samples, n_test)
    points = eval_points
    if points is None:
        if (DEFAULT_EVAL_POINTS + 1) * (e_want + t_want) <= allowance:
            points = DEFAULT_EVAL_POINTS
        else:
            floor = (e_want if eval_samples is not None else min(e0, MIN_EVAL_SAMPLES)) + \
                    (t_want if test_samples is not None else min(t0, MIN_EVAL_SAMPLES))
            points = min(DEFAULT_EVAL_POINTS, max(2, allowance // floor - 1))
    free = allowance // (points + 1) - (0 if eval_samples is None else e_want) - (0 if test_samples is None else t_want)
    e, t = eval_samples, test_samples
    if e is None and t is None:
        t = min(t0, max(free - e0, free // 2))
        e = min(e0, free - t)
    elif e is None:
        e = min(e0, free)
    elif t is None:
        t = min(t0, free)
    assert e is not None and t is not None  # every branch above set the one not given
    if eval_samples is None:
        e = max(N, e // N * N)  # n_train >= N: a run has at least one training sample per worker
    if test_samples is None:
        t = max(min(N, t0), t, 1)
    return EvalBudget(points, int(e), int(t))
