"""f* of a convex problem, computed once per (data, regulariser, lambda) and cached on disk."""

from __future__ import annotations

import fcntl
import json
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .config import Config
from .outcome import say
from .theory import optimum
from .workers import Workers

MAX_BYTES = 16 << 20


def cache_path() -> Path:
    """$CRPSGD_CACHE, else ~/.cache/crpsgd_mpi, file fstar.json."""
    root = os.environ.get("CRPSGD_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "crpsgd_mpi")
    return Path(root) / "fstar.json"


def cache_key(cfg: Config, fingerprint: str, n_workers: int) -> str:
    """The key of logistic regression's f* (see `LogisticRegression.optimum_key`)."""
    from .problems.logreg import optimum_cache_key

    return optimum_cache_key(cfg, fingerprint, n_workers)


def cached_optimum(workers: Workers, x0: np.ndarray, key: str) -> float:
    """f* (under `key`, the problem's) from the cache if every process finds it there, else by L-BFGS (collective),
    then cached."""
    path = cache_path()
    table, damage = read_cache(path)
    if damage and workers.backend.is_root:
        say(f"crpsgd_mpi: note: the f* cache {path} {damage}; the entries it needs are computed again")
    found = key in table
    votes = workers.backend.sum(np.full((workers.k, 1), 1.0 if found else 0.0))
    if found and votes[0] == workers.n:
        return float(table[key])
    value = optimum(workers, x0)
    if workers.backend.is_root:
        store(path, key, value)
    return value


def store(path: Path, key: str, value: float) -> None:
    """Add one entry: read, merge and replace the file under an exclusive lock (concurrent writers of other keys
    lose nothing), through a temporary file and a rename (a reader never sees half a file). A read-only or full disk
    only costs a recomputation next time; a folder, FIFO or device in the cache's place is never replaced."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with _locked(path.with_name(path.name + ".lock")):
            if path.exists() and not path.is_file():
                return
            table, _ = read_cache(path)
            table[key] = value
            tmp.write_text(json.dumps(table, indent=1, sort_keys=True))
            os.replace(tmp, path)
    except OSError:
        pass
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def _locked(lock: Path) -> Iterator[None]:
    with lock.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def read_table(path: Path) -> dict[str, float]:
    """The cache's valid entries (empty when the file is missing or unreadable)."""
    return read_cache(path)[0]


def read_cache(path: Path) -> tuple[dict[str, float], str | None]:
    """The cache's valid entries, and what is wrong with it (None if nothing). A FIFO, device or folder in its place
    is never opened (reading a FIFO would block)."""
    if not path.exists():
        return {}, None
    if not path.is_file():
        return {}, "is not a regular file"
    if path.stat().st_size > MAX_BYTES:
        return {}, f"is larger than {MAX_BYTES >> 20} MB"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return {}, f"cannot be read ({type(exc).__name__})"
    if not isinstance(raw, dict):
        return {}, "does not hold a table"
    table = {k: float(v) for k, v in raw.items()
             if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
    bad = len(raw) - len(table)
    return table, (f"has {bad} entries that are not finite numbers" if bad else None)
