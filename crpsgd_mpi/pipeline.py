"""The round pipeline, run after each round by every process: add a hook class here, list it in session.Run._pipeline."""

from __future__ import annotations

import math
import os
import signal
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from .arith import dot
from .errors import Diverged
from .ledger import EVAL_COLUMNS, EvalPlan, Ledger
from .progress import Progress
from .signals import deferred_signals
from .trace import TraceWriter
from .workers import RoundHook, Workers

if TYPE_CHECKING:
    from .checkpoint import Checkpointer

#: With --checkpoint-every in seconds, the processes compare clocks (rank 0's is shared) about this often.
CLOCK_CHECK_SECONDS = 0.5

#: One evaluation row, in the order of EVAL_COLUMNS.
EvalRow = tuple[int, int, float, float, float, float, float]


class Pipeline:
    """What `Workers.end_round` calls after every round, on every process: each hook in turn, with the algorithm's
    consensus iterate and whether the round ended an outer stage (Catalyst's y_k). Every hook decides from counts
    only, so every process takes the same decisions; only the process holding the TraceWriter writes.

    The order is part of the guarantees: the divergence check comes before the iterate is evaluated, the evaluation
    before the flush that writes its row, the checkpoint after the flush (it matches every row written). A hook
    whose `idle` is true has nothing to do in this run and is left out: it costs nothing per round."""

    def __init__(self, hooks: Sequence[RoundHook]) -> None:
        self.hooks = tuple(h for h in hooks if not getattr(h, "idle", False))

    def __call__(self, x: np.ndarray, stage_end: bool) -> None:
        for hook in self.hooks:
            hook(x, stage_end)


class FaultInjection:
    """Fails the run after the round that --fault names, on the process holding the worker it names (a test of the
    failure paths): raises, or kills the process."""

    def __init__(self, fault: tuple[int, int, str] | None, local_workers: range, ledger: Ledger) -> None:
        self.fault = fault if fault is not None and fault[0] in local_workers else None
        self.ledger = ledger
        self.idle = self.fault is None

    def __call__(self, x: np.ndarray, stage_end: bool) -> None:
        if self.fault is not None and self.ledger.rounds == self.fault[1]:
            if self.fault[2] == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            raise RuntimeError(f"fault injected on worker {self.fault[0]} after round {self.fault[1]}")


