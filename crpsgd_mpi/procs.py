"""Processes seen through /proc: is one alive, which are its descendants (for ending a whole job)."""

from __future__ import annotations

import os
import signal


def _stat(pid: int) -> bytes | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read()
    except OSError:
        return None


def process_alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    stat = _stat(pid)
    if stat is None:
        return False
    end = stat.rindex(b")")
    return stat[end + 2:end + 3] != b"Z"


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants, parents first (empty if `pid` is gone)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        stat = _stat(int(entry.name)) if entry.name.isdigit() else None
        if stat is not None:
            ppid = int(stat[stat.rindex(b")") + 2:].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    if _stat(pid) is None:
        return []
    tree, queue = [], [pid]
    while queue:
        p = queue.pop(0)
        tree.append(p)
        queue.extend(children.get(p, []))
    return tree


def send(pids: list[int] | set[int], sig: int = signal.SIGKILL) -> None:
    """Send `sig` to every pid still there."""
    for p in pids:
        try:
            os.kill(p, sig)
        except ProcessLookupError:
            pass


def kill_tree(pid: int, sig: int = signal.SIGKILL) -> None:
    """Send `sig` to `pid` and every descendant (collected before any dies, so orphans are found too)."""
    send(process_tree(pid), sig)
