"""The HDF5 trace: written incrementally and safely by one process (rank 0), read back by `load_trace`."""

from __future__ import annotations

import fcntl
import gc
import hashlib
import json
import os
import re
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from .errors import InputError, TraceError
from .ledger import EVAL_COLUMNS, ROUND_COLUMNS

if TYPE_CHECKING:
    import pandas as pd

#: 2: evals gained test_loss and test_accuracy (NaN for problems without a test set); 3: rounds gained gamma (the
#: step size of each round). Traces of versions 1 and 2 still load, and resume (their rounds then gain the column,
#: NaN for the rounds recorded before).
SCHEMA_VERSION = 3
STATUSES = ("running", "complete", "failed", "interrupted", "diverged")
CHUNK = 1024
_FLOAT_COLUMNS = {"wall_time", "gamma", "loss", "grad_norm_sq", "suboptimality", "test_loss", "test_accuracy"}


#: Room kept free on the trace's file system: HDF5 needs some for its metadata, and a run that stops for lack of
#: space must still be able to mark its trace failed.
DISK_MARGIN = 1 << 20
#: Attributes that say how a run ended (a resume removes them; the end writes them again).
END_ATTRS = ("message", "rounds_total", "rounds_written", "sfo_per_worker", "unspent_sfo", "bytes_per_rank",
             "wall_time", "eval_time")
#: Seconds a write waits for another process (h5dump, a viewer) that holds HDF5's lock on the trace.
LOCK_PATIENCE = 10.0


class TraceWriteError(RuntimeError):
    """The trace could not be written (a full disk, a lost file system, another process replacing it)."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path, self.reason = path, reason
        super().__init__(f"cannot write the trace {path}: {reason}")


def check_output_path(path: str | Path, overwrite: bool, inputs: Sequence[str | Path] = ()) -> Path:
    """Refuse an --out that exists (unless overwrite), is not a regular file, is one of the files the run reads
    (`inputs`), or lies where nothing can be written; create its folder. Nothing else is written here."""
    p = Path(path)
    other = same_file(p, inputs)
    if other is not None:
        raise InputError("out", str(path), f"is {other}, which this run reads: the trace would destroy it")
    if p.exists() or p.is_symlink():
        if not p.is_file():
            raise InputError("out", str(path), "exists and is not a regular file")
        if not overwrite:
            raise InputError("out", str(path), "exists (pass --overwrite to replace it)")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".{_stem(p)}.", suffix=".probe", dir=p.parent)
        os.close(fd)
        os.unlink(probe)
        st = os.statvfs(p.parent)
    except OSError as exc:
        raise InputError("out", str(path), f"cannot write in {p.parent}: {exc.strerror or exc}") from None
    if st.f_bavail * st.f_frsize < 2 * DISK_MARGIN:
        raise InputError("out", str(path), f"no space left on its device ({st.f_bavail * st.f_frsize // 1024} KB free, "
                         f"at least {2 * DISK_MARGIN // 1024} KB needed)")
    return p


def same_file(path: Path, files: Sequence[str | Path]) -> Path | None:
    """The first of `files` that `path` is, by any name (a symbolic or hard link, `..`): the same file when both exist
    (device and inode), else the same resolved path (a file the run will create, e.g. the f* cache; a dangling
    link to it). One stat each: a few thousand files (every loaded module) cost milliseconds."""
    real = os.path.realpath(path)
    try:
        st = os.stat(path)
        mine: tuple[int, int] | None = (st.st_dev, st.st_ino)
    except (OSError, ValueError):
        mine = None
    for other in map(Path, files):
        try:
            ost = os.stat(other)
        except (OSError, ValueError):
            ost = None
        if ost is not None:
            if mine is not None and (ost.st_dev, ost.st_ino) == mine:
                return other
        elif mine is None and os.path.realpath(other) == real:
            return other
    return None


#: This host's name as it goes into the names of a writer's temporary copies (letters, digits and '-' only).
_HOST = "".join(c if c.isascii() and (c.isalnum() or c == "-") else "-" for c in socket.gethostname())[:32] or "host"


def _stem(path: Path) -> str:
    """The trace's name as temporary names carry it: itself, or when long, its start and a digest of it (a
    temporary name must stay within the 255 bytes of a file name)."""
    name = path.name
    if len(os.fsencode(name)) <= 120:
        return name
    return name[:40] + "~" + hashlib.blake2b(os.fsencode(name), digest_size=8).hexdigest()


def _copy_prefix(path: Path) -> str:
    """How a writer's temporary copies of `path` begin: `.NAME.HOST.PID.` (then mkstemp's random part and `.writing`
    or `.creating`): whose copy it is can be told, and only a dead owner's copies are removed."""
    return f".{_stem(path)}.{_HOST}.{os.getpid()}."