class DivergenceGuard:
    """Ends the run as diverged once the iterate is not finite (before anything evaluates or writes it)."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def __call__(self, x: np.ndarray, stage_end: bool) -> None:
        # a finite sum means every entry is finite; only an overflowing sum needs the full check
        if not math.isfinite(np.add.reduce(x, axis=None)) and not np.isfinite(x).all():
            raise Diverged(f"iterate not finite after round {self.ledger.rounds}")


class Evaluation:
    """Evaluates the full objective at the planned points (EvalPlan) and at every end of an outer stage, and keeps
    the evaluation rows until the trace takes them; a round is evaluated once."""

    def __init__(self, workers: Workers, ledger: Ledger, plan: EvalPlan, f_star: float | None,
                 progress: Progress | None = None) -> None:
        self.workers, self.ledger, self.plan, self.f_star, self.progress = workers, ledger, plan, f_star, progress
        self._last_eval: EvalRow | None = None
        self.last_test: tuple[float, float] | None = None
        self.first_loss: float | None = None  # the start's (not known after a resume)
        self.eval_time = 0.0
        self.n_evals = 0  # evaluation rows recorded (written or pending)
        self._pending: list[EvalRow] = []

    def __call__(self, x: np.ndarray, stage_end: bool) -> None:
        if stage_end or self.plan.due(self.ledger.sfo):  # every end of an outer stage (Catalyst's y_k) is evaluated
            self.evaluate(x)

    def evaluate(self, x: np.ndarray) -> tuple[float, float]:
        """Evaluate f and ||grad f||^2 at x (once per round; NaN where the problem does not evaluate gradients), and
        the held-out test loss and accuracy where it has a test set; record them."""
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
        self._pending.append(row)
        self.n_evals += 1
        if not math.isfinite(loss):
            raise Diverged(f"objective not finite after round {self.ledger.rounds}")
        if self.progress is not None:
            self.progress.evaluated(loss)
        return loss, gn

    def take_rows(self) -> list[EvalRow]:
        """The evaluation rows recorded since the last call."""
        rows, self._pending = self._pending, []
        return rows

    def state(self) -> dict[str, Any]:
        """What a resume needs to evaluate as this run would (the last evaluation: a round is evaluated once); the
        checkpoint keeps it as its `monitor` record."""
        return {"last_eval": None if self._last_eval is None else list(self._last_eval),
                "last_test": None if self.last_test is None else list(self.last_test),
                "eval_time": self.eval_time, "n_evals": self.n_evals}

    def restore(self, state: dict[str, Any]) -> None:
        """Go on from `state` (a fresh Evaluation of the same run)."""
        last = state["last_eval"]
        if last is None:
            self._last_eval = None
        else:
            rounds, sfo, loss, gn, sub, test_loss, test_accuracy = last
            self._last_eval = (int(rounds), int(sfo), float(loss), float(gn), float(sub), float(test_loss),
                               float(test_accuracy))
        test = state["last_test"]
        self.last_test = None if test is None else (float(test[0]), float(test[1]))
        self.eval_time, self.n_evals = float(state["eval_time"]), int(state["n_evals"])


class ProgressLine:
    """Refreshes the live progress line (rank 0, on a terminal; nothing otherwise)."""

    def __init__(self, progress: Progress | None, ledger: Ledger) -> None:
        self.progress, self.ledger = progress, ledger
        self.idle = progress is None

    def __call__(self, x: np.ndarray, stage_end: bool) -> None:
        if self.progress is not None:
            self.progress.round(self.ledger)


class TraceFlush:
    """Writes the rows recorded so far (the ledger's round rows, then the evaluation's rows) into the trace once
    `flush_rows` round rows are pending or `flush_seconds` have passed since the last write; only the process
    holding the writer writes, the others drop their rows."""

    def __init__(self, ledger: Ledger, evaluation: Evaluation, writer: TraceWriter | None,
                 flush_rows: int = 1 << 20, flush_seconds: float = 2.0) -> None:
        self.ledger, self.evaluation, self.writer = ledger, evaluation, writer
        self.flush_rows, self.flush_seconds = flush_rows, flush_seconds
        self._min_flush_seconds = flush_seconds
        self._last_flush = time.monotonic()
        self.rounds_written = 0  # round rows in the trace
        self._rows: list[dict[str, np.ndarray]] = []  # taken from the ledger, not yet written
        self._evals: list[EvalRow] = []

    def __call__(self, x: np.ndarray, stage_end: bool) -> None:
        if self.ledger.n_pending >= self.flush_rows or (
                self.writer is not None and time.monotonic() - self._last_flush > self.flush_seconds):
            self.flush()

    def flush(self, checkpoint: Callable[[h5py.Group], None] | None = None) -> None:
        """Write pending round rows, then pending evaluations (rounds first: an eval row never
        refers to a round missing from the file), with `checkpoint` (which then matches every row recorded) in the
        same write. Rows a failed write could not take stay pending."""
        self._rows.append(self.ledger.take_rows())
        self._evals.extend(self.evaluation.take_rows())
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


class Checkpoints:
    """Takes a checkpoint (`Checkpointer.take`) when one is due: after every `every` rounds, or once `every` seconds
    of rank 0's clock have passed (rank 0's clock is shared in a small collective every K rounds, K adapted so that
    this happens about twice a second, so every process decides alike); never for a run that cannot be resumed."""

    def __init__(self, checkpointer: Checkpointer) -> None:
        self.take = checkpointer.take
        self.kind, self.every = checkpointer.kind, checkpointer.every
        self.idle = self.kind == "off"
        self.ledger, self.backend = checkpointer.ledger, checkpointer.workers.backend
        self._next_round = self.ledger.rounds + int(self.every) if self.kind == "rounds" else 0
        self._period, self._count = 1, 0  # clock checks: every _period rounds
        self._since = time.monotonic()
        self._last_check = 0.0
        self._clock = np.zeros((checkpointer.workers.k, 1))

    def __call__(self, x: np.ndarray, stage_end: bool) -> None:
        if self.kind == "rounds":
            if self.ledger.rounds >= self._next_round:
                self._next_round = self.ledger.rounds + int(self.every)
                self.take()
        elif self.kind == "seconds":
            self._count += 1
            if self._count < self._period:
                return
            self._count = 0
            if self.backend.is_root:
                self._clock[0, 0] = time.monotonic() - self._since
            waited = float(self.backend.sum(self._clock)[0])  # rank 0's reading, on every process
            step = max(waited - self._last_check, 1e-6)
            self._period = max(1, min(2 * self._period, int(self._period * CLOCK_CHECK_SECONDS / step)))
            self._last_check = waited
            if waited >= self.every:
                self.take()
                self._since, self._last_check = time.monotonic(), 0.0
