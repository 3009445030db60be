"""f* of a convex problem, computed once per (data, regulariser, lambda) and cached on disk."""

from __future__ import annotations

import json
import math
import os
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


def cache_key(cfg: Config, fingerprint: str) -> str:
    """What f* depends on: the data, the regulariser, lambda, the intercept and the storage."""
    return f"{fingerprint}|{cfg.regularizer}|{cfg.lam!r}|intercept={cfg.intercept}|{cfg.storage}"


def cached_optimum(workers: Workers, x0: np.ndarray, cfg: Config, fingerprint: str) -> float:
    """f* from the cache if every process finds it there, else by L-BFGS (collective), then cached."""
    key = cache_key(cfg, fingerprint)
    path = cache_path()
    table, damage = _read(path)
    if damage and workers.backend.is_root:
        say(f"crpsgd_mpi: note: the f* cache {path} {damage}; the entries it needs are computed again")
    found = key in table
    votes = workers.backend.sum(np.full((workers.k, 1), 1.0 if found else 0.0))
    if found and votes[0] == workers.n:
        return float(table[key])
    value = optimum(workers, x0)
    if workers.backend.is_root:
        _write(path, key, value)
    return value


def _write(path: Path, key: str, value: float) -> None:
    """Add one entry, atomically (a temporary file moved into place); a read-only or full disk only costs a
    recomputation next time."""
    table, _ = _read(path)
    table[key] = value
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(table, indent=1, sort_keys=True))
        if path.exists() and not path.is_file():
            return  # never replace a folder, FIFO or device someone put there
        os.replace(tmp, path)
    except OSError:
        pass
    finally:
        tmp.unlink(missing_ok=True)


def _read(path: Path) -> tuple[dict[str, float], str | None]:
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
