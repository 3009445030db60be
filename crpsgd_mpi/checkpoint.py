"""Checkpoints: everything a run needs to go on exactly from the end of a round, taking them (pipeline.Checkpoints
says when), and how they are stored in the trace (group /checkpoint, written in the same atomic change as the rows it
matches), sealed by a digest and checked value by value before a resume touches the trace."""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np

from .algorithms.base import Algorithm, State, can_resume
from .ledger import EVAL_COLUMNS, EvalPlan, Ledger
from .outcome import say
from .pipeline import Evaluation, TraceFlush
from .seeding import RNG_WORDS, Stream, rng_for, rng_to_words
from .workers import Workers

#: Version of the /checkpoint group's layout. 2: sealed by `digest` (format 1, without one, is refused: it cannot
#: be verified, and a damaged checkpoint can make numpy spin or a resume go on from wrong counts).
CHECKPOINT_FORMAT = 2
#: The trace's attributes a resume reads that stay as they are while a run goes on: the checkpoint's digest covers
#: them. (`status` and `resumes` change when a run ends or is resumed; they are checked value by value.)
SEALED_ROOT_ATTRS = ("schema_version", "algorithm", "N", "T", "seed", "config", "run_config", "data_fingerprint",
                     "f_star")
#: The checkpoint's attributes besides its digest; `format` first.
CHECKPOINT_ATTRS = ("format", "ledger", "evals", "plan", "monitor")
LEDGER_KEYS = ("sfo", "rounds", "bytes", "stage", "batch", "elapsed")
#: The key of the algorithm's state under which the checkpoint keeps every worker's rows of `worker_state()`.
WORKER_ROWS = "workers"
MONITOR_KEYS = ("last_eval", "last_test", "eval_time", "n_evals")
#: The largest count a checkpoint may hold (HDF5's and numpy's int64).
_MAX_COUNT = 2**63 - 1


class DamagedCheckpoint(ValueError):
    """The checkpoint is not the one the run wrote, or holds values no run writes (the message says which)."""


