"""Exceptions shared by every layer: bad input, divergence, failures of peer ranks."""

from __future__ import annotations


class InputError(ValueError):
    """Bad user input: reported as one line naming the field and the value, exit status 2. The value is shown by
    its repr; the field and the reason may echo a file (a TOML key, a parser's message), so any character that is
    not printable (a line break among them) is shown as '?': the message is one line whatever the input holds."""

    def __init__(self, field: str, value: object, reason: str) -> None:
        self.field = field
        self.value = value
        self.reason = reason
        super().__init__(f"{_printable(field)}={value!r}: {_printable(reason)}")


def _printable(text: str) -> str:
    return "".join(ch if ch.isprintable() else "?" for ch in str(text))


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived while running."""


class PeerFailure(RuntimeError):
    """Another rank reported an error; the message names the rank."""

    def __init__(self, rank: int, message: str, status: str, exit_code: int) -> None:
        self.rank = rank
        self.status = status
        self.exit_code = exit_code
        super().__init__(f"rank {rank}: {message}")


class Diverged(ArithmeticError):
    """The iterate stopped being finite."""
