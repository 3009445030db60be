"""Reference for the deep benchmark: the minimal hand-written loop of a data-parallel round of ResNet20.

mpiexec -n N python benchmarks/raw_torch_loop.py ROUNDS BATCH  -> rank 0 prints the loop's wall time and rounds
Per round: the same minibatch as the simulator's worker draws (its stream, its shard, the same network and FlatModel),
one torch forward/backward, one blocking mpi4py Allreduce of the flat float32 gradient, the step. No ledger, no trace,
no BatchNorm averaging, no checks.
"""

from __future__ import annotations

import os
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import numpy as np  # noqa: E402
from mpi4py import MPI  # noqa: E402

from crpsgd_mpi.config import Config  # noqa: E402
from crpsgd_mpi.problems import PROBLEMS  # noqa: E402
from crpsgd_mpi.seeding import Stream, rng_for  # noqa: E402


def main() -> None:
    rounds, batch = int(sys.argv[1]), int(sys.argv[2])
    comm = MPI.COMM_WORLD
    rank, N = comm.Get_rank(), comm.Get_size()
    cfg = Config(model="resnet20", dataset="fashion-mnist", gamma=0.1, regularizer="none")
    problem = PROBLEMS.get("resnet20")(cfg, N, range(rank, rank + 1))
    images, labels = problem.shards.train[0]
    flat, x = problem.flat, problem.initial_point()
    rng = rng_for(cfg.seed, Stream.SAMPLING, rank)
    comm.Barrier()
    t0 = time.perf_counter()
    for _ in range(rounds):
        idx = rng.integers(0, labels.size, size=batch)
        _, g = flat.loss_and_grad(x, images[idx], labels[idx])
        comm.Allreduce(MPI.IN_PLACE, g, op=MPI.SUM)
        x -= np.float32(cfg.gamma / N) * g
    elapsed = time.perf_counter() - t0
    if rank == 0:
        print(f"{elapsed:.6f} {rounds}")


if __name__ == "__main__":
    main()