class UnverifiableCheckpoint(ValueError):
    """The checkpoint was written by an earlier version, without a digest."""


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
    #: the cumulative SFO of the evaluations it matches (read from the rows by `read`; for `check_plan`)
    eval_sfo: np.ndarray | None = None
    #: `sealed_header` of the trace (the Checkpointer keeps it from one checkpoint to the next)
    header: bytes | None = None

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
        # of what is now in the file: the header (read once a run: it does not change while the run goes on) and this
        # group
        if self.header is None:
            self.header = sealed_header(g.file)
        g.attrs["digest"] = _fixed(digest(g, self.header))

    @classmethod
    def read(cls, g: h5py.Group, n_workers: int, seed: int) -> Checkpoint:
        """Read back and check, the trace untouched: UnverifiableCheckpoint for a checkpoint of an earlier format,
        DamagedCheckpoint unless its digest is that of what the file holds (the checkpoint, the header, the rows it
        ends on) and every value is one a run writes (`check_values`)."""
        try:
            fmt = _integer(g.attrs["format"], "its format")
            if fmt == 1 and "digest" not in g.attrs:
                raise UnverifiableCheckpoint(
                    "its checkpoint was written by an earlier version of crpsgd_mpi (format 1, without a digest) and "
                    "cannot be verified: run it again, or resume it with the version that wrote it")
            if fmt != CHECKPOINT_FORMAT:
                raise DamagedCheckpoint(f"its format is {fmt} (this version reads {CHECKPOINT_FORMAT})")
            held = digest(g).encode()  # first: it refuses links, before anything follows one
            sealed = g.attrs.get("digest")
            whole = isinstance(sealed, bytes) and hmac.compare_digest(sealed, held)
            try:
                point = cls._parse(g)
                point.check_values(g.file, n_workers, seed)
            except DamagedCheckpoint:
                raise
            except Exception as exc:  # noqa: BLE001 - whatever a damaged file makes h5py, numpy or json raise
                raise DamagedCheckpoint(f"{type(exc).__name__}: {exc}") from None
            if not whole:  # every value is plausible (else that was named), yet not what the run wrote
                raise DamagedCheckpoint("its digest does not match what it holds: the file was damaged or edited "
                                        "after the run wrote it")
            return point
        except (UnverifiableCheckpoint, DamagedCheckpoint):
            raise
        except Exception as exc:  # noqa: BLE001 - whatever a damaged file makes h5py, numpy or json raise
            raise DamagedCheckpoint(f"{type(exc).__name__}: {exc}") from None

    @classmethod
    def _parse(cls, g: h5py.Group) -> Checkpoint:
        return cls(json.loads(text_of(g.attrs["ledger"])), _integer(g.attrs["evals"], "evals"),
                   _integer(g.attrs["plan"], "plan"), json.loads(text_of(g.attrs["monitor"])),
                   _dataset(g, "rngs")[()], _dataset(g, "buffers")[()] if "buffers" in g else None,
                   read_state(_group(g, "algorithm")))

    def check_values(self, f: h5py.File, n_workers: int, seed: int) -> None:
        """DamagedCheckpoint unless every value is one a run of `n_workers` workers and this seed writes, and agrees
        with the rows of trace `f` it matches (checked whether or not the digest is right: a digest says the file
        is as written, not that what was written can be resumed)."""
        led, mon = self.ledger, self.monitor
        if not isinstance(led, dict) or sorted(led) != sorted(LEDGER_KEYS):
            raise DamagedCheckpoint(f"its ledger is not a record of {', '.join(LEDGER_KEYS)}")
        for key in LEDGER_KEYS[:-1]:
            _count(led[key], f"its ledger's {key}")
        if led["rounds"] < 1:
            raise DamagedCheckpoint("its ledger counts no round (a checkpoint is taken after one)")
        if not _number(led["elapsed"]) or not 0 <= led["elapsed"] < math.inf:
            raise DamagedCheckpoint(f"its ledger's elapsed time {led['elapsed']!r} is not a time")
        if not isinstance(mon, dict) or sorted(mon) != sorted(MONITOR_KEYS):
            raise DamagedCheckpoint(f"its monitor's state is not a record of {', '.join(MONITOR_KEYS)}")
        if mon["n_evals"] != self.evals or _count(self.evals, "evals") < 1:
            raise DamagedCheckpoint(f"it counts {self.evals!r} evaluations, its monitor {mon['n_evals']!r}")
        if not _number(mon["eval_time"]) or not 0 <= mon["eval_time"] < math.inf:
            raise DamagedCheckpoint(f"its monitor's eval_time {mon['eval_time']!r} is not a time")
        last = mon["last_eval"]
        if last is not None and not (isinstance(last, list) and len(last) == 7 and all(map(_number, last))):
            raise DamagedCheckpoint("its monitor's last evaluation is not an evaluation row")
        test = mon["last_test"]
        if test is not None and not (isinstance(test, list) and len(test) == 2 and all(map(_number, test))):
            raise DamagedCheckpoint("its monitor's last test is not a (loss, accuracy) pair")
        _count(self.plan, "its evaluation plan's position")
        self._check_rngs(n_workers, seed)
        if self.buffers is not None and (self.buffers.dtype.kind != "f" or not np.isfinite(self.buffers).all()):
            raise DamagedCheckpoint("its network statistics are not finite numbers")
        _check_state(self.algorithm, "algorithm")
        rows = self.algorithm.get(WORKER_ROWS)
        if rows is not None and (not isinstance(rows, dict) or not all(
                isinstance(v, np.ndarray) and v.ndim == 2 and v.shape[0] == n_workers for v in rows.values())):
            raise DamagedCheckpoint(f"its per-worker state is not one row for each of the {n_workers} workers")
        x = self.algorithm.get("x")
        if isinstance(x, np.ndarray) and x.dtype.kind == "f" and not np.isfinite(x).all():
            raise DamagedCheckpoint("its iterate is not finite (the run checks it after every round)")
        self._check_rows(f)

    def _check_rngs(self, n_workers: int, seed: int) -> None:
        rngs = self.rngs
        if rngs.shape != (n_workers, RNG_WORDS) or rngs.dtype != np.uint64:
            raise DamagedCheckpoint(f"its random streams have shape {rngs.shape} {rngs.dtype}, not ({n_workers}, "
                                    f"{RNG_WORDS}) uint64")
        for w, row in enumerate(rngs):
            # a PCG64 stream's increment is odd (an even one, zero above all, can make numpy's bounded draws loop
            # for ever) and fixed by its seed: worker w's is that of its stream under this seed
            want = rng_to_words(rng_for(seed, Stream.SAMPLING, w))
            if row[2] != want[2] or row[3] != want[3]:
                raise DamagedCheckpoint(f"worker {w}'s random stream is not the one of seed {seed} (its increment "
                                        "was changed)")
            if row[4] > 1 or row[5] >= 2**32:
                raise DamagedCheckpoint(f"worker {w}'s random stream holds a buffered value out of range")

    def _check_rows(self, f: h5py.File) -> None:
        """The rows the checkpoint matches: rounds 1..R, the ledger's counts at round R, the evaluations it counts
        (the last one its monitor's), all in the trace."""
        rounds, evals = self.rounds, self.evals
        have = _dataset(f, "rounds/round").shape[0]
        have_evals = _dataset(f, "evals/round").shape[0]
        if rounds > have or evals > have_evals:
            raise DamagedCheckpoint(f"it is ahead of its rows (round {rounds} and {evals} evaluations; the trace "
                                    f"holds {have} and {have_evals}): the file was edited")
        numbers = [_dataset(f, f"rounds/{c}")[:rounds] for c in ("round", "sfo", "batch_size", "stage", "bytes")]
        if any(a.shape != (rounds,) or a.dtype.kind not in "iu" for a in numbers):
            raise DamagedCheckpoint("the trace's round rows are not integer columns of one length")
        numbers = [a.astype(np.int64) for a in numbers]
        led = self.ledger
        if not np.array_equal(numbers[0], np.arange(1, rounds + 1)):
            raise DamagedCheckpoint("the trace's round rows are not rounds 1, 2, ... up to the checkpoint's")
        at_end = {"sfo": numbers[1][-1], "batch": numbers[2][-1], "stage": numbers[3][-1]}
        for key, value in at_end.items():
            if int(value) != led[key]:
                raise DamagedCheckpoint(f"its ledger's {key} {led[key]} is not that of round {rounds} in the rows "
                                        f"({int(value)})")
        if int(numbers[4].sum(dtype=np.int64)) != led["bytes"]:
            raise DamagedCheckpoint(f"its ledger's bytes {led['bytes']} are not the sum of the rows' up to round "
                                    f"{rounds}")
        ev_round = _dataset(f, "evals/round")[:evals]
        ev_sfo = _dataset(f, "evals/sfo")[:evals]
        if ev_round.shape != (evals,) or ev_sfo.shape != (evals,) or ev_round.dtype.kind not in "iu" \
                or ev_sfo.dtype.kind not in "iu":
            raise DamagedCheckpoint("the trace's evaluation rows are not integer columns of one length")
        if (np.diff(ev_round) < 0).any() or ev_round[0] < 0 or ev_round[-1] > rounds:
            raise DamagedCheckpoint(f"the evaluations it counts are not of rounds 0..{rounds} in order")
        last = self.monitor["last_eval"]
        if last is not None:
            row = [_dataset(f, f"evals/{c}")[evals - 1] for c in EVAL_COLUMNS]
            if not all(float(a) == float(b) or (math.isnan(float(a)) and math.isnan(float(b)))
                       for a, b in zip(row, last)):
                raise DamagedCheckpoint("its monitor's last evaluation is not the trace's last evaluation row")
        self.eval_sfo = ev_sfo.astype(np.int64)

    def check_plan(self, T: int, eval_points: int) -> None:
        """DamagedCheckpoint unless the evaluation plan's position and the counts fit a run of budget T with
        `eval_points` evaluations (known once the run's configuration is: after `read`)."""
        if self.ledger["sfo"] > T:
            raise DamagedCheckpoint(f"its ledger's sfo {self.ledger['sfo']} exceeds the run's budget T={T}")
        targets = EvalPlan(T, eval_points).targets
        reached = int(np.searchsorted(targets, self.ledger["sfo"], side="right"))
        # the plan moves on when an evaluation it asked for is made: its position is that of one recorded evaluation
        sfo = self.eval_sfo if self.eval_sfo is not None else np.zeros(0, dtype=np.int64)
        made = {0, *(int(p) for p in np.searchsorted(targets, sfo, side="right"))}
        if self.plan > reached or self.plan not in made:
            raise DamagedCheckpoint(f"its evaluation plan's position {self.plan} is not one this run reaches "
                                    f"(0..{reached}, at an evaluation)")

    def algorithm_state(self, workers: Workers) -> State:
        """The algorithm's state for `run(resume=)` on this process: its per-worker rows (`WORKER_ROWS`, (N, m) in
        the checkpoint) cut to this process's block of workers."""
        rows = self.algorithm.get(WORKER_ROWS)
        if not isinstance(rows, dict):
            return self.algorithm
        block = workers.backend.local_workers
        return {**self.algorithm, WORKER_ROWS: {k: v[block.start:block.stop] for k, v in rows.items()}}

    def restore(self, workers: Workers, ledger: Ledger, plan: EvalPlan, evaluation: Evaluation,
                trace: TraceFlush) -> None:
        """Put this process's part of the run back as it was (the algorithm takes `algorithm_state` itself)."""
        ledger.restore(self.ledger)
        plan.restore(self.plan)
        evaluation.restore(self.monitor)
        trace.rounds_written = self.rounds
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


