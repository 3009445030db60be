"""Exceptions shared by every layer: bad input, divergence, failures of peer ranks."""

from __future__ import annotations


class InputError(ValueError):
    """Bad user input: reported as one line naming the field and the value, exit status 2."""

    def __init__(self, field: str, value: object, reason: str) -> None:
        self.field = field
        self.value = value
        self.reason = reason
        super().__init__(f"{field}={value!r}: {reason}")


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
