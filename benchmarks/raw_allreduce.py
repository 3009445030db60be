"""Reference for the benchmark: the smallest mpi4py loop of PSGD with B = 1 on logistic regression.

mpiexec -n N python benchmarks/raw_allreduce.py ROUNDS [D]  -> 'seconds rounds' of the loop (rank 0)
Each rank: one sample's gradient at d = D (default 123) features of its own random rows, one blocking float
Allreduce(SUM), one step. No ledger, no trace, no checks, no exact sum.
"""

import os
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import numpy as np  # noqa: E402
from mpi4py import MPI  # noqa: E402

comm = MPI.COMM_WORLD
rounds, d = int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 123
rng = np.random.default_rng(comm.rank)
X, y = rng.standard_normal((2000, d)) / np.sqrt(d), rng.choice([-1.0, 1.0], 2000)
x, g, total = np.zeros(d), np.empty(d), np.empty(d)
step, lam = 1.0 / comm.size, 1e-3
comm.Barrier()
t0 = time.perf_counter()
for _ in range(rounds):
    i = rng.integers(0, 2000)
    np.multiply(X[i], -y[i] / (1.0 + np.exp(y[i] * (X[i] @ x))), out=g)
    g += lam * x
    comm.Allreduce(g, total)
    x -= step * total
if comm.rank == 0:
    print(f"{time.perf_counter() - t0:.6f} {rounds}")
