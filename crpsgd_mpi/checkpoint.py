"""Checkpoints: everything a run needs to go on exactly from the end of a round, when they are taken, and how they
are stored in the trace (group /checkpoint, written in the same atomic change as the rows it matches)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np

from .algorithms.base import Algorithm, State
from .ledger import EvalPlan, Ledger
from .monitor import Monitor
from .seeding import RNG_WORDS
from .workers import Workers

#: Version of the /checkpoint group's layout.
CHECKPOINT_FORMAT = 1
#: With --checkpoint-every in seconds, the processes compare clocks (rank 0's is shared) about this often.
CLOCK_CHECK_SECONDS = 0.5


@dataclass
class Checkpoint:
    """The state of a run at the end of round `ledger['rounds']`; the trace then holds `evals` evaluation rows."""

    ledger: dict[str, float]
    evals: int
    plan: int
    monitor: dict[str, Any]
    rngs: np.ndarray  # (N, RNG_WORDS) uint64: every worker's sampling stream
    buffers: np.ndarray | None  # the problem's averaged per-worker state (the same on every worker after a round)
    algorithm: State

    @property
    def rounds(self) -> int:
        """Rounds done (= round rows the trace holds)."""
        return int(self.ledger["rounds"])

    def write(self, g: h5py.Group) -> None:
        """Store into an empty group."""
        g.attrs["format"] = CHECKPOINT_FORMAT
        g.attrs["ledger"] = json.dumps(self.ledger)
        g.attrs["evals"] = self.evals
        g.attrs["plan"] = self.plan
        g.attrs["monitor"] = json.dumps(self.monitor)
        g.create_dataset("rngs", data=self.rngs)
        if self.buffers is not None:
            g.create_dataset("buffers", data=self.buffers)
        write_state(g.create_group("algorithm"), self.algorithm)

    @classmethod
    def read(cls, g: h5py.Group, n_workers: int) -> Checkpoint:
        """Read back; ValueError saying what is missing or malformed."""
        try:
            fmt = int(g.attrs["format"])
            if fmt != CHECKPOINT_FORMAT:
                raise ValueError(f"format {fmt} (this version reads {CHECKPOINT_FORMAT})")
            ledger = json.loads(_text(g.attrs["ledger"]))
            monitor = json.loads(_text(g.attrs["monitor"]))
            keys = {"sfo", "rounds", "bytes", "stage", "batch", "elapsed"}
            if not isinstance(ledger, dict) or not keys <= set(ledger):
                raise ValueError("the ledger is incomplete")
            if not isinstance(monitor, dict) or not {"last_eval", "last_test", "eval_time", "n_evals"} <= set(monitor):
                raise ValueError("the monitor's state is incomplete")
            rngs = g["rngs"][()]
            if rngs.shape != (n_workers, RNG_WORDS) or rngs.dtype != np.uint64:
                raise ValueError(f"the random streams have shape {rngs.shape} {rngs.dtype}, not ({n_workers}, "
                                 f"{RNG_WORDS}) uint64")
            buffers = g["buffers"][()] if "buffers" in g else None
            return cls(ledger, int(g.attrs["evals"]), int(g.attrs["plan"]), monitor, rngs, buffers,
                       read_state(g["algorithm"]))
        except (KeyError, TypeError, json.JSONDecodeError, OSError) as exc:
            raise ValueError(f"{type(exc).__name__}: {exc}") from None

    def restore(self, workers: Workers, ledger: Ledger, plan: EvalPlan, monitor: Monitor) -> None:
        """Put this process's part of the run back as it was (the algorithm takes `algorithm` itself)."""
        ledger.restore(self.ledger)
        plan.restore(self.plan)
        monitor.restore(self.monitor)
        monitor.rounds_written = self.rounds
        workers.set_rng_words(self.rngs[workers.backend.local_workers.start:workers.backend.local_workers.stop])
        if self.buffers is not None:
            workers.problem.set_buffers(self.buffers)


def write_state(g: h5py.Group, state: State) -> None:
    """A nested state into group g: dicts as groups, arrays as datasets, everything else as JSON attributes."""
    for key, value in state.items():
        if not isinstance(key, str) or not key or "/" in key or key in (".", ".."):
            raise ValueError(f"a state key must be a non-empty name without '/': {key!r}")
        if isinstance(value, dict):
            write_state(g.create_group(key), value)
        elif isinstance(value, np.ndarray):
            g.create_dataset(key, data=value)
        else:
            g.attrs[key] = json.dumps(value, default=_plain)


def read_state(g: h5py.Group) -> State:
    """The state `write_state` stored."""
    out: State = {key: json.loads(_text(value)) for key, value in g.attrs.items()}
    for key, item in g.items():
        out[key] = read_state(item) if isinstance(item, h5py.Group) else item[()]
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot store a {type(value).__name__} in a checkpoint")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Checkpointer:
    """Takes a checkpoint after every `every` rounds, or once `every` seconds of rank 0's clock have passed (rank 0's
    clock is shared in a small collective every K rounds, K adapted so that this happens about twice a second, so
    every process decides alike). Called by the monitor after each round, on every process; only the process that
    writes the trace writes it. An algorithm that cannot be resumed (`state()` not implemented) gets none."""

    def __init__(self, plan: tuple[str, float] | None, workers: Workers, ledger: Ledger, evals: EvalPlan,
                 monitor: Monitor, algorithm: Algorithm) -> None:
        resumable = getattr(type(algorithm), "state", Algorithm.state) is not Algorithm.state
        self.kind, self.every = plan if plan is not None and resumable else ("off", 0.0)
        self.workers, self.ledger, self.evals, self.monitor, self.algorithm = workers, ledger, evals, monitor, algorithm
        self.taken = 0
        self._next_round = ledger.rounds + int(self.every) if self.kind == "rounds" else 0
        self._period, self._count = 1, 0  # clock checks: every _period rounds
        self._since = time.monotonic()
        self._last_check = 0.0
        self._clock = np.zeros((workers.k, 1))

    def after_round(self) -> None:
        """Take a checkpoint if one is due."""
        if self.kind == "rounds":
            if self.ledger.rounds >= self._next_round:
                self._next_round = self.ledger.rounds + int(self.every)
                self.take()
        elif self.kind == "seconds":
            self._count += 1
            if self._count < self._period:
                return
            self._count = 0
            if self.workers.backend.is_root:
                self._clock[0, 0] = time.monotonic() - self._since
            waited = float(self.workers.backend.sum(self._clock)[0])  # rank 0's reading, on every process
            step = max(waited - self._last_check, 1e-6)
            self._period = max(1, min(2 * self._period, int(self._period * CLOCK_CHECK_SECONDS / step)))
            self._last_check = waited
            if waited >= self.every:
                self.take()
                self._since, self._last_check = time.monotonic(), 0.0

    def take(self) -> None:
        """Every process: gather the workers' streams; the writing process stores the checkpoint with every row
        recorded so far."""
        rngs = self.workers.backend.allgather(self.workers.rng_words())
        if self.monitor.writer is None:
            return
        buffers = self.workers.problem.buffers()
        state = self.algorithm.state()
        assert state is not None
        # the flush writes every pending row with it: the checkpoint matches the rows in the file exactly
        point = Checkpoint(self.ledger.state(), self.monitor.n_evals, self.evals.state(), self.monitor.state(), rngs,
                           None if buffers is None else np.array(buffers[0]), state)
        self.monitor.flush(checkpoint=point.write)
        self.taken += 1
