"""f* of a convex problem, computed once per (data, regulariser, lambda) and cached on disk."""

from __future__ import annotations

import errno
import fcntl
import json
import math
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .outcome import say
from .theory import optimum
from .workers import Workers

MAX_BYTES = 16 << 20


def cache_path() -> Path:
    """$CRPSGD_CACHE, else ~/.cache/crpsgd_mpi, file fstar.json."""
    root = os.environ.get("CRPSGD_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "crpsgd_mpi")
    return Path(root) / "fstar.json"


def cached_optimum(workers: Workers, x0: np.ndarray, key: str) -> float:
    """f* (under `key`, the problem's) from the cache if every process finds it there, else by L-BFGS (collective),
    then cached. The cache is only a cache: what is wrong with it is one note (once per process and cache), never
    a failure."""
    path = cache_path()
    table, damage = read_cache(path)
    if damage and workers.backend.is_root:
        _note(path, f"{damage}; the entries it needs are computed again")
    found = key in table
    votes = workers.backend.sum(np.full((workers.k, 1), 1.0 if found else 0.0))
    if found and votes[0] == workers.n:
        return float(table[key])
    value = optimum(workers, x0)
    if workers.backend.is_root:
        why = store(path, key, value)
        if why is not None:
            _note(path, f"cannot be written ({why}): f* is not cached")
    return value


_NOTED: set[str] = set()


def _note(path: Path, what: str) -> None:
    """One note about the cache `path`, the first time this process has something to say about it."""
    if str(path) not in _NOTED:
        _NOTED.add(str(path))
        say(f"crpsgd_mpi: note: the f* cache {path} {what}")


def store(path: Path, key: str, value: float) -> str | None:
    """Add one entry: read, merge and replace the file under an exclusive lock (concurrent writers of other keys
    lose nothing), through a temporary file and a rename (a reader never sees half a file). Returns why it could not
    (None: stored): a read-only or full disk, a file where a folder belongs, a folder, FIFO or device in the cache's
    or its lock's place (never replaced, never opened: nothing blocks) only cost a recomputation next time."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            return f"{path.parent} is not a folder"
        with _locked(path.with_name(path.name + ".lock")):
            if _kind(path) not in (None, "regular"):
                return "it is not a regular file"
            table, _ = read_cache(path)
            table[key] = value
            tmp.write_text(json.dumps(table, indent=1, sort_keys=True))
            os.replace(tmp, path)
    except OSError as exc:
        return exc.strerror or str(exc)
    except ValueError as exc:  # a path the system cannot take
        return str(exc)
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except (OSError, ValueError):
            pass
    return None


def _kind(path: Path) -> str | None:
    """'regular', 'other' (a folder, FIFO, device, socket), or None when nothing is there (symbolic links followed)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return "regular" if stat.S_ISREG(st.st_mode) else "other"


@contextmanager
def _locked(lock: Path) -> Iterator[None]:
    """Hold an exclusive lock on the regular file `lock` (created if missing). Anything else there (a FIFO, whose
    plain opening would block until a reader comes, a device, a folder) is refused without blocking: OSError."""
    if _kind(lock) == "other":
        raise OSError(errno.EINVAL, "its lock file is not a regular file")
    fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0), 0o644)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "its lock file is not a regular file")
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def read_table(path: Path) -> dict[str, float]:
    """The cache's valid entries (empty when the file is missing or unreadable)."""
    return read_cache(path)[0]


def read_cache(path: Path) -> tuple[dict[str, float], str | None]:
    """The cache's valid entries, and what is wrong with it (None if nothing). A FIFO, device or folder in its place
    is never opened (reading a FIFO would block)."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return {}, None
    except (OSError, ValueError) as exc:
        return {}, f"cannot be read ({getattr(exc, 'strerror', None) or exc})"
    if not stat.S_ISREG(st.st_mode):
        return {}, "is not a regular file"
    if st.st_size > MAX_BYTES:
        return {}, f"is larger than {MAX_BYTES >> 20} MB"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return {}, "is not a regular file"
            with os.fdopen(os.dup(fd), "rb") as fh:
                text = fh.read(MAX_BYTES + 1).decode("utf-8")
        finally:
            os.close(fd)
        raw = json.loads(text)
    except (OSError, ValueError) as exc:
        return {}, f"cannot be read ({type(exc).__name__})"
    if not isinstance(raw, dict):
        return {}, "does not hold a table"
    table = {k: float(v) for k, v in raw.items()
             if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
    bad = len(raw) - len(table)
    return table, (f"has {bad} entries that are not finite numbers" if bad else None)
