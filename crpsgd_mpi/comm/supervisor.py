"""The supervisor thread of an MPI rank: it ends the whole job quickly, with the trace saying why, whatever happens.

It owns SIGINT/SIGTERM/SIGHUP (`sigtimedwait`, so it acts at once even while the main thread sits in a C call, and knows
the sender), hears failure reports of other ranks (rank 0), watches the processes of the ranks on its own host (the
lowest rank of each host), and runs the stall watchdog: a rank that has waited in a collective for a while tells
rank 0 that it arrived; when no collective completes for `stall_timeout` seconds, rank 0 names the ranks that did
not arrive and ends the job. Exactly one path ends a job: the first to claim the job's `Ending` (a supervisor or the
main thread).

A SIGTERM sent by the rank's own launcher (Open MPI's mpiexec after a Ctrl-C, or after losing a rank) means the
launcher is ending the job already: rank 0 marks the trace and says its line straight to the user, and nobody
calls MPI_Abort (whose banner would only follow our line).
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import signals
from ..outcome import EXIT_FAILED, EXIT_INTERRUPTED, say, say_ended, silences_output
from ..procs import process_alive

if TYPE_CHECKING:
    from mpi4py import MPI

    from ..ending import Ending

TAG_FAIL, TAG_ARRIVED, TAG_LOST = 77, 78, 79


class Heartbeat:
    """What the main thread is doing, written around every collective (a few attribute stores) and read by the
    supervisor: collectives entered, when the current wait began (0 when not waiting), the last completion."""

    __slots__ = ("seq", "waiting_since", "last_progress")

    def __init__(self) -> None:
        self.seq = 0
        self.waiting_since = 0.0
        self.last_progress = time.monotonic()


@dataclass(frozen=True)
class Peer:
    """Where a rank runs: its host (name, and an id that also tells containers apart) and process id."""

    rank: int
    hostname: str
    host_id: str
    pid: int


def host_id() -> str:
    """Host name, boot id and pid namespace: two ranks with the same id can see each other's processes."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as fh:
            boot = fh.read().strip()
    except OSError:
        boot = "?"
    try:
        ns = str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        ns = "?"
    return f"{socket.gethostname()}|{boot}|{ns}"


class StartGuard(threading.Thread):
    """A rank's signals and patience while MPI starts, from `signals.block()` until the `Supervisor` takes over.

    MPI_Init waits for every rank; a rank that ended before joining (a Ctrl-C that reached it before its signals were
    blocked, a crash) leaves the others waiting there for ever under MPICH's hydra, which does not end such a job,
    while their own SIGINT or SIGTERM pends, blocked. So this thread takes the signals with `sigtimedwait`: one ends
    the process at once, silently, with status 130 (nothing is written yet); and a rank still waiting after `limit`
    seconds (the stall timeout, at least a minute; 0: no limit) says so in one line and exits 1."""

    def __init__(self, rank: int, limit: float, tick: float = 0.05) -> None:
        super().__init__(name="crpsgd-start-guard", daemon=True)
        self.rank, self.limit, self.tick = rank, limit, tick
        self._mpi_up = threading.Event()

    def __enter__(self) -> StartGuard:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._mpi_up.set()
        self.join()

    def run(self) -> None:
        deadline = time.monotonic() + self.limit
        while not self._mpi_up.is_set():
            if signal.sigtimedwait(signals.HANDLED, self.tick) is not None:
                os._exit(EXIT_INTERRUPTED)
            if self.limit > 0 and time.monotonic() > deadline and not self._mpi_up.is_set():
                say(f"crpsgd_mpi: failed: rank {self.rank}: MPI did not start within {self.limit:g} s (another rank "
                    f"ended before joining, or its host cannot be reached; the limit follows --stall-timeout)")
                os._exit(EXIT_FAILED)


