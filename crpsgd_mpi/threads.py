"""One BLAS thread per process, set before numpy loads BLAS: faster with many ranks per core, and the
evaluations (BLAS matrix-vector products) then sum in the same order in every process."""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
