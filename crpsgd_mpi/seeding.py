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
    TEST_SUBSET = 8


def rng_for(seed: int, stream: Stream, *keys: int) -> np.random.Generator:
    """The generator for `stream` (and e.g. a worker id) under the seed root `seed`."""
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(int(stream), *map(int, keys))))


#: A PCG64 stream's exact position in uint64 words: state (2), increment (2), has_uint32, uinteger.
RNG_WORDS = 6
_MASK = (1 << 64) - 1


def rng_to_words(rng: np.random.Generator) -> np.ndarray:
    """The exact state of a PCG64 generator as RNG_WORDS uint64 (what a checkpoint stores)."""
    st = rng.bit_generator.state
    if st["bit_generator"] != "PCG64":
        raise TypeError(f"cannot save a {st['bit_generator']} stream")
    state, inc = st["state"]["state"], st["state"]["inc"]
    return np.array([state & _MASK, state >> 64, inc & _MASK, inc >> 64, st["has_uint32"], st["uinteger"]],
                    dtype=np.uint64)


def rng_from_words(rng: np.random.Generator, words: np.ndarray) -> None:
    """Set a PCG64 generator to the state `rng_to_words` saved."""
    w = [int(v) for v in words]
    rng.bit_generator.state = {"bit_generator": "PCG64", "state": {"state": w[0] | w[1] << 64, "inc": w[2] | w[3] << 64},
                               "has_uint32": w[4], "uinteger": w[5]}
