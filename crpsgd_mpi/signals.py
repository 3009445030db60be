"""SIGINT/SIGTERM handling. In one process they become an `Interrupted` exception, held back while a trace write is
in progress; under MPI they are routed to a file descriptor that the supervisor thread watches (it must act within
the launcher's 250 ms grace even while the main thread is inside a long C call)."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from .errors import Interrupted

HANDLED = (signal.SIGINT, signal.SIGTERM)
_state = {"depth": 0, "pending": 0}


def _raise(signum: int, frame: FrameType | None) -> None:
    if _state["depth"] > 0:
        _state["pending"] = signum
        return
    raise Interrupted(f"signal {signal.Signals(signum).name}")


def _note(signum: int, frame: FrameType | None) -> None:
    """Under MPI the supervisor acts on the signal (it reads it from the wakeup fd); the main thread does not."""


def install() -> None:
    """Route SIGINT and SIGTERM to `Interrupted` (main thread only)."""
    signal.set_wakeup_fd(-1)
    for sig in HANDLED:
        signal.signal(sig, _raise)


def route_to(fd: int) -> None:
    """From now on SIGINT/SIGTERM write their number to `fd` (non-blocking) and nothing else (main thread only)."""
    os.set_blocking(fd, False)
    for sig in HANDLED:
        signal.signal(sig, _note)
    signal.set_wakeup_fd(fd, warn_on_full_buffer=False)


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
    """From now on SIGINT is ignored and SIGTERM ends the process at once, silently (a process on its way out:
    nothing left to mark). No-op outside the main thread (the MPI supervisor ends its process itself)."""
    if not _main_thread():
        return
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def hold() -> None:
    """From now on signals are remembered, never raised: the process must finish marking the trace."""
    if _main_thread():
        _state["depth"] += 1
