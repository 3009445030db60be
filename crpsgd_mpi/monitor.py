"""Watches the run after every round: evaluations at planned points, divergence, buffered trace writes."""

from __future__ import annotations

import math
import os
import signal
import time
from collections.abc import Callable
from typing import Any

import h5py
import numpy as np

from .arith import dot
from .errors import Diverged
from .ledger import EVAL_COLUMNS, EvalPlan, Ledger
from .progress import Progress
from .signals import deferred_signals
from .trace import TraceWriter
from .workers import Workers


class Monitor:
    """Called by Workers.end_round on every process (decisions depend only on counts, so every
    process takes the same ones); only the process holding a TraceWriter writes."""

    def __init__(self, workers: Workers, ledger: Ledger, plan: EvalPlan, writer: TraceWriter | None,
                 f_star: float | None, fault: tuple[int, int, str] | None = None, progress: Progress | None = None,
                 flush_rows: int = 1 << 20, flush_seconds: float = 2.0) -> None:
        self.workers, self.ledger, self.plan, self.writer = workers, ledger, plan, writer
        self.f_star = f_star
        self.progress = progress
        self.fault = fault if fault is not None and fault[0] in workers.backend.local_workers else None
        self.flush_rows, self.flush_seconds = flush_rows, flush_seconds
        self._min_flush_seconds = flush_seconds
        self._last_flush = time.monotonic()
        self._last_eval: tuple[int, int, float, float, float, float, float] | None = None
        self.last_test: tuple[float, float] | None = None
        self.first_loss: float | None = None  # the start's (not known after a resume)
        self.eval_time = 0.0
        self.n_evals = 0  # evaluation rows recorded (written or pending)
        self.rounds_written = 0  # round rows in the trace
        self.after_round: Callable[[], None] | None = None  # the checkpointer
        self._pending_evals: list[tuple[int, int, float, float, float, float, float]] = []
        self._rows: list[dict[str, np.ndarray]] = []  # taken from the ledger, not yet written
        self._evals: list[tuple[int, int, float, float, float, float, float]] = []

    def __call__(self, x: np.ndarray, stage_end: bool) -> None:
        if self.fault is not None and self.ledger.rounds == self.fault[1]:
            if self.fault[2] == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            raise RuntimeError(f"fault injected on worker {self.fault[0]} after round {self.fault[1]}")
        # a finite sum means every entry is finite; only an overflowing sum needs the full check
        if not math.isfinite(np.add.reduce(x, axis=None)) and not np.isfinite(x).all():
            raise Diverged(f"iterate not finite after round {self.ledger.rounds}")
        if stage_end or self.plan.due(self.ledger.sfo):  # every end of an outer stage (Catalyst's y_k) is evaluated
            self.evaluate(x)
        if self.progress is not None:
            self.progress.round(self.ledger)
        if self.ledger.n_pending >= self.flush_rows or (
                self.writer is not None and time.monotonic() - self._last_flush > self.flush_seconds):
            self.flush()
        if self.after_round is not None:
            self.after_round()

    def evaluate(self, x: np.ndarray) -> tuple[float, float]:
        """Evaluate f and ||grad f||^2 at x (once per round; NaN where the problem does not evaluate gradients), and
        the held-out test loss and accuracy where it has a test set; record and write them."""
        if self._last_eval is not None and self._last_eval[0] == self.ledger.rounds:
            return self._last_eval[2], self._last_eval[3]
        t0 = time.perf_counter()
        loss, grad = self.workers.objective(x)
        self.last_test = self.workers.test_metrics(x)
        spent = time.perf_counter() - t0
        self.eval_time += spent
        self.ledger.exclude(spent)
        gn = dot(grad, grad) if grad is not None else math.nan
        sub = loss - self.f_star if self.f_star is not None else math.nan
        test_loss, test_accuracy = self.last_test if self.last_test is not None else (math.nan, math.nan)
        row = (self.ledger.rounds, self.ledger.sfo, loss, gn, sub, test_loss, test_accuracy)
        if self.ledger.rounds == 0 and self.first_loss is None:
            self.first_loss = loss
        self._last_eval = row
        self._pending_evals.append(row)
        self.n_evals += 1
        if not math.isfinite(loss):
            raise Diverged(f"objective not finite after round {self.ledger.rounds}")
        if self.progress is not None:
            self.progress.evaluated(loss)
        return loss, gn

    def state(self) -> dict[str, Any]:
        """What a resume needs to evaluate as this run would (the last evaluation: a round is evaluated once)."""
        return {"last_eval": None if self._last_eval is None else list(self._last_eval),
                "last_test": None if self.last_test is None else list(self.last_test),
                "eval_time": self.eval_time, "n_evals": self.n_evals}

    def restore(self, state: dict[str, Any]) -> None:
        """Go on from `state` (a fresh monitor of the same run)."""
        last = state["last_eval"]
        self._last_eval = None if last is None else (int(last[0]), int(last[1]), *map(float, last[2:]))
        test = state["last_test"]
        self.last_test = None if test is None else (float(test[0]), float(test[1]))
        self.eval_time, self.n_evals = float(state["eval_time"]), int(state["n_evals"])

    def flush(self, checkpoint: Callable[[h5py.Group], None] | None = None) -> None:
        """Write pending round rows, then pending evaluations (rounds first: an eval row never
        refers to a round missing from the file), with `checkpoint` (which then matches every row recorded) in the
        same write. Rows a failed write could not take stay pending."""
        self._rows.append(self.ledger.take_rows())
        evals, self._pending_evals = self._pending_evals, []
        self._evals.extend(evals)
        if self.writer is None:
            self._rows, self._evals = [], []
            return
        t0 = time.perf_counter()
        groups: dict[str, dict[str, np.ndarray]] = {
            "rounds": {c: np.concatenate([r[c] for r in self._rows]) for c in self._rows[0]}}
        if self._evals:
            cols = list(zip(*self._evals))
            groups["evals"] = {c: np.asarray(v, dtype=np.int64 if c in ("round", "sfo") else np.float64)
                               for c, v in zip(EVAL_COLUMNS, cols, strict=True)}
        with deferred_signals():
            self.writer.append_groups(groups, checkpoint)  # one write; rounds first
        self.rounds_written += len(groups["rounds"]["round"])
        self._rows, self._evals = [], []
        self._last_flush = time.monotonic()
        spent = time.perf_counter() - t0
        # every write copies the trace (see TraceWriter): a long trace is written less often, so that writing never
        # takes more than a twentieth of the run
        self.flush_seconds = max(self._min_flush_seconds, 20 * spent)
        self.ledger.exclude(spent)  # trace I/O is instrumentation, not algorithm time
