"""f* of a convex problem, computed once per (data, regulariser, lambda) and cached on disk."""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .config import Config
from .theory import optimum
from .workers import Workers


def cache_path() -> Path:
    """$CRPSGD_CACHE, else ~/.cache/crpsgd_mpi, file fstar.json."""
    root = os.environ.get("CRPSGD_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "crpsgd_mpi")
    return Path(root) / "fstar.json"


def cache_key(cfg: Config, fingerprint: str) -> str:
    """What f* depends on: the data, the regulariser, lambda, the intercept and the storage."""
    return f"{fingerprint}|{cfg.regularizer}|{cfg.lam!r}|intercept={cfg.intercept}|{cfg.storage}"


def cached_optimum(workers: Workers, x0: np.ndarray, cfg: Config, fingerprint: str) -> float:
    """f* from the cache if every process finds it there, else by L-BFGS (collective), then cached."""
    key = cache_key(cfg, fingerprint)
    path = cache_path()
    table = read_table(path)
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
    lose nothing), through a temporary file and a rename (a reader never sees half a file)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with _locked(path.with_name(path.name + ".lock")):
            table = read_table(path)
            table[key] = value
            tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(table, indent=1, sort_keys=True))
            os.replace(tmp, path)
    except OSError:
        pass  # a read-only home only costs a recomputation next time


@contextmanager
def _locked(lock: Path) -> Iterator[None]:
    with lock.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def read_table(path: Path) -> dict[str, float]:
    """The cached values (empty when the file is missing or unreadable)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
