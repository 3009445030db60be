"""MPI backend: a contiguous block of the N workers on each rank, buffer-based non-blocking collectives (the exact
sum by default), and a supervisor so that no job hangs."""

from __future__ import annotations

import ctypes
import os
import socket
import time
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np

from ..errors import InputError
from ..launchers import launcher_name, rank_from_env
from .base import Backend
from .exact import GATHER_ELEMENTS, ExactSum, exact_for, implementation
from .local import ordered_sum
from .supervisor import TAG_FAIL, Heartbeat, Peer, StartGuard, Supervisor, host_id

if TYPE_CHECKING:
    from mpi4py import MPI

_PEER_BYTES = 256
#: The least time MPI is given to start on every rank (seconds) when a stall timeout is set: a short stall timeout
#: is meant for rounds, and ten ranks sharing two cores take seconds to start.
START_FLOOR = 60.0


def start_mpi() -> Any:
    """mpi4py's MPI module with MPI started as mpi4py starts it (MPI_THREAD_MULTIPLE, errors raised as exceptions,
    finalized at exit), but through ctypes, which lets go of the GIL: while MPI_Init waits for the other ranks, the
    start guard (a Python thread) can still take a signal. mpi4py's own start, at import, holds the GIL throughout."""
    import mpi4py

    mpi4py.rc.initialize = False
    mpi4py.rc.finalize = True
    from mpi4py import MPI

    if not MPI.Is_initialized():  # imported and started before us (a caller of the API that uses mpi4py itself)
        provided = ctypes.c_int(-1)
        code = ctypes.CDLL(MPI.__file__).MPI_Init_thread(None, None, ctypes.c_int(MPI.THREAD_MULTIPLE),
                                                         ctypes.byref(provided))
        if code != 0:
            raise RuntimeError(f"MPI_Init_thread failed with error code {code}")
        for comm in (MPI.COMM_SELF, MPI.COMM_WORLD):
            comm.Set_errhandler(MPI.ERRORS_RETURN)
    return MPI


