"""Reference for the benchmark: the minimal hand-written mpi4py + numpy loop doing the simulator's rounds.

mpiexec -n N python benchmarks/raw_loop.py ALGO T BATCH_OR_RHO  -> prints the loop's wall time (rank 0)
Same data, same batches, same kernel; a blocking in-place Allgather and an ordered sum per round; no
ledger, no trace, no polling, no checks.
"""

from __future__ import annotations

import os
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import numpy as np  # noqa: E402
from mpi4py import MPI  # noqa: E402

from crpsgd_mpi.config import Config  # noqa: E402
from crpsgd_mpi.data import load  # noqa: E402
from crpsgd_mpi.problems import dense_minibatch_grads  # noqa: E402
from crpsgd_mpi.schedules import Constant, Geometric  # noqa: E402
from crpsgd_mpi.seeding import Stream, rng_for  # noqa: E402


def main() -> None:
    algo, T, param = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    comm = MPI.COMM_WORLD
    rank, N = comm.Get_rank(), comm.Get_size()
    shard = load(Config(), N, [rank]).shards[0]
    sched = Constant(int(param)) if algo == "psgd" else Geometric(1, param)
    batches = list(sched.within(T))
    rng = rng_for(0, Stream.SAMPLING, rank)
    d = shard.X.shape[1]
    x, g, gather, total = np.zeros(d), np.empty((1, d)), np.empty((N, d)), np.empty(d)
    comm.Barrier()
    t0 = time.perf_counter()
    for b in batches:
        idx = [rng.integers(0, shard.n)] if b == 1 else rng.integers(0, shard.n, size=b)
        dense_minibatch_grads(shard.X[idx][None], shard.y[idx][None], x[None], g)
        g[0] += 1e-3 * x
        gather[rank] = g[0]
        comm.Allgather(MPI.IN_PLACE, gather)
        np.sum(gather, axis=0, out=total)
        x -= 1.0 * total / N
    elapsed = time.perf_counter() - t0
    if rank == 0:
        print(f"{elapsed:.6f} {len(batches)}")


if __name__ == "__main__":
    main()
