"""SIGINT/SIGTERM become an `Interrupted` exception, held back while a trace write is in progress."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from .errors import Interrupted

_state = {"depth": 0, "pending": 0}


def _handler(signum: int, frame: FrameType | None) -> None:
    if _state["depth"] > 0:
        _state["pending"] = signum
        return
    raise Interrupted(f"signal {signal.Signals(signum).name}")


def install() -> None:
    """Route SIGINT and SIGTERM to `Interrupted` (main thread only)."""
    signal.signal(signal.SIGINT, _handler)
    signal.signal(signal.SIGTERM, _handler)


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


def ignore() -> None:
    """From now on SIGINT is ignored and SIGTERM ends the process at once (a process on its way out)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def hold() -> None:
    """From now on signals are remembered, never raised: the root must finish marking the trace."""
    _state["depth"] += 1
