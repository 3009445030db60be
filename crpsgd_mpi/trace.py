"""The HDF5 trace (schema version 1): written incrementally by one process, read by figures and tools."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .errors import InputError
from .ledger import EVAL_COLUMNS, ROUND_COLUMNS

SCHEMA_VERSION = 1
STATUSES = ("running", "complete", "failed", "interrupted", "diverged")
CHUNK = 1024
_FLOAT_COLUMNS = {"wall_time", "loss", "grad_norm_sq", "suboptimality"}


def check_output_path(path: str | Path, overwrite: bool) -> Path:
    """Refuse an existing file unless overwrite; make sure the folder can be created."""
    p = Path(path)
    if p.exists() and not overwrite:
        raise InputError("out", str(path), "exists (pass --overwrite to replace it)")
    if p.exists() and p.is_dir():
        raise InputError("out", str(path), "is a directory")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError("out", str(path), f"cannot create its folder: {exc.strerror}") from None
    return p


class TraceWriter:
    """Creates the file with status 'running'; every append opens, writes and closes it, so the file
    on disk is always complete and readable, and a run that dies keeps every appended row."""

    def __init__(self, path: str | Path, attrs: Mapping[str, Any], overwrite: bool = False) -> None:
        self.path = check_output_path(path, overwrite)
        self._lock = threading.Lock()  # the MPI supervisor thread may finish the trace while rows are appended
        tmp = self.path.with_name(self.path.name + ".creating")
        with h5py.File(tmp, "w") as f:
            f.attrs["schema_version"] = SCHEMA_VERSION
            f.attrs["status"] = "running"
            f.attrs["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
            for key, value in attrs.items():
                f.attrs[key] = value
            for group, columns in (("rounds", ROUND_COLUMNS), ("evals", EVAL_COLUMNS)):
                g = f.create_group(group)
                for c in columns:
                    dtype = np.float64 if c in _FLOAT_COLUMNS else np.int64
                    g.create_dataset(c, shape=(0,), maxshape=(None,), chunks=(CHUNK,), dtype=dtype)
        os.replace(tmp, self.path)

    def append(self, group: str, columns: Mapping[str, np.ndarray]) -> None:
        """Append equal-length columns to `group` ('rounds' or 'evals')."""
        self.append_groups({group: columns})

    def append_groups(self, groups: Mapping[str, Mapping[str, np.ndarray]]) -> None:
        """Append to several groups, in the given order, opening the file once (an open costs milliseconds)."""
        todo = {g: cols for g, cols in groups.items() if len(next(iter(cols.values()))) > 0}
        if not todo:
            return
        with self._lock, h5py.File(self.path, "r+") as f:
            for group, columns in todo.items():
                _append(f[group], columns)

    def finish(self, status: str, x: np.ndarray | None, extra: Mapping[str, Any]) -> None:
        """Set the final status, the final iterate and summary attributes."""
        if status not in STATUSES:
            raise ValueError(status)
        with self._lock, h5py.File(self.path, "r+") as f:
            if x is not None:
                g = f.require_group("final")
                if "x" in g:
                    del g["x"]
                g.create_dataset("x", data=np.asarray(x, dtype=np.float64))
            for key, value in extra.items():
                f.attrs[key] = value
            f.attrs["status"] = status


@dataclass
class Trace:
    """A trace read back into memory."""

    path: Path
    attrs: dict[str, Any]
    rounds: dict[str, np.ndarray]
    evals: dict[str, np.ndarray]
    x: np.ndarray | None
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> str:
        """The run's final (or current) status."""
        return str(self.attrs["status"])


def read_trace(path: str | Path) -> Trace:
    """Load every dataset and attribute of a trace."""
    with h5py.File(path, "r") as f:
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
        rounds = {k: f["rounds"][k][()] for k in f["rounds"]}
        evals = {k: f["evals"][k][()] for k in f["evals"]}
        x = f["final"]["x"][()] if "final" in f and "x" in f["final"] else None
    config = json.loads(attrs.get("config", "{}"))
    return Trace(Path(path), attrs, rounds, evals, x, config)


def _append(g: h5py.Group, columns: Mapping[str, np.ndarray]) -> None:
    """Append equal-length columns to the datasets of group g."""
    n = len(next(iter(columns.values())))
    for name, values in columns.items():
        ds = g[name]
        old = ds.shape[0]
        ds.resize((old + n,))
        ds[old:] = values
