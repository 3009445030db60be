"""What waiting ranks cost the ranks that work, and how long a small collective takes, per MPI and wait mode.

mpiexec -n N python benchmarks/wait_cost.py busy MODE [SPIN POLL MAX]: rank 0's seconds (median, min, max of 5) for a
    fixed amount of work (~0.5-1 s on a free core) while the other N-1 ranks wait for it in an Iallgather
mpiexec -n N python benchmarks/wait_cost.py small MODE [SPIN POLL MAX]: median and quartiles (us) of 2000 small
    Iallgathers (51 doubles per rank), every rank waiting
MODE: `sleep` (Test, then 10 ms of sleep: next to no CPU, the ideal for the busy case); `blocking`
(Request.Wait); `sim` (the simulator's MPIBackend wait: blocking under Open MPI, else Test + sched_yield, then
Test + sleep); `poll` (the simulator's polling wait whatever the MPI). SPIN, POLL, MAX: MPIBackend's spin_seconds,
poll_sleep and max_sleep (default: its own choice).
"""

from __future__ import annotations

import os
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import numpy as np  # noqa: E402

from crpsgd_mpi.comm.mpi import MPIBackend  # noqa: E402

WORK = 12_000_000  # iterations of the busy loop: about 1 s on one free core here


def busy() -> None:
    x = 0
    for i in range(WORK):
        x += i
    if x < 0:
        print(x)


def main() -> None:
    what, mode = sys.argv[1], sys.argv[2]
    names = ("spin_seconds", "poll_sleep", "max_sleep")
    kwargs = {name: float(v) for name, v in zip(names, sys.argv[3:])}
    be = MPIBackend(**kwargs)
    if mode == "poll":
        be._blocking_wait = False
    comm, rank, n = be.comm, be.rank, be.n_workers
    MPI = be.MPI
    out = np.zeros((n, 51))

    def wait(req: MPI.Request) -> None:
        if mode == "blocking":
            req.Wait()
        elif mode == "sleep":
            while not req.Test():
                time.sleep(0.01)
        else:
            be._wait(req)

    if what == "busy":
        times = []
        for _ in range(5):
            comm.Barrier()
            if rank == 0:
                t0 = time.perf_counter()
                busy()
                times.append(time.perf_counter() - t0)
                wait(comm.Iallgather(MPI.IN_PLACE, out))
            else:
                wait(comm.Iallgather(MPI.IN_PLACE, out))
        if rank == 0:
            print(f"{np.median(times):.4f} {min(times):.4f} {max(times):.4f}")
    else:
        lat = np.empty(2000)
        for i in range(-200, lat.size):
            t0 = time.perf_counter()
            wait(comm.Iallgather(MPI.IN_PLACE, out))
            if i >= 0:
                lat[i] = time.perf_counter() - t0
        if rank == 0:
            q1, med, q3 = np.percentile(lat, [25, 50, 75]) * 1e6
            print(f"{med:.1f} {q1:.1f} {q3:.1f}")
    be.close()


if __name__ == "__main__":
    main()
