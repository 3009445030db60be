"""What the machine can give a run: the memory budget, the plan of a run's large arrays, one-line refusals."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import InputError

if TYPE_CHECKING:
    from .config import Config

#: A run may plan on this share of the memory available when it starts. The plan counts only the large arrays
#: (data, index permutation, batch buffers, model-sized vectors, evaluation plan); the rest of the share is the
#: margin for what it leaves out (Python, numpy, h5py, MPI, temporaries of the kernels).
SAFETY = 0.8
#: Bytes of memory to assume available instead of asking the machine (tests; a smaller share of a shared host).
MEMORY_ENV = "CRPSGD_MEMORY_LIMIT"
#: Largest value of a count stored in the trace as a 64-bit signed integer.
INT64_MAX = 2**63 - 1
#: Largest SFO budget T: counts and evaluation targets (computed through float64) stay inside int64.
MAX_T = 2**62
#: Largest finite magnitude accepted for a squared row norm of the data, lam or theta: the smoothness constant
#: L <= max squared row norm / 4 + 2 lam stays far from overflow, so gamma = 1/L is meaningful.
MAX_MAGNITUDE = 1e150
#: Bytes a worker costs beyond its vectors: its random generator (about 1.1 KB measured), shard and views.
WORKER_OVERHEAD = 2048
#: Model-sized vectors besides the per-worker ones: iterates, the evaluation's, L-BFGS's history for f* (maxcor 30).
FIXED_VECTORS = 96
#: Model-sized vectors held per local worker: model, gradient, evaluation row, power-iteration row.
VECTORS_PER_WORKER = 4
#: ... and with momentum: the buffer and local SGD's averaged payload (2 vectors); a checkpoint also gathers all N
#: workers' buffers on every process.
MOMENTUM_VECTORS_PER_WORKER = 3
#: Longest path the kernel takes (bytes, its terminating NUL included: Linux's PATH_MAX) and longest name of one
#: component (NAME_MAX of every common Linux file system).
PATH_MAX = 4096
NAME_MAX = 255


@dataclass(frozen=True)
class Need:
    """One planned allocation: the option that sets it (named when it dominates), its value, bytes, what it is."""

    field: str
    value: object
    nbytes: float
    what: str


#: Evaluation points of a run that does not set --eval-points (networks: at most this many, see
#: ledger.evaluation_budget); config.DEFAULT_EVAL_POINTS.
DEFAULT_EVAL_POINTS = 40


def human(nbytes: float) -> str:
    """Bytes in decimal units, two significant digits at least: '8.0 TB', '23 GB', '512 B'."""
    for unit, size in (("EB", 1e18), ("PB", 1e15), ("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if nbytes >= size:
            value = nbytes / size
            return f"{value:.1f} {unit}" if value < 100 else f"{value:.0f} {unit}"
    return f"{nbytes:.0f} B"


def available_memory() -> tuple[int, str]:
    """(bytes, who says so, as the start of a sentence): $CRPSGD_MEMORY_LIMIT if set, else MemAvailable of
    /proc/meminfo (else the free physical pages), lowered to what a cgroup memory limit leaves."""
    text = os.environ.get(MEMORY_ENV, "").strip()
    if text:
        if not text.isascii() or not text.isdigit() or int(text) <= 0:
            raise InputError(MEMORY_ENV, text, "must be a positive number of bytes")
        return int(text), f"${MEMORY_ENV} says"
    avail = _meminfo_available()
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError):
            avail = 1 << 62  # nothing to go by: plan-size checks reduce to the range checks
    left = _cgroup_left()
    if left is not None and left < avail:
        return left, "its memory cgroup leaves"
    return avail, "this machine has"


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo", "rb") as fh:
            for line in fh.read(1 << 16).decode("ascii", "replace").splitlines():
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_left() -> int | None:
    """Bytes the process's cgroup (v2, else v1) still allows, if it has a limit."""
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            with open(limit_file, "rb") as fh:
                limit_text = fh.read(64).decode("ascii").strip()
            if not limit_text.isdigit():
                continue  # "max": no limit
            with open(usage_file, "rb") as fh:
                usage = int(fh.read(64).decode("ascii").strip())
        except (OSError, ValueError):
            continue
        limit = int(limit_text)
        if limit >= 1 << 60:  # v1's "no limit" is a huge number
            continue
        return max(limit - usage, 0)
    return None


def process_memory_left() -> tuple[int, str] | None:
    """(bytes this process may still map, who says so) under its own limits: the address-space limit (RLIMIT_AS,
    `ulimit -v`) less what it has mapped (VmSize), the data-segment limit (RLIMIT_DATA, `ulimit -d`) less its data
    (VmData); the smaller; None when neither limit is set. Per process, unlike the host's memory."""
    import resource

    best: tuple[int, str] | None = None
    for limit, key, who in ((resource.RLIMIT_AS, "VmSize", "its address-space limit (ulimit -v) leaves"),
                            (resource.RLIMIT_DATA, "VmData", "its data-segment limit (ulimit -d) leaves")):
        try:
            soft = resource.getrlimit(limit)[0]
        except (OSError, ValueError):
            continue
        if soft == resource.RLIM_INFINITY or soft < 0:
            continue
        left = max(soft - (_status_bytes(key) or 0), 0)
        if best is None or left < best[0]:
            best = (left, who)
    return best


