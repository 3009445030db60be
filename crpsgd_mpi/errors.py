"""Exceptions shared by every layer: bad input (a trace that cannot be read among it), divergence, failures of peer
ranks, and how a run ended (API)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .trace import Trace


class InputError(ValueError):
    """Bad user input: reported as one line naming the field and the value, exit status 2. The value is shown by
    its repr; the field and the reason may echo a file (a TOML key, a parser's message), so any character that is
    not printable (a line break among them) is shown as '?': the message is one line whatever the input holds.
    `rank` is the MPI rank that found it when only some processes did."""

    #: set once the error has been said to the user (the command line then does not say it again)
    reported: bool = False

    def __init__(self, field: str, value: object, reason: str, rank: int | None = None) -> None:
        self.field = field
        self.value = value
        self.reason = reason
        self.rank = rank
        super().__init__(f"{_printable(field)}={value!r}: {_printable(reason)}")


class TraceError(InputError):
    """A file that `load_trace` cannot read as a trace (not HDF5, not a trace, or damaged): field 'trace', the path
    as the value, and what is wrong."""

    def __init__(self, path: object, reason: str) -> None:
        super().__init__("trace", str(path), reason)


def _printable(text: str) -> str:
    return "".join(ch if ch.isprintable() else "?" for ch in str(text))


class Interrupted(BaseException):
    """SIGINT, SIGTERM or SIGHUP arrived while running. Not an `Exception` (as KeyboardInterrupt is not): a handler
    that turns whatever a library raises into one line (a damaged file, a broken plug-in) must not turn a signal
    that arrived while it ran into bad input."""


class Diverged(ArithmeticError):
    """The iterate stopped being finite."""


class AlgorithmError(RuntimeError):
    """An algorithm (a plug-in's, typically) broke its contract, e.g. returned something that is not a point of the
    problem: the run ends `failed`, its message naming the algorithm and what was wrong."""


class RunFailed(RuntimeError):
    """`simulate`: the run did not complete. `status` is 'failed', 'interrupted' or 'diverged', `exit_code` what the
    command line would exit with, `trace` what was recorded (None if no trace was written)."""

    def __init__(self, status: str, message: str, exit_code: int, trace: Trace | None) -> None:
        self.status, self.exit_code, self.trace = status, exit_code, trace
        super().__init__(f"{status}: {message}")


class RunDiverged(RunFailed, ArithmeticError):
    """`simulate`: the iterate stopped being finite (lower the step size)."""


class RunInterrupted(RunFailed, KeyboardInterrupt):
    """`simulate`: SIGINT, SIGTERM or SIGHUP ended the run."""