def sealed_header(f: h5py.File) -> bytes:
    """The BLAKE2b of the trace's attributes that a checkpoint's digest covers (SEALED_ROOT_ATTRS)."""
    h = hashlib.blake2b(digest_size=32, person=b"crpsgd-head-2")
    root = f.attrs
    present = set(root)
    for key in SEALED_ROOT_ATTRS:
        _feed(h, "/@" + key, root[key] if key in present else None)
    return h.digest()


def digest(g: h5py.Group, header: bytes | None = None) -> str:
    """BLAKE2b (hex) of everything a resume reads from a trace through its checkpoint group g: every attribute (its
    digest aside) and dataset of g and of its subgroups (name, type, shape and bytes), and the trace's attributes
    that do not change while the run goes on (SEALED_ROOT_ATTRS; the rows it matches are checked against its counts
    by `check_values`). It reads what the file holds, so writing and checking hash the same bytes; it never raises
    for odd contents (a malformed ledger hashes as such), only for an unreadable file, or for a link in g (another
    file's data)."""
    h = hashlib.blake2b(digest_size=32, person=b"crpsgd-ckpt-2")
    _feed(h, "/", sealed_header(g.file) if header is None else header)
    _feed_group(h, g, "checkpoint")
    return h.hexdigest()


def _feed_group(h: Any, g: h5py.Group, path: str) -> None:
    for key, value in sorted(g.attrs.items()):
        if not (path == "checkpoint" and key == "digest"):
            _feed(h, f"{path}@{key}", value)
    for key in sorted(g):
        if not isinstance(g.get(key, getlink=True), h5py.HardLink):
            raise DamagedCheckpoint(f"{path}/{key} is a link (a checkpoint holds its data itself)")
        item = g[key]
        if isinstance(item, h5py.Group):
            _feed(h, f"{path}/{key}/", "group")
            _feed_group(h, item, f"{path}/{key}")
        else:
            _feed(h, f"{path}/{key}", item[()])


