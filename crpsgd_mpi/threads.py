"""One BLAS thread per process, set before numpy loads BLAS: with several ranks per core, more threads
only compete (measured: 9-12x slower at N=10 with 2 threads per rank on 2 cores)."""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
