"""One seed root, independent named streams derived from it; no global RNG state anywhere."""

from __future__ import annotations

from enum import IntEnum

import numpy as np


class Stream(IntEnum):
    """Purposes of random streams; each (seed, purpose, keys...) gives an independent generator."""

    SHUFFLE = 1
    SAMPLING = 2
    POWER_ITERATION = 3
    SYNTHETIC_WEIGHTS = 4
    SYNTHETIC_ROWS = 5
    INIT = 6
    STRAGGLERS = 7


def rng_for(seed: int, stream: Stream, *keys: int) -> np.random.Generator:
    """The generator for `stream` (and e.g. a worker id) under the seed root `seed`."""
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(int(stream), *map(int, keys))))
