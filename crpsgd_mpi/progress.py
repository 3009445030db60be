"""The live progress line of a run on an interactive terminal (rank 0 only): round, SFO spent of T, batch size, last
loss and the time left estimated from the SFO rate; rate-limited so that it costs nothing per round."""

from __future__ import annotations

import os
import sys
import time
from typing import TextIO

from .ledger import Ledger


def _size() -> tuple[int, int]:
    """The terminal's (width, height); 100 x 24 where it reports none (a pseudo-terminal without a size, as
    `script` gives: tqdm would then draw a bar of no width, and hide a bar below a screen of no height)."""
    try:
        size = os.get_terminal_size(sys.stderr.fileno())
        columns, lines = size.columns, size.lines
    except (OSError, ValueError, AttributeError):
        columns, lines = 0, 0
    return (columns if columns >= 40 else 100), (lines if lines >= 2 else 24)


class Progress:
    """A tqdm bar over the SFO budget, refreshed at most every `interval` seconds; the clock is read once every
    `_next_round` (a stride of rounds adapted to the round rate), so a round costs one integer comparison."""

    def __init__(self, T: int, interval: float = 0.25, file: TextIO | None = None) -> None:
        from tqdm import tqdm

        columns, lines = _size()
        self.bar = tqdm(total=T, unit="SFO", ncols=columns, nrows=lines, leave=True, mininterval=interval, file=file,
                        bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} SFO [{elapsed}<{remaining}{postfix}]")
        self.interval = interval
        self.loss = float("nan")
        self._next_round = 0
        self._checked_at, self._checked_round = time.monotonic(), 0
        self._shown_at = self._checked_at

    def round(self, ledger: Ledger) -> None:
        """After every round."""
        if ledger.rounds < self._next_round:
            return
        now = time.monotonic()
        rate = (ledger.rounds - self._checked_round) / max(now - self._checked_at, 1e-9)
        self._checked_at, self._checked_round = now, ledger.rounds
        # the next clock read about a quarter of an interval from now, at the rate just seen
        self._next_round = ledger.rounds + max(1, min(1 << 20, int(rate * self.interval / 4)))
        if now - self._shown_at >= self.interval:
            self._shown_at = now
            self._show(ledger)

    def evaluated(self, loss: float) -> None:
        """After every evaluation of the full objective."""
        self.loss = loss

    def _show(self, ledger: Ledger) -> None:
        self.bar.n = ledger.sfo
        self.bar.set_postfix_str(f"round {ledger.rounds}, batch {ledger.batch}, loss {self.loss:.6g}", refresh=False)
        try:
            self.bar.refresh()
        except (OSError, ValueError):  # a terminal that went away costs the line, not the run
            self._next_round = 1 << 62

    def close(self, ledger: Ledger) -> None:
        """Leave the final line on the terminal."""
        try:
            self._show(ledger)
            self.bar.close()
        except (OSError, ValueError):
            pass
