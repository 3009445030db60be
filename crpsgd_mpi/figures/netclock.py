"""Measured compute time per SFO on this machine, and traces re-timed under the alpha-beta model."""

from __future__ import annotations

import time

import numpy as np

from ..netmodel import Network, modelled_times
from ..problems import dense_minibatch_grads
from ..trace import Trace


def measure_seconds_per_sfo(d: int, batch: int = 64, repeats: int = 200, seed: int = 0) -> float:
    """Median time of one worker's minibatch gradient (batch rows of d features) divided by batch."""
    rng = np.random.default_rng(seed)
    Xb = rng.standard_normal((1, batch, d))
    yb = rng.choice([-1.0, 1.0], (1, batch))
    x, out = rng.standard_normal((1, d)), np.empty((1, d))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        dense_minibatch_grads(Xb, yb, x, out)
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) / batch


def eval_times(tr: Trace, net: Network, seconds_per_sfo: float) -> np.ndarray:
    """Modelled time at each evaluation of a trace (0 for the start)."""
    t = modelled_times(tr.rounds["sfo"], tr.rounds["bytes"], int(tr.attrs["N"]), net, seconds_per_sfo)
    rounds = tr.evals["round"].to_numpy(np.int64)
    return np.where(rounds > 0, t[np.maximum(rounds - 1, 0)] if t.size else 0.0, 0.0)
