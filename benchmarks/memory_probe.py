"""For the benchmark: run the simulator on this rank, then print 'rank peak_rss_bytes' (one line per rank).

mpiexec -n N python benchmarks/memory_probe.py [simulator options]
"""

from __future__ import annotations

import resource
import sys

from crpsgd_mpi.run import main

if __name__ == "__main__":
    code = main(sys.argv[1:])
    from mpi4py import MPI

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
    print(f"{MPI.COMM_WORLD.Get_rank()} {peak}", flush=True)
    sys.exit(code)
