"""Exact accounting: SFO per worker, communication rounds and bytes, one row per round; evaluation plan."""

from __future__ import annotations

import time

import numpy as np

ROUND_COLUMNS = ("round", "sfo", "batch_size", "stage", "bytes", "wall_time")
EVAL_COLUMNS = ("round", "sfo", "loss", "grad_norm_sq", "suboptimality", "test_loss", "test_accuracy")


class Ledger:
    """Counts what the paper counts. Rows of finished rounds wait in `pending` until taken."""

    def __init__(self) -> None:
        self.sfo = 0
        self.rounds = 0
        self.bytes = 0
        self.stage = 0
        self.batch = 0
        self.start = time.perf_counter()
        self.excluded = 0.0
        self._pending: list[tuple[int, int, int, int, int, float]] = []

    def add_sfo(self, batch: int) -> None:
        """Each worker used one batch of `batch` stochastic gradients."""
        self.sfo += batch
        self.batch = batch

    def add_round(self, nbytes: int) -> None:
        """One communication round that moved `nbytes` of payload per rank."""
        self.rounds += 1
        self.bytes += nbytes
        self._pending.append((self.rounds, self.sfo, self.batch, self.stage, nbytes, self.elapsed()))

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
        if not rows:
            return {c: np.empty(0, dtype=np.float64 if c == "wall_time" else np.int64) for c in ROUND_COLUMNS}
        cols = list(zip(*rows))
        out = {c: np.asarray(v, dtype=np.int64) for c, v in zip(ROUND_COLUMNS[:-1], cols[:-1])}
        out["wall_time"] = np.asarray(cols[-1], dtype=np.float64)
        return out


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
