"""Resuming a run from its trace: what the trace says about the run (`ResumePoint`), and the configuration that goes
on with it (`resumed_config`): the recorded one, with only the options that do not change the run's numbers
allowed to differ."""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py

from .checkpoint import Checkpoint, text_of
from .config import Config
from .errors import InputError
from .registry import load_plugins

#: Options a resume may set anew: how and where the run goes on, never what it computes.
CHANGEABLE = frozenset({"backend", "workers", "stall_timeout", "quiet", "plugin", "fault", "checkpoint_every",
                        "overwrite", "out", "fmnist_dir"})
#: Options that are the recorded run's only unless given again (a fault injected once is not injected again).
NOT_INHERITED = frozenset({"fault", "overwrite", "quiet", "stall_timeout", "backend"})


@dataclass
class ResumePoint:
    """A trace to go on with: its status, the options of its run, the constants it derived, its checkpoint (None:
    it has none yet, and the run starts over)."""

    path: Path
    status: str
    options: dict[str, Any]
    n_workers: int
    L: float | None
    f_star: float | None
    fingerprint: str | None
    n_features: int
    checkpoint: Checkpoint | None
    history: list[dict[str, Any]]  # the resumes before this one

    @property
    def rounds(self) -> int:
        """Rounds kept (those up to the checkpoint)."""
        return self.checkpoint.rounds if self.checkpoint is not None else 0


def read_resume_point(path: str | Path) -> ResumePoint:
    """Read a trace for a resume; InputError('resume', path, why) when it is not a trace this version can resume."""
    p = Path(path)

    def refuse(why: str) -> InputError:
        return InputError("resume", str(path), why)

    try:
        mode = os.stat(p).st_mode
    except OSError as exc:
        raise refuse(f"cannot be read: {exc.strerror}") from None
    except ValueError as exc:  # a NUL in the path
        raise refuse(f"is not a path: {exc}") from None
    if not stat.S_ISREG(mode):
        raise refuse("is not a regular file")
    if not h5py.is_hdf5(p):
        raise refuse("is not an HDF5 file")
    try:
        with h5py.File(p, "r") as f:
            attrs = dict(f.attrs)
            if "run_config" not in attrs or "status" not in attrs:
                raise refuse("is not a trace of a run this version can resume (no recorded run configuration)")
            options = json.loads(text_of(attrs["run_config"]))
            resolved = json.loads(text_of(attrs["config"]))
            history = json.loads(text_of(attrs.get("resumes", "[]")))
            if not isinstance(options, dict) or not isinstance(resolved, dict) or not isinstance(history, list):
                raise ValueError("its run_config, config or resumes attribute is not what this version writes")
            n_workers = int(attrs["N"])
            point = None
            if "checkpoint" in f:
                try:
                    point = Checkpoint.read(f["checkpoint"], n_workers)
                except Exception as exc:  # noqa: BLE001 - whatever is wrong in it, it is named, not raised
                    raise refuse(f"its checkpoint is damaged ({type(exc).__name__}: {exc})") from None
                if point.rounds > f["rounds/round"].shape[0] or point.evals > f["evals/round"].shape[0]:
                    raise refuse("its checkpoint is ahead of its rows (the file was edited)")
            f_star = attrs.get("f_star")
            fingerprint = text_of(attrs["data_fingerprint"]) if "data_fingerprint" in attrs else None
            return ResumePoint(p, text_of(attrs["status"]), options, n_workers, resolved.get("L"),
                               None if f_star is None else float(f_star), fingerprint,
                               int(resolved.get("n_features", 0)), point, history)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - a damaged or foreign file is named in one line, whatever it holds
        raise refuse(f"cannot be read as a trace ({type(exc).__name__}: {exc})") from None


def resumed_config(point: ResumePoint, given: dict[str, Any]) -> Config:
    """The recorded run's configuration, with the `given` options that may change (CHANGEABLE); a given option that
    would change the run is refused, naming it, its value and the recorded one."""
    options = {k: v for k, v in point.options.items() if k not in NOT_INHERITED}
    for key, value in given.items():
        recorded = point.options.get(key)
        if key == "out":
            if value is not None and Path(value).resolve() != point.path.resolve():
                raise InputError("out", value, f"differs from the trace being resumed ({point.path}): a resume goes on "
                                               "writing that trace")
            continue
        if key == "workers" and value is not None and value != point.n_workers:
            raise InputError("workers", value, f"differs from the run recorded in {point.path} (N={point.n_workers})")
        if key not in CHANGEABLE and _plain(value) != _plain(recorded):
            raise InputError(key, value, f"differs from the run recorded in {point.path} ({key}={recorded!r}); only "
                                         f"{', '.join(sorted(CHANGEABLE))} may change on a resume")
        options[key] = value
    options["out"], options["overwrite"], options["workers"] = str(point.path), True, point.n_workers
    load_plugins(options.get("plugin", ()))  # the recorded run's plug-ins define its names
    return Config.from_mapping(options, source=f"the run recorded in {point.path}")


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value
