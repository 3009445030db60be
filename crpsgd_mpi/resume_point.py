"""Resuming a run from its trace: what the trace says about the run (`ResumePoint`), and the configuration that goes
on with it (`resumed_config`): the recorded one, with only the options that do not change the run's numbers
allowed to differ."""

from __future__ import annotations

import json
import math
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .checkpoint import Checkpoint, DamagedCheckpoint, UnverifiableCheckpoint, text_of
from .config import Config
from .errors import InputError
from .registry import load_plugins
from .trace import STATUSES

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
    """Read a trace for a resume; InputError('resume', path, why) when it is not a trace this version can resume.
    Nothing is imported and nothing written: the header's values are checked, and a checkpoint is verified
    (its digest, then every value it holds: `Checkpoint.read`)."""
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
                raise _BadHeader("its run_config, config or resumes attribute is not what this version writes")
            header = _header(attrs, options, resolved, history)
            point = None
            if "checkpoint" in f:
                try:
                    if not isinstance(f.get("checkpoint", getlink=True), h5py.HardLink) \
                            or not isinstance(f["checkpoint"], h5py.Group):
                        raise DamagedCheckpoint("it is not a group of this trace")
                    point = Checkpoint.read(f["checkpoint"], header["N"], header["seed"])
                except UnverifiableCheckpoint as exc:
                    raise refuse(str(exc)) from None
                except DamagedCheckpoint as exc:
                    raise refuse(f"its checkpoint is damaged ({exc})") from None
            return ResumePoint(p, header["status"], options, header["N"], header["L"], header["f_star"],
                               header["fingerprint"], header["n_features"], point, history)
    except InputError:
        raise
    except _BadHeader as exc:
        raise refuse(f"cannot be read as a trace ({exc})") from None
    except Exception as exc:  # noqa: BLE001 - a damaged or foreign file is named in one line, whatever it holds
        raise refuse(f"cannot be read as a trace ({type(exc).__name__}: {exc})") from None


class _BadHeader(ValueError):
    """An attribute of the trace that a resume uses holds what no run writes."""


def _header(attrs: dict[str, Any], options: dict[str, Any], resolved: dict[str, Any],
            history: list[Any]) -> dict[str, Any]:
    """The trace's attributes a resume uses, checked: _BadHeader naming the first that no run writes."""
    def integer(key: str, low: int) -> int:
        a = np.asarray(attrs.get(key))
        if a.shape != () or a.dtype.kind not in "iu" or not low <= int(a) < 2**63:
            raise _BadHeader(f"its {key} attribute {attrs.get(key)!r} is not an integer >= {low}")
        return int(a)

    status = text_of(attrs["status"])
    if status not in STATUSES:
        raise _BadHeader(f"its status {status!r} is not one of {', '.join(STATUSES)}")
    n_workers, seed, T = integer("N", 1), integer("seed", 0), integer("T", 1)
    algorithm = text_of(attrs.get("algorithm", ""))
    for key, recorded in (("T", T), ("seed", seed), ("algorithm", algorithm)):
        if options.get(key) != recorded or isinstance(options.get(key), bool):
            raise _BadHeader(f"its run_config's {key} {options.get(key)!r} is not the run's ({recorded!r})")
    if options.get("workers") not in (None, n_workers):
        raise _BadHeader(f"its run_config's workers {options.get('workers')!r} is not the run's N={n_workers}")
    if not all(isinstance(entry, dict) for entry in history):
        raise _BadHeader("its resumes attribute is not a list of records")
    L = resolved.get("L")
    if L is not None and not (isinstance(L, (int, float)) and not isinstance(L, bool) and 0 < L < math.inf):
        raise _BadHeader(f"its config's L {L!r} is not a positive number")
    n_features = resolved.get("n_features", 0)
    if isinstance(n_features, bool) or not isinstance(n_features, int) or n_features < 0:
        raise _BadHeader(f"its config's n_features {n_features!r} is not a count")
    f_star = attrs.get("f_star")
    if f_star is not None:
        a = np.asarray(f_star)
        if a.shape != () or a.dtype.kind != "f" or not np.isfinite(a):
            raise _BadHeader(f"its f_star attribute {f_star!r} is not a finite number")
        f_star = float(a)
    fingerprint = text_of(attrs["data_fingerprint"]) if "data_fingerprint" in attrs else None
    return {"status": status, "N": n_workers, "seed": seed, "L": L, "f_star": f_star, "fingerprint": fingerprint,
            "n_features": n_features}


def resumed_config(point: ResumePoint, given: dict[str, Any]) -> Config:
    """The recorded run's configuration, with the `given` options that may change (CHANGEABLE); a given option that
    would change the run is refused, naming it, its value and the recorded one. Only the plug-ins in `given` are
    imported: a plug-in the trace names and `given` lacks is refused (a trace never chooses what code runs)."""
    plugins = _as_names(given.get("plugin", ()))
    _check_plugins(point, plugins)
    options = {k: v for k, v in point.options.items() if k not in NOT_INHERITED}
    if "test_samples" not in options and options.get("model") in ("resnet20", "cnn"):
        # a network run recorded before evaluations were sized to the run evaluates as it did: 10000 training
        # samples, the whole test set (at most 2^62 images)
        options["test_samples"] = 2**62
        options["eval_samples"] = options.get("eval_samples") or 10_000
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
    options["plugin"] = plugins
    load_plugins(plugins)  # the user's: they define the run's names
    try:
        cfg = Config.from_mapping(options, source=f"the run recorded in {point.path}")
    except InputError as exc:
        if exc.field in given:
            raise
        raise InputError("resume", str(point.path), f"its recorded run configuration is not valid ({exc})") from None
    if point.checkpoint is not None:
        if cfg.eval_points is None:  # a run records the points it used; without them the plan (numpy) raised this
            raise TypeError(f"the run recorded in {point.path} has no eval_points to check its checkpoint's plan by")
        try:
            point.checkpoint.check_plan(cfg.T, cfg.eval_points)
        except DamagedCheckpoint as exc:
            raise InputError("resume", str(point.path), f"its checkpoint is damaged ({exc})") from None
    return cfg


#: At most this many of the plug-ins a trace names are listed in a refusal.
_LISTED_PLUGINS = 5


def _check_plugins(point: ResumePoint, given: list[str]) -> None:
    """InputError listing the plug-ins the trace's run used that `given` does not name (the same module, or the
    same file by whatever path)."""
    recorded = point.options.get("plugin", [])
    if recorded is None:
        recorded = []
    if not isinstance(recorded, list) or not all(isinstance(name, str) for name in recorded):
        raise InputError("resume", str(point.path), "its run_config's plugin is not a list of plug-in names")
    have = {_plugin_identity(name) for name in given}
    missing = [name for name in dict.fromkeys(recorded) if _plugin_identity(name) not in have]
    if missing:
        shown = " ".join(f"--plugin {name}" for name in missing[:_LISTED_PLUGINS])
        more = f" (and {len(missing) - _LISTED_PLUGINS} more)" if len(missing) > _LISTED_PLUGINS else ""
        raise InputError("resume", str(point.path), f"its run used plug-ins that a resume imports only when given: "
                                                    f"{', '.join(map(repr, missing[:_LISTED_PLUGINS]))}{more}; if you "
                                                    f"trust them, pass them again: {shown}{more}")


def _plugin_identity(name: str) -> str:
    """A plug-in file by its real path (any name for it), a module by its name."""
    try:
        if name.endswith(".py") or Path(name).is_file():
            return "file:" + str(Path(name).resolve())
    except (OSError, ValueError):
        pass
    return "module:" + name


def _as_names(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value