def _remove_dead_copies(path: Path) -> None:
    """Remove the temporary copies of `path` whose writer is provably dead: a process of this host that no longer
    exists. Another host's, a live process's, and a name made otherwise (another trace whose name begins with this
    one's) are left alone."""
    pattern = re.compile(r"\." + re.escape(_stem(path)) + r"\.([A-Za-z0-9-]+)\.([0-9]+)\.[A-Za-z0-9_]+\.(?:writing|creating)")
    try:
        names = os.listdir(path.parent)
    except OSError:
        return
    for name in names:
        m = pattern.fullmatch(name)
        if m is None or m.group(1) != _HOST or _alive(int(m.group(2))):
            continue
        try:
            os.unlink(path.parent / name)
        except OSError:
            pass


def _alive(pid: int) -> bool:
    """False only when no process `pid` exists on this host."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):
        return True
    return True


class TraceWriter:
    """Creates the file with status 'running' (atomically: built under a temporary name, then moved into place;
    exclusively unless `overwrite`); every later change (appended rows, a checkpoint, the final status) is made to
    a copy that then replaces the file, so the file on disk is always one whole, readable version, a run killed at
    any instant keeps every row it had written, and readers never block the run. Before each change it checks
    that the file is still its own and that the disk has room; any failure is one TraceWriteError naming the path."""

    def __init__(self, path: str | Path, attrs: Mapping[str, Any], overwrite: bool = False) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()  # the MPI supervisor thread may finish the trace while rows are appended
        self._margin = DISK_MARGIN
        fd, name = tempfile.mkstemp(prefix=_copy_prefix(self.path), suffix=".creating", dir=self.path.parent)
        os.fchmod(fd, 0o666 & ~_umask())
        os.close(fd)
        tmp = Path(name)
        try:
            self._free(tmp, 4 * CHUNK * 8 * (len(ROUND_COLUMNS) + len(EVAL_COLUMNS)))
            self._guarded(lambda: self._create(tmp, attrs))
            with _folder_locked(self.path.parent):
                if not overwrite:  # reserve the name: a second run racing for the same --out is refused
                    try:
                        os.close(os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
                    except FileExistsError:
                        raise InputError("out", str(self.path), "exists (another run created it meanwhile)") from None
                os.replace(tmp, self.path)
                st = os.stat(self.path)
        finally:
            tmp.unlink(missing_ok=True)
        self._identity = (st.st_dev, st.st_ino)

    @classmethod
    def reopen(cls, path: str | Path) -> TraceWriter:
        """The writer of an existing trace (a resumed run goes on writing it), through any symbolic link to the file
        it names (the link is kept); the copies a dead writer left beside it are removed."""
        self = cls.__new__(cls)
        self.path = Path(os.path.realpath(path))
        self._lock = threading.Lock()
        self._margin = DISK_MARGIN
        try:
            st = os.stat(self.path)
        except OSError as exc:
            raise TraceWriteError(self.path, exc.strerror or str(exc)) from None
        self._identity = (st.st_dev, st.st_ino)
        _remove_dead_copies(self.path)
        return self

    @staticmethod
    def _create(tmp: Path, attrs: Mapping[str, Any]) -> None:
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

    def _free(self, where: Path, need: int, margin: int = DISK_MARGIN) -> None:
        """Refuse to write when fewer than `need` + `margin` bytes are free (finishing keeps a smaller margin, so
        that a run stopped for lack of space can still say so in its trace)."""
        try:
            st = os.statvfs(where.parent)
        except OSError as exc:
            raise TraceWriteError(self.path, f"its file system is gone: {exc.strerror}") from None
        free = st.f_bavail * st.f_frsize
        if free < need + margin:
            raise TraceWriteError(self.path, f"no space left on the device ({free // 1024} KB free, "
                                  f"{(need + margin) // 1024} KB needed)")

    def _own(self) -> None:
        try:
            st = os.stat(self.path)
        except OSError:
            raise TraceWriteError(self.path, "the file was removed by someone else") from None
        if (st.st_dev, st.st_ino) != self._identity:
            raise TraceWriteError(self.path, "the file was replaced by someone else (another run with --overwrite?)")

    def _guarded(self, write: Callable[[], None], patience: float = LOCK_PATIENCE) -> None:
        """Run one write; a reader holding HDF5's file lock (h5dump, a viewer) is waited for, up to `patience`
        seconds; any other failure is a TraceWriteError."""
        deadline = time.monotonic() + patience
        while True:
            try:
                write()
                return
            except (OSError, RuntimeError, ValueError, KeyError) as exc:
                _collect_quietly()  # h5py reports the failed close of the file from a destructor
                if _locked_by_a_reader(exc) and time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                errno_text = os.strerror(exc.errno) if isinstance(exc, OSError) and exc.errno else ""
                if _locked_by_a_reader(exc):
                    errno_text = f"another process held the file locked for {patience:g} s"
                raise TraceWriteError(self.path, errno_text or f"{type(exc).__name__}: {exc}") from None

    def _edit(self, edit: Callable[[h5py.File], None], need: int, margin: int | None = None,
              durable: bool = False) -> None:
        """Change the trace without ever leaving it half-written: copy it to a temporary file in its folder, apply
        `edit` to the copy, (with `durable`, flush it to the disk), and move it into place. A process killed at any
        instant leaves the old trace or the new one; a reader always opens a whole file."""
        with self._lock:
            self._own()
            self._free(self.path, self.path.stat().st_size + need, self._margin if margin is None else margin)
            fd, name = tempfile.mkstemp(prefix=_copy_prefix(self.path), suffix=".writing", dir=self.path.parent)
            os.fchmod(fd, 0o666 & ~_umask())
            os.close(fd)
            tmp = Path(name)
            try:
                def write() -> None:
                    shutil.copyfile(self.path, tmp)
                    with h5py.File(tmp, "r+") as f:
                        edit(f)
                    if durable:
                        _fsync(tmp)

                self._guarded(write)
                with _folder_locked(self.path.parent):  # no other run can replace the file between check and move
                    self._own()
                    os.replace(tmp, self.path)
                    st = os.stat(self.path)
                self._identity = (st.st_dev, st.st_ino)
                if durable:
                    _fsync(self.path.parent)
            finally:
                tmp.unlink(missing_ok=True)

    def append(self, group: str, columns: Mapping[str, np.ndarray]) -> None:
        """Append equal-length columns to `group` ('rounds' or 'evals')."""
        self.append_groups({group: columns})

    def append_groups(self, groups: Mapping[str, Mapping[str, np.ndarray]],
                      checkpoint: Callable[[h5py.Group], None] | None = None) -> None:
        """Append to several groups, in the given order, in one write; with `checkpoint`, also replace the trace's
        checkpoint (written by that function into group /checkpoint, over the previous one) in that same write, made
        durable: a checkpoint is
        never ahead of or behind the rows it matches."""
        todo = {g: cols for g, cols in groups.items() if len(next(iter(cols.values()))) > 0}
        if not todo and checkpoint is None:
            return
        need = sum(2 * len(next(iter(cols.values()))) * 8 * len(cols) for cols in todo.values())

        def edit(f: h5py.File) -> None:
            for group, columns in todo.items():
                _append(f[group], columns)
            if checkpoint is not None:
                checkpoint(f.require_group("checkpoint"))

        self._edit(edit, need, durable=checkpoint is not None)

    def truncate(self, rounds: int, evals: int, attrs: Mapping[str, Any]) -> None:
        """Keep the first `rounds` round rows and `evals` evaluation rows, drop what an ended run recorded about its
        end, set `attrs`, and mark the trace running again (a resume: the rows after its checkpoint will be written
        again, the same)."""
        def edit(f: h5py.File) -> None:
            for group, n in (("rounds", rounds), ("evals", evals)):
                for ds in f[group].values():
                    ds.resize((min(n, ds.shape[0]),))
            for key in END_ATTRS:
                if key in f.attrs:
                    del f.attrs[key]
            if "final" in f:
                del f["final"]
            if rounds == 0 and "checkpoint" in f:  # starting over
                del f["checkpoint"]
            f.attrs.update(attrs)
            f.attrs["status"] = "running"

        self._edit(edit, 0, durable=True)

    def last_words(self) -> None:
        """The run is ending (perhaps for lack of space): from now on keep only the smaller margin, so that the last
        rows and the final status still fit."""
        self._margin = DISK_MARGIN // 4

    def finish(self, status: str, x: np.ndarray | None, extra: Mapping[str, Any]) -> None:
        """Set the final status, the final iterate and summary attributes."""
        if status not in STATUSES:
            raise ValueError(status)

        def edit(f: h5py.File) -> None:
            if x is not None:
                g = f.require_group("final")
                if "x" in g:
                    del g["x"]
                g.create_dataset("x", data=np.asarray(x))
            for key, value in extra.items():
                f.attrs[key] = value
            if status == "complete" and "checkpoint" in f:  # nothing left to resume
                del f["checkpoint"]
            f.attrs["status"] = status

        self._edit(edit, 0 if x is None else 2 * np.asarray(x).nbytes, margin=DISK_MARGIN // 4, durable=True)

    def abandon(self) -> Path | None:
        """The trace cannot be finished: move it to a name no one takes for a result (`<name>.partial`); None if it
        is not ours any more."""
        with self._lock, _folder_locked(self.path.parent):
            try:
                self._own()
            except TraceWriteError:
                return None
            partial = self.path.with_name(self.path.name + ".partial")
            try:
                os.replace(self.path, partial)
            except OSError:
                return None
            return partial


@contextmanager
def _folder_locked(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on the trace's folder for the microseconds of a check-and-move (every TraceWriter
    moves files into place under it). File systems that cannot lock a folder (some NFS) go without."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:
            pass
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _locked_by_a_reader(exc: BaseException) -> bool:
    return isinstance(exc, BlockingIOError) or "unable to lock file" in str(exc).lower()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _collect_quietly() -> None:
    """Collect h5py's objects of a file that could not be written, without the noise their destructors make (the
    error itself has reached us as an exception)."""
    previous = sys.unraisablehook
    sys.unraisablehook = lambda info: None
    try:
        gc.collect()
    finally:
        sys.unraisablehook = previous


@dataclass
class Trace:
    """A trace read back: `attrs` (every JSON attribute parsed: `config`, `versions` and `run_config` as dicts,
    `resumes` as a list), `rounds` and `evals` as pandas DataFrames (one row per round / evaluation), `x` the final
    iterate (None unless complete)."""

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


#: Attributes that hold JSON: `Trace.attrs` gives them parsed, with the type each must have.
JSON_ATTRS = {"config": dict, "versions": dict, "run_config": dict, "resumes": list}


def load_trace(path: str | Path) -> Trace:
    """Read a trace written by any version of this package (schema >= 1). A file that is not a readable trace (not
    HDF5, not a trace, or damaged: a column missing or of another length, an attribute that is not what a run
    writes) is a TraceError (an InputError) naming it and what is wrong.

    Args:
        path: the trace file; it may be one a run is still writing (it is read without HDF5's lock).

    Returns:
        The trace: `attrs` with its JSON attributes parsed, `rounds` and `evals` as DataFrames, `x` the final
        iterate (None unless complete).

    Raises:
        TraceError: not HDF5, not a trace, or damaged."""
    import pandas as pd

    try:
        with h5py.File(path, "r", locking=False) as f:  # never block the run that is writing it
            _no_links(f)
            if not isinstance(f.get("rounds"), h5py.Group) or not isinstance(f.get("evals"), h5py.Group) \
                    or "status" not in f.attrs:
                raise TraceError(path, "not a crpsgd_mpi trace (no /rounds, /evals or status)")
            attrs = {k: _attr(k, v) for k, v in f.attrs.items()}
            rounds = pd.DataFrame(_columns(f["rounds"], "rounds"))
            evals = pd.DataFrame(_columns(f["evals"], "evals"))
            final = f.get("final")
            x = None
            if final is not None:
                item = final.get("x") if isinstance(final, h5py.Group) else None
                if not isinstance(item, h5py.Dataset) or item.dtype.kind != "f":
                    raise TraceError(path, "its final/x is not an array of numbers")
                x = item[()]
    except TraceError:
        raise
    except OSError as exc:
        raise TraceError(path, f"not a readable HDF5 file: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - whatever a damaged file makes h5py, numpy or pandas raise
        raise TraceError(path, f"damaged ({type(exc).__name__}: {exc})") from None
    if not isinstance(attrs["status"], str) or attrs["status"] not in STATUSES:
        raise TraceError(path, f"its status {attrs['status']!r} is not one of {', '.join(STATUSES)}")
    for key, kind in JSON_ATTRS.items():
        if key in attrs:
            try:
                attrs[key] = json.loads(attrs[key]) if isinstance(attrs[key], str) else attrs[key]
            except (ValueError, RecursionError) as exc:
                raise TraceError(path, f"its attribute {key!r} is not JSON ({type(exc).__name__}: {exc})") from None
            if not isinstance(attrs[key], kind):
                raise TraceError(path, f"its attribute {key!r} is not a JSON {'object' if kind is dict else 'list'}")
    return Trace(Path(path), attrs, rounds, evals, x)


def _no_links(f: h5py.File) -> None:
    """ValueError if what load_trace reads is a soft or external link (a trace holds its data itself; a link to
    another file is never followed)."""
    for name in ("rounds", "evals", "final"):
        if name in f and not isinstance(f.get(name, getlink=True), h5py.HardLink):
            raise ValueError(f"its /{name} is a link")
        g = f.get(name)
        if isinstance(g, h5py.Group):
            for key in g:
                if not isinstance(g.get(key, getlink=True), h5py.HardLink):
                    raise ValueError(f"its /{name}/{key} is a link")


def _attr(key: str, value: Any) -> Any:
    """An attribute as a run wrote it: text as str (h5py gives bytes for fixed-length strings)."""
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            raise ValueError(f"its attribute {key!r} is not UTF-8 text") from None
    return value


def _columns(g: h5py.Group, name: str) -> dict[str, np.ndarray]:
    """The columns of group `name`: one-dimensional arrays of numbers, all of one length."""
    out = {}
    for key, item in g.items():
        if not isinstance(item, h5py.Dataset) or item.ndim != 1 or item.dtype.kind not in "biuf":
            raise ValueError(f"its column {name}/{key} is not a one-dimensional array of numbers")
        out[key] = item[()]
    lengths = {len(v) for v in out.values()}
    if len(lengths) > 1:
        raise ValueError(f"its {name} columns have different lengths ({', '.join(f'{k}: {len(v)}' for k, v in out.items())})")
    return out


read_trace = load_trace


def equal_iterates(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    """Whether two traces' final iterates (`Trace.x`, None unless complete) are equal bit for bit, as
    `np.array_equal` compares them: two missing ones are equal, a missing and a present one are not."""
    if a is None or b is None:
        return a is b
    return bool(np.array_equal(a, b))


def _append(g: h5py.Group, columns: Mapping[str, np.ndarray]) -> None:
    """Append equal-length columns to the datasets of group g; a column that a trace of an earlier schema lacks
    (rounds/gamma) is created, NaN for the rows before."""
    n = len(next(iter(columns.values())))
    rows = g["round"].shape[0] if "round" in g else 0
    for name, values in columns.items():
        if name not in g and name in _FLOAT_COLUMNS:
            g.create_dataset(name, data=np.full(rows, np.nan), maxshape=(None,), chunks=(CHUNK,), dtype=np.float64)
        ds = g[name]
        old = ds.shape[0]
        ds.resize((old + n,))
        ds[old:] = values
