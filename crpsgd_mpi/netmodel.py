"""A modelled clock: alpha-beta cost of the Allreduce plus a compute time per SFO, applied to a trace."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike


class Network(NamedTuple):
    """Hockney alpha-beta model of one link."""

    name: str
    alpha: float  # latency per message, seconds
    beta: float  # seconds per byte (1 / bandwidth)


#: Two documented network classes (typical published figures, not measurements of ours).
ETHERNET_10G = Network("10 Gb Ethernet", alpha=25e-6, beta=1.0 / 1.25e9)
INFINIBAND_100G = Network("100 Gb InfiniBand", alpha=1.5e-6, beta=1.0 / 12.5e9)
NETWORKS = (ETHERNET_10G, INFINIBAND_100G)


def allreduce_time(nbytes: float, n: int, net: Network, algorithm: str = "ring") -> float:
    """Time of one Allreduce of `nbytes` per rank over n ranks.

    ring: reduce-scatter + allgather, 2(n-1) steps of nbytes/n each: 2(n-1) alpha + 2(n-1)/n nbytes beta.
    tree: binomial reduce then broadcast of the whole vector: 2 ceil(log2 n) (alpha + nbytes beta).
    One rank costs nothing.
    """
    if n <= 1:
        return 0.0
    if algorithm == "ring":
        return 2 * (n - 1) * net.alpha + 2 * (n - 1) / n * nbytes * net.beta
    if algorithm == "tree":
        return 2 * math.ceil(math.log2(n)) * (net.alpha + nbytes * net.beta)
    raise ValueError(f"unknown allreduce algorithm {algorithm!r}")


def modelled_times(sfo: ArrayLike, nbytes: ArrayLike, n: int, net: Network, seconds_per_sfo: float,
                   algorithm: str = "ring") -> np.ndarray:
    """Cumulative modelled time after each round: the round's SFO per worker (workers compute in
    parallel) times `seconds_per_sfo`, plus one Allreduce of the round's bytes."""
    sfo = np.asarray(sfo, dtype=np.float64)
    spent = np.diff(np.concatenate([[0.0], sfo]))
    comm = np.array([allreduce_time(float(b), n, net, algorithm) for b in np.asarray(nbytes)])
    return np.cumsum(spent * seconds_per_sfo + comm)