def _status_bytes(key: str) -> int | None:
    """A `kB` field of /proc/self/status (VmSize, VmData) in bytes."""
    try:
        with open("/proc/self/status", "rb") as fh:
            for line in fh.read(1 << 16).decode("ascii", "replace").splitlines():
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def require(needs: Sequence[Need], processes: int = 1) -> None:
    """Refuse, naming the option of the largest need, when `processes` times the needs exceed the host's budget, or
    the needs of this one process exceed what its own limits (`ulimit -v`, `ulimit -d`) leave it."""
    if not needs:
        return
    each = sum(n.nbytes for n in needs)
    total = processes * each
    top = max(needs, key=lambda n: n.nbytes)
    avail, source = available_memory()
    if total > SAFETY * avail:
        who = f" for the {processes} processes of this job on this host" if processes > 1 else ""
        raise InputError(top.field, top.value,
                         f"needs about {human(total)} of memory{who}, {human(processes * top.nbytes)} of it for "
                         f"{top.what}; {source} {human(avail)} available and a run may plan on {SAFETY:.0%} of it")
    own = process_memory_left()
    if own is not None and each > SAFETY * own[0]:
        raise InputError(top.field, top.value,
                         f"needs about {human(each)} of memory in each process, {human(top.nbytes)} of it for "
                         f"{top.what}; {own[1]} {human(own[0])} to this process and a run may plan on "
                         f"{SAFETY:.0%} of it")


def plan_run(cfg: Config, n_workers: int, local_workers: int, n_rows: int, n_columns: int, batch: tuple[int, str],
             sizes: tuple[tuple[str, object], tuple[str, object]], nnz: int | None = None, sparse: bool = False,
             extra: Sequence[Need] = ()) -> list[Need]:
    """The large arrays one process allocates for a run, each tied to the option that sets its size.

    `n_columns` counts the intercept; `batch` is the largest per-worker batch and the option that sets it (the
    algorithm's answer); `sizes` the (option, value) that sets the rows and the one that sets the columns (the data
    source's answer); `nnz` (sparse data held whole by the source, LIBSVM) and `sparse` (the shards stay CSR)
    describe a sparse file; `extra` is what the source itself needs. Dense shards are counted twice: a shard and
    its copy exist while loading (re-ordering, adding the intercept, stacking the local shards into one array)."""
    (rows_field, rows_value), (cols_field, cols_value) = sizes
    k, N, d = local_workers, n_workers, n_columns
    local_rows = min(n_rows, -(-n_rows // N) * k)
    needs = [Need(rows_field, rows_value, 8.0 * n_rows, f"the row permutation ({n_rows} rows x 8 bytes)")]
    if sparse and nnz is not None:
        local_nnz = nnz * local_rows / max(n_rows, 1) + local_rows * cfg.intercept
        needs.append(Need(rows_field, rows_value, 2 * (12.0 * local_nnz + 8.0 * local_rows),
                          f"the sparse shards (2 x {local_nnz:.0f} non-zeros x 12 bytes)"))
    else:
        needs.append(Need(rows_field, rows_value, 2 * 8.0 * local_rows * d,
                          f"the data (2 x {local_rows} rows x {d} columns x 8 bytes: the shards and a copy while "
                          "loading)"))
    momentum = cfg.momentum > 0
    vectors = (VECTORS_PER_WORKER + MOMENTUM_VECTORS_PER_WORKER * momentum) * k + N * (1 + momentum) + FIXED_VECTORS
    needs.append(Need(cols_field, cols_value, 8.0 * vectors * d,
                      f"model-sized vectors ({vectors} vectors of {d} x 8 bytes)"))
    needs.append(Need("workers", n_workers, float(WORKER_OVERHEAD * k),
                      f"{k} virtual workers' generators and shards ({WORKER_OVERHEAD} bytes each)"))
    largest, batch_field = batch
    if sparse:
        per_row = 12.0 * (nnz or 0) / max(n_rows, 1) + 40.0
        needs.append(Need(batch_field, getattr(cfg, batch_field), per_row * largest,
                          f"the sparse batch of up to {largest} rows"))
    else:  # the product of two settings: the larger factor is named
        field, value = (batch_field, getattr(cfg, batch_field)) if largest >= k else ("workers", n_workers)
        needs.append(Need(field, value, 2.0 * k * largest * (8.0 * d + 32.0),
                          f"the batch buffers (2 x {k} workers x batch up to {largest} x {d} features x 8 bytes)"))
    points = cfg.eval_points or DEFAULT_EVAL_POINTS
    needs.append(Need("eval_points", cfg.eval_points, 32.0 * points, f"the evaluation plan ({points} points x 32 bytes)"))
    return [*needs, *extra]


# ---- files named by the user ---------------------------------------------------------------------

_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))