def _feed(h: Any, name: str, value: Any) -> None:
    """One named value into the hash, framed by lengths (no two different sequences give the same bytes)."""
    if value is None:
        data = b"n"
    elif isinstance(value, (bytes, str)):  # h5py gives str for variable-length strings, bytes for fixed ones
        data = b"t" + (value if isinstance(value, bytes) else value.encode("utf-8", "surrogatepass"))
    else:
        a = np.asarray(value)
        if a.dtype.hasobject:  # variable-length strings and the like: their values, not their pointers
            data = b"o" + repr(a.tolist()).encode("utf-8", "surrogatepass")
        else:
            data = b"a" + repr((a.dtype.descr, a.shape)).encode() + b"|" + np.ascontiguousarray(a).tobytes()
    for part in (name.encode("utf-8", "surrogatepass"), data):
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)


def _integer(value: Any, what: str) -> int:
    """An HDF5 integer attribute (a scalar of an integer type) as int; DamagedCheckpoint otherwise."""
    a = np.asarray(value)
    if a.shape != () or a.dtype.kind not in "iu":
        raise DamagedCheckpoint(f"{what} is not an integer ({value!r})")
    return int(a)


def _count(value: Any, what: str) -> int:
    """A JSON count: an int (not a bool) in 0..2^63-1."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value <= _MAX_COUNT:
        raise DamagedCheckpoint(f"{what} {value!r} is not a count")
    return int(value)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _dataset(g: h5py.Group, name: str) -> h5py.Dataset:
    item = _member(g, name)
    if not isinstance(item, h5py.Dataset):
        raise DamagedCheckpoint(f"{name} is missing or not a dataset")
    return item


def _group(g: h5py.Group, name: str) -> h5py.Group:
    item = _member(g, name)
    if not isinstance(item, h5py.Group):
        raise DamagedCheckpoint(f"{name} is missing or not a group")
    return item


def _member(g: h5py.Group, name: str) -> Any:
    """g[name] (a path of members), None if missing; DamagedCheckpoint where a link would lead elsewhere (another
    file: never opened)."""
    item: Any = g
    for part in name.split("/"):
        if not isinstance(item, h5py.Group) or part not in item:
            return None
        if not isinstance(item.get(part, getlink=True), h5py.HardLink):
            raise DamagedCheckpoint(f"{name} is a link (a trace holds its data itself)")
        item = item[part]
    return item


def _check_state(state: State, where: str) -> None:
    """An algorithm's state as `write_state` stores it: arrays of numbers, JSON values, nested."""
    for key, value in state.items():
        if isinstance(value, dict):
            _check_state(value, f"{where}/{key}")
        elif isinstance(value, np.ndarray) and value.dtype.kind not in "biuf":
            raise DamagedCheckpoint(f"{where}/{key} holds {value.dtype}, not numbers")


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
    """Takes checkpoints, on every process, when the `Checkpoints` hook of the round pipeline says one is due
    (`plan`: every so many rounds or seconds); only the process that writes the trace writes it. An algorithm that
    cannot be resumed (`state()` not implemented) gets none."""

    def __init__(self, plan: tuple[str, float] | None, workers: Workers, ledger: Ledger, evals: EvalPlan,
                 evaluation: Evaluation, trace: TraceFlush, algorithm: Algorithm) -> None:
        self.kind, self.every = plan if plan is not None and can_resume(type(algorithm)) else ("off", 0.0)
        self.workers, self.ledger, self.evals, self.algorithm = workers, ledger, evals, algorithm
        self.evaluation, self.trace = evaluation, trace
        self._storable = True
        self._header: bytes | None = None  # the trace's sealed attributes, hashed at the first checkpoint

    def take(self) -> None:
        """Every process: gather the workers' streams and the algorithm's per-worker state (`worker_state`); the
        writing process stores the checkpoint with every row recorded so far."""
        backend = self.workers.backend
        rngs = backend.allgather(self.workers.rng_words())
        rows = {name: backend.allgather(np.ascontiguousarray(a)) for name, a in
                sorted(self.algorithm.worker_state().items())}
        if self.trace.writer is None or not self._storable:  # nothing collective follows: rank 0 decides alone
            return
        buffers = self.workers.problem.buffers()
        try:
            state = self.algorithm.state()
            if state is None:
                raise ValueError("its state() returned None")
            if rows:
                if WORKER_ROWS in state:
                    raise ValueError(f"its state() uses the key {WORKER_ROWS!r}, which holds worker_state()")
                state = {**state, WORKER_ROWS: rows}
            check_storable(state)
        except (TypeError, ValueError) as exc:
            self._storable = False
            say(f"crpsgd_mpi: note: no checkpoints for this run, so it cannot be resumed: the algorithm's state "
                f"cannot be stored ({exc})")
            return
        # the flush writes every pending row with it: the checkpoint matches the rows in the file exactly
        point = Checkpoint(self.ledger.state(), self.evaluation.n_evals, self.evals.state(), self.evaluation.state(), rngs,
                           None if buffers is None else np.array(buffers[0]), state)
        point.header = self._header
        self.trace.flush(checkpoint=point.write)
        self._header = point.header


def check_storable(state: State) -> None:
    """TypeError or ValueError unless `write_state` can store `state`."""
    for key, value in state.items():
        _check_key(key)
        if isinstance(value, dict):
            check_storable(value)
        elif not isinstance(value, np.ndarray):
            json.dumps(value, default=_plain)
