"""SIGINT/SIGTERM/SIGHUP handling. In one process they become an `Interrupted` exception, held back while a trace
write is in progress. Under MPI they are blocked in every thread before MPI starts its own threads; while MPI starts,
the start guard takes them (one ends the rank with 130), then the supervisor thread, with `sigtimedwait`: it acts at
once even while the main thread sits in a long C call (Open MPI's launcher gives a rank 250 ms between SIGTERM and
SIGKILL), and it learns who sent the signal."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from .errors import Interrupted

HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_state = {"depth": 0, "pending": 0}


def _raise(signum: int, frame: FrameType | None) -> None:
    if _state["depth"] > 0:
        _state["pending"] = signum
        return
    raise Interrupted(f"signal {signal.Signals(signum).name}")


def install() -> None:
    """Route SIGINT, SIGTERM and SIGHUP to `Interrupted` (main thread only), nothing held back."""
    _state["depth"], _state["pending"] = 0, 0
    for sig in HANDLED:
        signal.signal(sig, _raise)


def block() -> None:
    """Block SIGINT/SIGTERM/SIGHUP in this thread and in every thread started from now on (call before MPI starts)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED)


def unblock() -> None:
    """Deliver SIGINT/SIGTERM/SIGHUP to the handlers again (pending ones now)."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED)


@contextmanager
def deferred_signals() -> Iterator[None]:
    """Inside: a signal is remembered, and raised as `Interrupted` on leaving."""
    _state["depth"] += 1
    try:
        yield
    finally:
        _state["depth"] -= 1
        if _state["depth"] == 0 and _state["pending"]:
            signum, _state["pending"] = _state["pending"], 0
            raise Interrupted(f"signal {signal.Signals(signum).name}")


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def ignore() -> None:
    """From now on SIGINT is ignored and SIGTERM or SIGHUP ends the process at once, silently (a process on its way
    out: nothing left to mark). No-op outside the main thread (the MPI supervisor ends its process itself)."""
    if not _main_thread():
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


def hold() -> None:
    """From now on signals are remembered, never raised: the process must finish marking the trace."""
    if _main_thread():
        _state["depth"] += 1