def shown(obj: object, limit: int = 160) -> str:
    """Text echoed from a file or an exception: printable ASCII only, on one line, at most `limit` characters."""
    text = " ".join("".join(ch if " " <= ch <= "~" else "?" for ch in str(obj).replace("\n", " ")).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def usable_path(path: str | os.PathLike[str], field: str) -> None:
    """Refuse, naming `field`, a path that no system call can take: longer than PATH_MAX - 1 bytes, with a component
    longer than NAME_MAX bytes, or one whose symbolic links loop (or lengthen it beyond PATH_MAX) on the way to it.
    A path that does not exist (yet) is not refused here: that is for whoever reads or creates it."""
    raw = os.fsencode(path)
    text = os.fsdecode(raw)
    value = text if len(text) <= 80 else text[:48] + "..." + text[-24:]
    if len(raw) >= PATH_MAX:
        raise InputError(field, value, f"is a path of {len(raw)} bytes: the system takes at most {PATH_MAX - 1}")
    longest = max(raw.split(b"/"), key=len)
    if len(longest) > NAME_MAX:
        raise InputError(field, value, f"has a name of {len(longest)} bytes in its path: a file or folder name has at "
                                       f"most {NAME_MAX}")
    try:
        os.stat(raw)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InputError(field, value, "cannot be resolved: its symbolic links loop (too many levels of "
                                           "symbolic links)") from None
        if exc.errno == errno.ENAMETOOLONG:
            raise InputError(field, value, f"is longer than {PATH_MAX - 1} bytes once its symbolic links are "
                                           "followed") from None
    except ValueError as exc:  # an embedded NUL
        raise InputError(field, value, f"is not a usable path: {shown(exc)}") from None


def regular_file(path: str | os.PathLike[str], field: str) -> os.stat_result:
    """The stat of `path` if it is a regular file (symbolic links followed); otherwise an InputError naming `field`
    and the path: missing, a directory, a FIFO, a device or a socket is refused without opening it."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise InputError(field, str(path), "no such file") from None
    except NotADirectoryError:
        raise InputError(field, str(path), "no such file (a folder on its path is a file)") from None
    except OSError as exc:
        raise InputError(field, str(path), f"cannot be read: {shown(exc.strerror or exc)}") from None
    except ValueError as exc:  # e.g. an embedded NUL
        raise InputError(field, str(path), f"is not a usable path: {shown(exc)}") from None
    return _must_be_regular(st, path, field)


def _must_be_regular(st: os.stat_result, path: str | os.PathLike[str], field: str) -> os.stat_result:
    if stat.S_ISDIR(st.st_mode):
        raise InputError(field, str(path), "is a directory, not a file")
    if not stat.S_ISREG(st.st_mode):
        kind = next((name for test, name in _KINDS if test(st.st_mode)), "not a regular file")
        raise InputError(field, str(path), f"is {kind}, not a regular file" if kind.startswith("a ") else kind)
    return st


def open_regular(path: str | os.PathLike[str], field: str) -> tuple[int, os.stat_result]:
    """(an open read-only descriptor, its stat) of the regular file `path`: checked before opening (a FIFO is never
    opened, so nothing blocks) and again on the descriptor (the path may have changed in between)."""
    regular_file(path, field)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        raise InputError(field, str(path), f"cannot be read: {shown(exc.strerror or exc)}") from None
    try:
        st = _must_be_regular(os.fstat(fd), path, field)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def readable_file(path: str | os.PathLike[str], field: str) -> int:
    """The size in bytes of the regular file `path` after checking it can be opened for reading (a library then
    opens it by name); refused as `regular_file` does, and when permission is denied."""
    fd, st = open_regular(path, field)
    os.close(fd)
    return st.st_size


def read_small_file(path: str | os.PathLike[str], field: str, max_bytes: int) -> bytes:
    """The whole content of the regular file `path`, refused beyond `max_bytes` (read at most that plus one byte,
    whatever its size claims)."""
    fd, st = open_regular(path, field)
    try:
        if st.st_size > max_bytes:
            raise InputError(field, str(path), f"is {st.st_size} bytes; at most {max_bytes} are read")
        chunks, size = [], 0
        while size <= max_bytes:
            chunk = os.read(fd, max_bytes + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise InputError(field, str(path), f"cannot be read: {shown(exc.strerror or exc)}") from None
    finally:
        os.close(fd)
    if size > max_bytes:
        raise InputError(field, str(path), f"is more than {max_bytes} bytes; at most {max_bytes} are read")
    return b"".join(chunks)
