"""MPI backend: one worker per rank, buffer-based non-blocking collectives polled so that no rank hangs."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, NoReturn

import numpy as np

from ..errors import InputError, PeerFailure
from .base import Backend
from .local import ordered_sum

if TYPE_CHECKING:
    from mpi4py import MPI

_FAIL_TAG = 77
_AGREE_BYTES = 1024


class MPIBackend(Backend):
    """Each rank is one worker. `ordered` reduction: Iallgather into an (N, m) buffer, then a fixed-order
    sum on every rank (bit-identical to the in-process backend and across ranks); `allreduce`: an
    in-place Iallreduce(SUM) (fewer bytes moved; summation order chosen by the MPI library).

    Every collective is non-blocking. The root polls it, and between polls listens for failure reports
    from the other ranks, so an error anywhere ends the job (the root marks the trace and aborts)
    instead of hanging it; it yields its core (sched_yield) between polls and sleeps between polls once
    a wait passes `spin_seconds`. The other ranks need not listen: with Open MPI (whose blocking wait
    yields the core when oversubscribed) they wait blockingly; with other MPIs (MPICH's wait spins)
    they poll like the root.
    """

    name = "mpi"

    def __init__(self, reduction: str = "ordered", expected_workers: int | None = None,
                 spin_seconds: float = 0.05, poll_sleep: float = 5e-5, failure_grace: float = 5.0) -> None:
        from mpi4py import MPI

        self.MPI = MPI
        self.comm = MPI.COMM_WORLD.Dup()
        self._fail_comm = MPI.COMM_WORLD.Dup()
        self.rank = self.comm.Get_rank()
        self.n_workers = self.comm.Get_size()
        self.local_workers = range(self.rank, self.rank + 1)
        self.is_root = self.rank == 0
        self.reduction = reduction
        self.spin_seconds, self.poll_sleep, self.failure_grace = spin_seconds, poll_sleep, failure_grace
        self._gather: dict[int, np.ndarray] = {}
        self._out: dict[int, np.ndarray] = {}
        self._status = MPI.Status()
        # Only the root must stay responsive (it listens for failure reports); with Open MPI, whose
        # blocking wait yields the core when oversubscribed, the other ranks can simply wait.
        self._blocking_wait = not self.is_root and MPI.get_vendor()[0] == "Open MPI"
        if expected_workers is not None and expected_workers != self.n_workers:
            raise InputError("workers", expected_workers, f"differs from the number of MPI ranks ({self.n_workers})")

    # -- collectives -------------------------------------------------------------------------
    def _wait(self, req: MPI.Request) -> None:
        if self._blocking_wait:
            req.Wait()
            return
        if req.Test():
            return
        start = time.perf_counter()
        polls = 0
        while not req.Test():
            polls += 1
            if self.is_root and polls % 32 == 0:
                self._check_peers()
            if time.perf_counter() - start < self.spin_seconds:
                os.sched_yield()
            else:
                time.sleep(self.poll_sleep)

    def _check_peers(self) -> None:
        if self._fail_comm.Iprobe(source=self.MPI.ANY_SOURCE, tag=_FAIL_TAG, status=self._status):
            source = self._status.Get_source()
            message, status, code = self._fail_comm.recv(source=source, tag=_FAIL_TAG)
            raise PeerFailure(source, message, status, code)

    def _buffers(self, m: int) -> tuple[np.ndarray, np.ndarray]:
        gather = self._gather.get(m)
        if gather is None:
            gather = self._gather[m] = np.empty((self.n_workers, m))
            self._out[m] = np.empty(m)
        return gather, self._out[m]

    def _ordered_sum(self, rows: np.ndarray) -> np.ndarray:
        gather, out = self._buffers(rows.shape[1])
        gather[self.rank] = rows[0]
        self._wait(self.comm.Iallgather(self.MPI.IN_PLACE, gather))
        return ordered_sum(gather, out)

    def mean(self, rows: np.ndarray) -> np.ndarray:
        if self.reduction == "ordered":
            out = self._ordered_sum(rows)
        else:
            _, out = self._buffers(rows.shape[1])
            out[:] = rows[0]
            self._wait(self.comm.Iallreduce(self.MPI.IN_PLACE, out, op=self.MPI.SUM))
        out /= self.n_workers
        return out

    def sum(self, rows: np.ndarray) -> np.ndarray:
        return self._ordered_sum(rows).copy()

    def agree(self, error: str | None) -> list[tuple[int, str]]:
        table = np.zeros((self.n_workers, _AGREE_BYTES), dtype=np.uint8)
        if error is not None:
            raw = ("!" + error).encode("utf-8", "replace")[:_AGREE_BYTES]
            table[self.rank, :len(raw)] = np.frombuffer(raw, dtype=np.uint8)
        self._wait(self.comm.Iallgather(self.MPI.IN_PLACE, table))
        found = []
        for r in range(self.n_workers):
            text = table[r].tobytes().rstrip(b"\0").decode("utf-8", "replace")
            if text.startswith("!"):
                found.append((r, text[1:]))
        return found

    # -- failures ----------------------------------------------------------------------------
    def report_failure(self, message: str, status: str, exit_code: int) -> None:
        if self.is_root:
            return
        req = self._fail_comm.isend((message, status, exit_code), dest=0, tag=_FAIL_TAG)
        deadline = time.monotonic() + self.failure_grace
        while time.monotonic() < deadline:
            if req.Test():
                break
            time.sleep(0.01)
        # The root aborts the job once it sees the report; if it does not within the grace period
        # (it is busy outside any collective), end the job from here.
        time.sleep(max(0.0, deadline - time.monotonic()))
        self.abort(exit_code)

    def abort(self, exit_code: int) -> NoReturn:
        self.comm.Abort(exit_code)
        raise SystemExit(exit_code)

    def describe(self) -> dict[str, str]:
        import mpi4py

        lib = self.MPI.Get_library_version().strip().splitlines()[0]
        return {"backend": self.name, "mpi4py": mpi4py.__version__, "mpi_library": lib,
                "reduction": self.reduction}
