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
from .outcome import say
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
        """Store into group g, empty or holding the previous checkpoint (its datasets are overwritten in place when
        their shapes match: HDF5 never reuses the space of a deleted dataset, and a trace is copied on every write)."""
        write_state(g, {"rngs": self.rngs, **({"buffers": self.buffers} if self.buffers is not None else {}),
                        "algorithm": self.algorithm}, attrs={
            "format": CHECKPOINT_FORMAT, "ledger": _fixed(json.dumps(self.ledger)), "evals": self.evals,
            "plan": self.plan, "monitor": _fixed(json.dumps(self.monitor))})

    @classmethod
    def read(cls, g: h5py.Group, n_workers: int) -> Checkpoint:
        """Read back; ValueError saying what is missing or malformed."""
        try:
            fmt = int(g.attrs["format"])
            if fmt != CHECKPOINT_FORMAT:
                raise ValueError(f"format {fmt} (this version reads {CHECKPOINT_FORMAT})")
            ledger = json.loads(text_of(g.attrs["ledger"]))
            monitor = json.loads(text_of(g.attrs["monitor"]))
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


def write_state(g: h5py.Group, state: State, attrs: dict[str, Any] | None = None) -> None:
    """A nested state into group g: dicts as groups, arrays as datasets (rewritten in place where one of the same
    shape and type is there), everything else as JSON attributes; what g held that `state` lacks is removed.
    `attrs` are stored as they are."""
    for key in list(g.keys()):
        if key not in state or isinstance(g[key], h5py.Group) != isinstance(state[key], dict):
            del g[key]
    for key in list(g.attrs.keys()):
        if key not in state and key not in (attrs or {}):
            del g.attrs[key]
    for key, value in (attrs or {}).items():
        g.attrs[key] = value
    for key, value in state.items():
        _check_key(key)
        if isinstance(value, dict):
            write_state(g.require_group(key), value)
        elif isinstance(value, np.ndarray):
            old = g.get(key)
            if isinstance(old, h5py.Dataset) and old.shape == value.shape and old.dtype == value.dtype:
                old[...] = value
            else:
                if old is not None:
                    del g[key]
                g.create_dataset(key, data=value)
        else:
            if key in g:
                del g[key]
            g.attrs[key] = _fixed(json.dumps(value, default=_plain))


def _fixed(text: str) -> np.bytes_:
    """JSON as a fixed-length string attribute: rewriting a variable-length one leaks its old copy in the file's
    global heap (measured: ~4 KB a checkpoint), and a checkpoint is rewritten all along the run."""
    return np.bytes_(text.encode())


def read_state(g: h5py.Group) -> State:
    """The state `write_state` stored."""
    out: State = {key: json.loads(text_of(value)) for key, value in g.attrs.items()}
    for key, item in g.items():
        out[key] = read_state(item) if isinstance(item, h5py.Group) else item[()]
    return out


def _check_key(key: Any) -> None:
    if not isinstance(key, str) or not key or "/" in key or key in (".", ".."):
        raise ValueError(f"a state key must be a non-empty name without '/': {key!r}")


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot store a {type(value).__name__} in a checkpoint")


def text_of(value: Any) -> str:
    """An HDF5 string attribute as str (h5py gives bytes for fixed-length ones)."""
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
        self._next_round = ledger.rounds + int(self.every) if self.kind == "rounds" else 0
        self._period, self._count = 1, 0  # clock checks: every _period rounds
        self._since = time.monotonic()
        self._last_check = 0.0
        self._clock = np.zeros((workers.k, 1))
        self._storable = True

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
        if self.monitor.writer is None or not self._storable:  # nothing collective follows: rank 0 decides alone
            return
        buffers = self.workers.problem.buffers()
        try:
            state = self.algorithm.state()
            if state is None:
                raise ValueError("its state() returned None")
            check_storable(state)
        except (TypeError, ValueError) as exc:
            self._storable = False
            say(f"crpsgd_mpi: note: no checkpoints for this run, so it cannot be resumed: the algorithm's state "
                f"cannot be stored ({exc})")
            return
        # the flush writes every pending row with it: the checkpoint matches the rows in the file exactly
        point = Checkpoint(self.ledger.state(), self.monitor.n_evals, self.evals.state(), self.monitor.state(), rngs,
                           None if buffers is None else np.array(buffers[0]), state)
        self.monitor.flush(checkpoint=point.write)


def check_storable(state: State) -> None:
    """TypeError or ValueError unless `write_state` can store `state`."""
    for key, value in state.items():
        _check_key(key)
        if isinstance(value, dict):
            check_storable(value)
        elif not isinstance(value, np.ndarray):
            json.dumps(value, default=_plain)