class Supervisor(threading.Thread):
    """One per rank, started with the MPI backend and stopped (`stop`) before the process exits normally; it ends
    the job through `ending` (claims it; rank 0 marks the trace)."""

    def __init__(self, comm: MPI.Intracomm, abort: Callable[[int], Any], heartbeat: Heartbeat,
                 stall_timeout: float, ending: Ending, tick: float = 0.05, liveness_every: float = 0.1,
                 grace: float = 5.0) -> None:
        super().__init__(name="crpsgd-supervisor", daemon=True)
        from mpi4py import MPI

        self.MPI, self.comm, self._abort = MPI, comm, abort
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.hb, self.stall_timeout = heartbeat, stall_timeout
        self.tick, self.liveness_every, self.grace = tick, liveness_every, grace
        self.notice_after = max(0.05, min(2.0, stall_timeout / 4)) if stall_timeout > 0 else 0.0
        self.ending = ending
        self._halt = threading.Event()
        self._watch = threading.Event()
        self._watch.set()
        self._watched: list[Peer] = []
        self._reported_lost: set[int] = set()
        self._arrived = [0] * self.size
        self._heard_at = [0.0] * self.size  # when rank r last said it was waiting (in collective _arrived[r])
        self._notified, self._notified_at = 0, 0.0
        self._sends: list[MPI.Request] = []
        self._self_abort_at = 0.0
        self._exit_at, self._exit_code = 0.0, 0
        self._judge_after = 0.0
        self._status = MPI.Status()
        self._launcher = os.getppid()
        signals.block()  # already blocked before MPI started its threads; this keeps it so in ours

    # -- used by the main thread -----------------------------------------------------------------
    def watch(self, peers: list[Peer]) -> None:
        """Watch the processes of the other ranks on this host, if this rank is the lowest there."""
        mine = next(p for p in peers if p.rank == self.rank)
        same = [p for p in peers if p.host_id == mine.host_id]
        if min(p.rank for p in same) == self.rank:
            self._watched = [p for p in same if p.rank != self.rank]

    def quiet(self) -> None:
        """The run is over: ranks may now exit, so stop watching their processes. The stall watchdog stays armed
        until `stop` (the ranks' last meeting is a collective too: a rank that never arrives must not hang the job)."""
        self._watch.clear()

    def stop(self) -> None:
        """End the thread; signals go back to the main thread, held (the run's outcome is decided by now)."""
        self._halt.set()
        self.join(timeout=5.0)
        signals.install()
        signals.hold()
        signals.unblock()

    # -- the thread ------------------------------------------------------------------------------
    def run(self) -> None:
        next_liveness, last_loop = 0.0, time.monotonic()
        while not self._halt.is_set():
            info = signal.sigtimedwait(signals.HANDLED, self.tick)
            now = time.monotonic()
            frozen, last_loop = now - last_loop - (0.0 if info else self.tick), now
            if frozen > 1.0:  # this very process did not run (SIGSTOP, swapping): judge no peer on stale news
                self._on_frozen(frozen, now)
            if info is not None:
                self._on_signal(info.si_signo, info.si_pid)
            if self._halt.is_set():
                return
            self._drain()
            now = time.monotonic()
            if self._watch.is_set() and self._watched and now >= next_liveness:
                next_liveness = now + self.liveness_every
                self._check_peers()
            if self.stall_timeout > 0:
                self._check_stall(now)
            if self._self_abort_at and now >= self._self_abort_at:
                self._abort(EXIT_INTERRUPTED)
            if self._exit_at and now >= self._exit_at:
                os._exit(self._exit_code)  # the launcher said it would end us; it did not

    def _on_frozen(self, seconds: float, now: float) -> None:
        if self.rank == 0 and self.stall_timeout > 0 and seconds > self.stall_timeout:
            self._end("failed", f"rank {self.rank} itself made no progress for {seconds:.1f} s (the process was "
                      f"stopped or starved; --stall-timeout {self.stall_timeout:g})", EXIT_FAILED)
        self._judge_after = now + self.stall_timeout + self.notice_after

    def _on_signal(self, signum: int, sender: int) -> None:
        name = signal.Signals(signum).name
        by_launcher = sender == self._launcher and silences_output(sender)
        if self.rank == 0:
            lost = self._dead_peers()
            if lost:
                self._end("failed", _lost_message(lost), EXIT_FAILED, by_launcher)
            else:
                self._end("interrupted", f"signal {name}" + (" from mpiexec" if by_launcher else ""),
                          EXIT_INTERRUPTED, by_launcher)
        elif by_launcher:
            if self.ending.claim():  # rank 0 reports; this process only waits for the launcher to end it
                self._exit_at, self._exit_code = time.monotonic() + self.grace, EXIT_INTERRUPTED
        elif self.ending.claim():
            self._send((f"signal {name}", "interrupted", EXIT_INTERRUPTED), TAG_FAIL)
            self._self_abort_at = time.monotonic() + self.grace

    def _drain(self) -> None:
        self._sends = [r for r in self._sends if not r.Test()]
        while self.comm.Iprobe(source=self.MPI.ANY_SOURCE, tag=self.MPI.ANY_TAG, status=self._status):
            source, tag = self._status.Get_source(), self._status.Get_tag()
            payload = self.comm.recv(source=source, tag=tag)
            if tag == TAG_ARRIVED:
                self._arrived[source] = max(self._arrived[source], int(payload))
                self._heard_at[source] = time.monotonic()
            elif tag == TAG_FAIL:
                message, status, code = payload
                self._end(status, f"rank {source}: {message}", code)
            elif tag == TAG_LOST:
                self._end("failed", _lost_message(payload), EXIT_FAILED)

    def _dead_peers(self) -> list[int]:
        return [p.rank for p in self._watched if not process_alive(p.pid)]

    def _check_peers(self) -> None:
        lost = [r for r in self._dead_peers() if r not in self._reported_lost]
        if not lost:
            return
        self._reported_lost.update(lost)
        if self.rank == 0:  # Open MPI's launcher has seen it too and is ending the job
            self._end("failed", _lost_message(lost), EXIT_FAILED, silences_output(self._launcher))
        else:
            self._send(lost, TAG_LOST)

    def _check_stall(self, now: float) -> None:
        hb = self.hb
        waiting = hb.waiting_since
        if self.rank != 0:
            # said once per collective, and again every notice_after while the wait lasts (rank 0 tells a rank
            # still waiting in the previous collective from one that has stopped since)
            if waiting and now - waiting > self.notice_after and (
                    self._notified != hb.seq or now - self._notified_at > self.notice_after):
                self._notified, self._notified_at = hb.seq, now
                self._send(hb.seq, TAG_ARRIVED)
            patience = self.stall_timeout + 2 * self.notice_after + self.grace + 0.25 * min(self.rank, 20)
            if waiting and now - waiting > patience and self.ending.claim():  # staggered: one rank speaks first
                say_ended("failed", f"rank {self.rank}: no collective completed for {now - waiting:.0f} s and rank 0 "
                          "did not end the job (rank 0 is stalled)")
                self._abort(EXIT_FAILED)
            return
        idle = now - hb.last_progress
        if idle <= self.stall_timeout + self.notice_after + 2 * self.tick or now < self._judge_after:
            return
        target = hb.seq if waiting else hb.seq + 1
        arrived = {0} if waiting else set()
        arrived.update(r for r in range(1, self.size) if self._arrived[r] >= target)
        # A rank still waiting in the previous collective (which rank 0 has completed) is held up by a peer that
        # owes it data (MPICH's Iallgather relays between ranks): it is not the one missing.
        fresh = 2 * self.notice_after + 10 * self.tick
        behind = [r for r in range(1, self.size)
                  if r not in arrived and self._arrived[r] == target - 1 and now - self._heard_at[r] <= fresh]
        missing = [r for r in range(self.size) if r not in arrived and r not in behind]
        who = f"{_ranks(missing)} did not arrive at collective #{target}" if missing else "every rank is waiting"
        if behind:
            who += f" ({_ranks(behind)} still waiting in #{target - 1})"
        self._end("failed", f"stalled: no collective completed for {idle:.1f} s (--stall-timeout "
                  f"{self.stall_timeout:g}); {who}", EXIT_FAILED)

    def _send(self, payload: object, tag: int) -> None:
        self._sends.append(self.comm.isend(payload, dest=0, tag=tag))

    def _end(self, status: str, message: str, code: int, by_launcher: bool = False) -> None:
        if not self.ending.claim():
            return
        try:
            self.ending.mark(status, message, by_launcher)
        except BaseException as exc:  # noqa: BLE001 - the job must end even if marking the trace fails
            say_ended(status, f"{message} (could not mark the trace: {exc})", by_launcher)
        if by_launcher:
            self._exit_at, self._exit_code = time.monotonic() + self.grace, code
        else:
            self._abort(code)


def _ranks(ranks: list[int]) -> str:
    return ("rank " if len(ranks) == 1 else "ranks ") + ", ".join(map(str, ranks))


def _lost_message(ranks: list[int]) -> str:
    return f"{_ranks(ranks)} lost: the process ended without a report (killed by a signal, or crashed)"
