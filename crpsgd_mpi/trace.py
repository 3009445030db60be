"""The HDF5 trace (schema version 1): written incrementally by one process, read by figures and tools."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from .errors import InputError
from .ledger import EVAL_COLUMNS, ROUND_COLUMNS

if TYPE_CHECKING:
    import pandas as pd

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
        n = len(next(iter(columns.values())))
        if n == 0:
            return
        with self._lock, h5py.File(self.path, "r+") as f:
            g = f[group]
            for name, values in columns.items():
                ds = g[name]
                old = ds.shape[0]
                ds.resize((old + n,))
                ds[old:] = values

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
    """A trace read back: `attrs` (the config and versions parsed into dicts), `rounds` and `evals` as pandas
    DataFrames (one row per round / evaluation), `x` the final iterate (None unless complete)."""

    path: Path | None
    attrs: dict[str, Any]
    rounds: pd.DataFrame
    evals: pd.DataFrame
    x: np.ndarray | None

    @property
    def status(self) -> str:
        """The run's final (or current) status."""
        return str(self.attrs["status"])

    @property
    def config(self) -> dict[str, Any]:
        """The resolved configuration of the run (with the step sizes and L it used)."""
        return self.attrs.get("config", {})

    def __repr__(self) -> str:
        return (f"Trace({self.attrs.get('algorithm')}, N={self.attrs.get('N')}, T={self.attrs.get('T')}, "
                f"{self.status}, {len(self.rounds)} rounds, {len(self.evals)} evaluations)")


def load_trace(path: str | Path) -> Trace:
    """Read a trace written by any version of this package (schema >= 1). A file that is not a readable trace is an
    InputError naming it."""
    import pandas as pd

    try:
        with h5py.File(path, "r") as f:
            if "rounds" not in f or "evals" not in f or "status" not in f.attrs:
                raise InputError("trace", str(path), "not a crpsgd_mpi trace (no /rounds, /evals or status)")
            attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
            rounds = pd.DataFrame({k: f["rounds"][k][()] for k in f["rounds"]})
            evals = pd.DataFrame({k: f["evals"][k][()] for k in f["evals"]})
            x = f["final"]["x"][()] if "final" in f and "x" in f["final"] else None
    except OSError as exc:
        raise InputError("trace", str(path), f"not a readable HDF5 file: {exc}") from None
    for key in ("config", "versions"):
        if isinstance(attrs.get(key), str):
            attrs[key] = json.loads(attrs[key])
    return Trace(Path(path), attrs, rounds, evals, x)


read_trace = load_trace
