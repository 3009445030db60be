"""How the job ends, owned by one object per process: who ends it, the trace's last words, failures, signals."""

from __future__ import annotations

import os
import sysconfig
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import signals
from .errors import AlgorithmError, InputError, Interrupted
from .outcome import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE, Outcome, say_ended
from .trace import TraceWriteError, TraceWriter

if TYPE_CHECKING:
    from .comm.base import Backend
    from .pipeline import TraceFlush


class Ending:
    """The end of the job on this process, decided once: the first to `claim` it (the main thread when the run is
    over or fails; under MPI the supervisor thread, on a signal, a failure report, a lost rank or a stall) ends the
    job, and nobody else marks the trace. The backend holds one from its start (`Backend.ending`: its supervisor is
    handed it); a Run `begin`s it, opens its trace through it and gives it the rows it records, so that whoever ends
    the job marks the trace with what the run has done."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.T = 0
        self.writer: TraceWriter | None = None
        self.rows: TraceFlush | None = None  # the rows the run records, once its round pipeline exists
        self._run = False  # a Run has begun: a mark goes to its trace
        self._claim = threading.Lock()
        self._trace_lock = threading.Lock()  # the supervisor marks the trace while the main thread may create it

    def claim(self) -> bool:
        """True for the first caller only: that caller (main thread or supervisor) ends the job."""
        return self._claim.acquire(blocking=False)

    def claimed(self) -> bool:
        """True once someone has claimed the ending."""
        return self._claim.locked()

    def begin(self, T: int) -> None:
        """A run of budget T starts: from now on a mark goes to its trace (before, it is the line only)."""
        self.T, self._run = T, True

    def open_trace(self, open_trace: Callable[[], TraceWriter]) -> None:
        """Create (or reopen) the trace by `open_trace` where no mark can come between: a trace that exists can be
        marked, whoever ends the job. Interrupted once the ending is claimed."""
        with self._trace_lock, signals.deferred_signals():
            if self.claimed():
                raise Interrupted("the job is ending")
            self.writer = open_trace()

    def record(self, rows: TraceFlush) -> None:
        """The run's rows: the trace's last words write them, and a mark names their last round."""
        self.rows = rows

    def path(self) -> Path | None:
        """The trace, once it exists."""
        return self.writer.path if self.writer is not None else None

    def mark(self, status: str, message: str, by_launcher: bool = False) -> None:
        """Rank 0, called once by whoever ends the job: mark the trace, say one line (straight to the user when the
        launcher, ending the job itself, no longer relays our output). Before a run begins, only the line."""
        if not self._run:
            say_ended(status, message, by_launcher)
            return
        with self._trace_lock:
            self._mark(status, message, by_launcher)

    def _mark(self, status: str, message: str, by_launcher: bool) -> None:
        if self.rows is not None and not message.startswith("rank "):
            message += f" (after round {self.rows.ledger.rounds})"
        where = ""
        try:
            note = self.finish(status, None, message)
            where = f"{note} ({self.writer.path} marked {status})" if self.writer is not None else note
        except TraceWriteError as exc:
            partial = self.writer.abandon() if self.writer is not None else None
            kept = f"what was written is kept in {partial}" if partial else "the file was left as it was"
            where = f" (the trace could not be marked {status}: {exc.reason}; {kept})"
        except Exception as exc:  # noqa: BLE001 - the line must still be said
            where = f" (could not mark the trace {status}: {type(exc).__name__}: {exc})"
        say_ended(status, f"{message.splitlines()[0]}{where}", by_launcher)

    def finish(self, status: str, x: np.ndarray | None, message: str | None) -> str:
        """Write the final status once; from here on the outcome is decided and signals are ignored. Returns a note
        when the last rounds could not be written (a full disk): the trace then keeps a prefix of the run."""
        signals.hold()
        try:
            return _last_words(self.writer, self.rows, self.T, status, x, message)
        finally:
            signals.ignore()

    def conclude(self, status: str, x: np.ndarray | None, message: str | None) -> None:
        """Every process, the run over alike on all of them (complete, or diverged): the processes' last meeting,
        then this process ends the job and finishes the trace (unless a supervisor has claimed the ending)."""
        self.backend.close()
        self.claim_or_wait()
        self.finish(status, x, message)

    def claim_or_wait(self) -> None:
        """The run is over on every process: take the ending (nobody else marks the trace now), unless a supervisor
        already has (a signal while the last collective completed): then its outcome stands."""
        if not self.claim():
            wait_for_the_end()

    def fail(self, exc: BaseException, out: Path | str | None) -> Outcome:
        """This process failed with `exc` (`out`: where the trace was to be): end the whole job, the trace saying
        why, unless someone else is ending it already."""
        status, code = _status_of(exc)
        ours = isinstance(exc, (TraceWriteError, InputError, AlgorithmError))
        where = _user_frame(exc, self.path() or out)
        message = str(exc) if ours else f"{type(exc).__name__}: {exc}{where}"
        # the trace keeps the traceback of the process that failed
        detail = "" if status == "interrupted" or ours else "\n" + traceback.format_exc()
        backend = self.backend
        if not self.claim():  # the supervisor is ending the job already
            wait_for_the_end()
        elif not backend.is_root:
            signals.ignore()  # rank 0's abort ends this process; rank 0 says the one line, naming this rank
            backend.report_failure(message + detail, status, code)
        else:
            self.mark(status, message + detail)
            if backend.name == "mpi" and backend.n_workers > 1:
                backend.abort(code)
        return Outcome(status, code, self.path(), message)


def _last_words(writer: TraceWriter | None, rows: TraceFlush | None, T: int, status: str, x: np.ndarray | None,
                message: str | None) -> str:
    """The trace's final write (Ending.finish): the rows still pending, then `status` with the run's counts and
    `message`; the note of Ending.finish."""
    note = ""
    if writer is not None:
        writer.last_words()
    if rows is not None:
        try:
            rows.flush()
        except TraceWriteError:
            if status == "complete":
                raise
            kept = rows.rounds_written
            note = (f"; rounds {kept + 1}-{rows.ledger.rounds} could not be written: "
                    f"the trace keeps rounds 1-{kept}")
    if writer is None:
        return note
    extra: dict[str, Any] = {}
    if rows is not None:
        led = rows.ledger
        extra = {"rounds_total": led.rounds, "sfo_per_worker": led.sfo, "unspent_sfo": T - led.sfo,
                 "bytes_per_rank": led.bytes, "wall_time": led.elapsed(), "eval_time": rows.evaluation.eval_time}
        if note:
            extra["rounds_written"] = rows.rounds_written
    if message:
        extra["message"] = message + note
    writer.finish(status, x, extra)
    return note


def wait_for_the_end() -> None:
    """Someone else is ending this process (the supervisor, or the launcher it is waiting for)."""
    signals.ignore()
    time.sleep(30.0)
    raise SystemExit(EXIT_FAILED)


def _status_of(exc: BaseException) -> tuple[str, int]:
    if isinstance(exc, InputError):
        return "failed", EXIT_USAGE
    if isinstance(exc, (Interrupted, KeyboardInterrupt)):
        return "interrupted", EXIT_INTERRUPTED
    if isinstance(exc, SystemExit):
        return "failed", exc.code if isinstance(exc.code, int) and exc.code else EXIT_FAILED
    return "failed", EXIT_FAILED


#: Where our package and the installed libraries live: frames outside them are the user's (a plug-in's).
_OURS = (str(Path(__file__).resolve().parent), sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["purelib"],
         sysconfig.get_paths()["platlib"])


def _user_frame(exc: BaseException, trace: Path | str | None) -> str:
    """' (at FILE:LINE in FUNC; ...)' for the innermost frame of the user's own code (a plug-in) in the
    traceback, and where the whole traceback is; '' when the failure is not in such code."""
    where = None
    tb = exc.__traceback__
    while tb is not None:
        name = tb.tb_frame.f_code.co_filename
        if not name.startswith("<") and not os.path.realpath(name).startswith(_OURS):
            where = (name, tb.tb_lineno, tb.tb_frame.f_code.co_name)
        tb = tb.tb_next
    if where is None:
        return ""
    full = f"python -m crpsgd_mpi.show {trace}" if trace is not None else "the trace"
    return f" (at {where[0]}:{where[1]} in {where[2]}; full traceback: {full})"
