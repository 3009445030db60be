"""The live progress line of a run on an interactive terminal (rank 0 only): round, SFO spent of T, batch size, last
loss and the time left estimated from the SFO rate; rate-limited so that it costs nothing per round."""

from __future__ import annotations

import time

from .ledger import Ledger


class Progress:
    """A tqdm bar over the SFO budget, refreshed at most every `interval` seconds; the clock is read once every
    `stride` rounds (adapted to the round rate), so a round costs one integer comparison."""

    def __init__(self, T: int, interval: float = 0.25) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=T, unit="SFO", dynamic_ncols=True, leave=True, mininterval=interval,
                        bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} SFO [{elapsed}<{remaining}{postfix}]")
        self.interval = interval
        self.loss = float("nan")
        self._next_round, self._stride, self._last = 0, 1, time.monotonic()

    def round(self, ledger: Ledger) -> None:
        """After every round."""
        if ledger.rounds < self._next_round:
            return
        now = time.monotonic()
        elapsed = now - self._last
        # aim for one clock read per interval: scale the stride by how far off this one was
        self._stride = max(1, min(1 << 20, int(self._stride * self.interval / max(elapsed, 1e-6))))
        self._next_round = ledger.rounds + self._stride
        if elapsed >= self.interval:
            self._last = now
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

    def close(self) -> None:
        """Leave the final line on the terminal."""
        try:
            self.bar.close()
        except (OSError, ValueError):
            pass