class MPIBackend(Backend):
    """The N workers spread over the M ranks in contiguous blocks, as even as possible (N = M unless `workers`
    says). A rank first combines its own workers' rows, then joins one collective:

    - `exact` (default): the exact sum (see exact.py): Iallreduce(MAX) of int16 codes and Iallreduce(SUM) of int64
      words, or, where N * m is small, an Iallgather(v) of the rows and the same arithmetic on every rank;
    - `ordered`: Iallgather(v) of every worker's row into an (N, m) table, then a fixed-order sum on every rank;
    - `allreduce`: the rank's rows summed, then the library's float Iallreduce(SUM) (its order, its bits).

    Every collective is non-blocking and its wait is marked on a `Heartbeat` for the stall watchdog. Failure
    reports, signals and lost processes are the `Supervisor` thread's business, so the main thread may simply wait:
    with Open MPI (whose blocking wait yields the core when oversubscribed) it does; with other MPIs (MPICH's wait
    spins at 100%) it polls: for `spin_seconds` with sched_yield between polls, then with sleeps that grow from
    `poll_sleep` to `max_sleep` (a twentieth of the time waited so far). By default it spins for 0.05 s while this
    host has a core per rank, and not at all when it has more ranks than cores (measured with MPICH at N = 10 on
    2 cores: yielding ranks took a small Iallgather from ~1 ms to 4-8 ms and slowed a working rank 1.5x).
    """

    name = "mpi"

    def __init__(self, reduction: str = "exact", stall_timeout: float = 0.0,
                 spin_seconds: float | None = None, poll_sleep: float = 5e-5, max_sleep: float = 1e-3) -> None:
        from .. import signals

        signals.block()  # before MPI starts its threads, so that only our threads ever take our signals
        with StartGuard(rank_from_env(), max(stall_timeout, START_FLOOR) if stall_timeout > 0 else 0.0):
            self.MPI = MPI = start_mpi()
            self.comm = MPI.COMM_WORLD.Dup()
            self.rank = self.comm.Get_rank()
            self.n_ranks = self.comm.Get_size()
            self.is_root = self.rank == 0
            self.reduction = reduction
            self.poll_sleep, self.max_sleep = poll_sleep, max_sleep
            self.spin_seconds = 0.0  # until this host's ranks are counted
            self._gather: dict[tuple[int, np.dtype], np.ndarray] = {}
            self._out: dict[tuple[int, np.dtype], np.ndarray] = {}
            self._exact: dict[tuple[int, np.dtype], ExactSum] = {}
            self._blocking_wait = MPI.get_vendor()[0] == "Open MPI"
            self.heartbeat = Heartbeat()
            self.supervisor = Supervisor(MPI.COMM_WORLD.Dup(), self.abort, self.heartbeat, stall_timeout, self.ending)
        self.supervisor.start()  # a signal that came after the guard ended is pending: the supervisor takes it
        raw = self._allgather_bytes(f"{socket.gethostname()}\0{host_id()}\0{os.getpid()}".encode(), _PEER_BYTES)
        self.peers = [Peer(r, *_split_peer(b)) for r, b in enumerate(raw)]
        self.supervisor.watch(self.peers)
        if spin_seconds is None:
            here = sum(p.host_id == self.peers[self.rank].host_id for p in self.peers)
            spin_seconds = 0.05 if here <= len(os.sched_getaffinity(0)) else 0.0
        self.spin_seconds = spin_seconds
        self.assign(self.n_ranks)

    def assign(self, n_workers: int) -> None:
        """Spread N workers over the ranks: rank r holds the contiguous block of N // M workers, one more for the
        first N % M ranks. Every rank calls it alike, before any worker exists (a resume learns N from its trace)."""
        if n_workers < self.n_ranks:
            raise InputError("workers", n_workers, f"is fewer than the MPI ranks ({self.n_ranks}): every rank "
                                                   f"simulates at least one worker")
        base, extra = divmod(n_workers, self.n_ranks)
        self.counts = [base + (r < extra) for r in range(self.n_ranks)]
        self.starts = [sum(self.counts[:r]) for r in range(self.n_ranks)]
        self.n_workers = n_workers
        self.local_workers = range(self.starts[self.rank], self.starts[self.rank] + self.counts[self.rank])
        self._gather.clear()
        self._out.clear()
        self._exact.clear()

    # -- collectives -------------------------------------------------------------------------
    def _wait(self, req: MPI.Request) -> None:
        hb = self.heartbeat
        hb.seq += 1
        hb.waiting_since = time.monotonic()
        if self._blocking_wait:
            req.Wait()
        elif not req.Test():
            start = time.perf_counter()
            while not req.Test():
                waited = time.perf_counter() - start
                if waited < self.spin_seconds:
                    os.sched_yield()
                else:
                    time.sleep(min(self.max_sleep, max(self.poll_sleep, waited / 20)))
        hb.last_progress = time.monotonic()
        hb.waiting_since = 0.0

    def _table(self, rows: np.ndarray) -> np.ndarray:
        """Every worker's row in an (N, m) table on every rank (the table is reused: valid until the next call).
        What travels is the rows' own type: float32 rows move 4 bytes a number."""
        m, dtype = rows.shape[1], rows.dtype
        table = self._gather.get((m, dtype))
        if table is None:
            table = self._gather[(m, dtype)] = np.empty((self.n_workers, m), dtype=dtype)
        lw = self.local_workers
        table[lw.start:lw.stop] = rows
        if len(set(self.counts)) == 1:
            self._wait(self.comm.Iallgather(self.MPI.IN_PLACE, table))
        else:
            spec = ([c * m for c in self.counts], [s * m for s in self.starts])
            self._wait(self.comm.Iallgatherv(self.MPI.IN_PLACE, [table, spec]))
        return table

    def _out_buffer(self, m: int, dtype: np.dtype) -> np.ndarray:
        out = self._out.get((m, dtype))
        if out is None:
            out = self._out[(m, dtype)] = np.empty(m, dtype=dtype)
        return out

    def _exact_sum(self, rows: np.ndarray) -> np.ndarray:
        ex = exact_for(self._exact, self.n_workers, rows)
        if self.n_workers * rows.shape[1] <= GATHER_ELEMENTS:
            return ex.local(self._table(rows))
        code = ex.codes(rows)
        self._wait(self.comm.Iallreduce(self.MPI.IN_PLACE, code, op=self.MPI.MAX))
        words = ex.encode(rows, code)
        self._wait(self.comm.Iallreduce(self.MPI.IN_PLACE, words, op=self.MPI.SUM))
        return ex.decode(words, code)

    def _reduce(self, rows: np.ndarray) -> np.ndarray:
        """The sum over all N workers by this backend's reduction, in a reused buffer."""
        if self.reduction == "exact":
            return self._exact_sum(rows)
        if self.reduction == "ordered":
            return ordered_sum(self._table(rows), self._out_buffer(rows.shape[1], rows.dtype))
        out = self._out_buffer(rows.shape[1], rows.dtype)
        np.add.reduce(rows, axis=0, out=out)
        self._wait(self.comm.Iallreduce(self.MPI.IN_PLACE, out, op=self.MPI.SUM))
        return out

    def mean(self, rows: np.ndarray) -> np.ndarray:
        out = self._reduce(rows)
        out /= self.n_workers
        return out

    def sum(self, rows: np.ndarray) -> np.ndarray:
        return self._reduce(np.ascontiguousarray(rows)).copy()

    def allgather(self, rows: np.ndarray) -> np.ndarray:
        return self._table(np.ascontiguousarray(rows)).copy()

    def share(self, payload: bytes | None) -> bytes:
        size = np.array([len(payload) if payload is not None else 0], dtype=np.int64)
        self._wait(self.comm.Ibcast(size, root=0))
        buf = np.empty(int(size[0]), dtype=np.uint8)
        if self.is_root:
            assert payload is not None
            buf[:] = np.frombuffer(payload, dtype=np.uint8)
        self._wait(self.comm.Ibcast(buf, root=0))
        return buf.tobytes()

    def _allgather_bytes(self, payload: bytes, width: int) -> list[bytes]:
        """Every rank's `payload` (at most `width` bytes), in rank order."""
        table = np.zeros((self.n_ranks, width), dtype=np.uint8)
        raw = payload[:width]
        table[self.rank, :len(raw)] = np.frombuffer(raw, dtype=np.uint8)
        self._wait(self.comm.Iallgather(self.MPI.IN_PLACE, table))
        return [table[r].tobytes().rstrip(b"\0") for r in range(self.n_ranks)]

    def agree(self, error: str | None) -> list[tuple[int, str]]:
        """Lengths first (-1: no error), then the messages in a table as wide as the longest: a message of any
        length arrives whole (a fixed-width table cut long ones, and the cut text failed to decode on the others)."""
        payload = b"" if error is None else error.encode("utf-8", "replace")
        mine = np.array([-1 if error is None else len(payload)], dtype=np.int64)
        lengths = np.empty(self.n_ranks, dtype=np.int64)
        self._wait(self.comm.Iallgather(mine, lengths))
        width = int(lengths.max())
        if width < 0:
            return []
        table = np.zeros((self.n_ranks, max(width, 1)), dtype=np.uint8)
        table[self.rank, :len(payload)] = np.frombuffer(payload, dtype=np.uint8)
        self._wait(self.comm.Iallgather(self.MPI.IN_PLACE, table))
        return [(r, table[r, :n].tobytes().decode("utf-8", "replace")) for r, n in enumerate(lengths.tolist()) if n >= 0]

    # -- how the job ends --------------------------------------------------------------------
    def report_failure(self, message: str, status: str, exit_code: int) -> None:
        if self.is_root:
            return
        req = self.supervisor.comm.isend((message, status, exit_code), dest=0, tag=TAG_FAIL)
        deadline = time.monotonic() + self.supervisor.grace
        while time.monotonic() < deadline and not req.Test():
            time.sleep(0.01)
        # rank 0 ends the job once it hears; if it does not within the grace period, end it from here
        time.sleep(max(0.0, deadline - time.monotonic()))
        self.abort(exit_code)

    def close(self) -> None:
        """Every rank: stop watching processes, meet once more (no rank exits while another still watches it),
        stop the supervisor. The stall watchdog stays armed through the meeting: a rank that never arrives (it
        died past its report, or hangs) ends the job after --stall-timeout instead of holding the others forever."""
        self.supervisor.quiet()
        self._allgather_bytes(b"", 1)
        self.supervisor.stop()

    def abort(self, exit_code: int) -> NoReturn:
        self.comm.Abort(exit_code)
        raise SystemExit(exit_code)

    def describe(self) -> dict[str, str]:
        import mpi4py

        lib = self.MPI.Get_library_version().replace("\0", "").strip().splitlines()[0]
        hosts = sorted({p.hostname for p in self.peers})
        launcher = launcher_name()
        return {"backend": self.name, "mpi4py": mpi4py.__version__, "mpi_library": lib, "reduction": self.reduction,
                "launcher": launcher, "hosts": ",".join(hosts), "ranks": str(self.n_ranks),
                "ranks_per_host": ",".join(str(sum(p.hostname == h for p in self.peers)) for h in hosts),
                "workers_per_rank": ",".join(map(str, self.counts)), "exact_sum": implementation()}


def _split_peer(raw: bytes) -> tuple[str, str, int]:
    hostname, hid, pid = raw.decode("utf-8", "replace").split("\0")
    return hostname, hid, int(pid)
