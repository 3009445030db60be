"""The Python API: `simulate(**options) -> Trace` and `load_trace(path) -> Trace`; the command line is a thin layer
over `execute`, which is what `simulate` runs too."""

from __future__ import annotations

import pickle
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from . import signals
from .comm import Backend, launched_by_mpi, make_backend
from .config import Config
from .errors import InputError, RunDiverged, RunFailed, RunInterrupted
from .outcome import EXIT_DIVERGED, EXIT_OK, say, show
from .params import key as param_key
from .params import keyed
from .registry import load_plugins
from .resume_point import ResumePoint, read_resume_point, resumed_config
from .session import Outcome, Prepared, Run, agree_on, decode_error, encode_error, interactive, prepare, summary
from .trace import Trace, load_trace

__all__ = ["config_from", "execute", "execute_resume", "load_trace", "resume", "simulate"]


def config_from(options: Mapping[str, Any], config_file: str | Path | None = None,
                text: frozenset[str] = frozenset()) -> Config:
    """A validated Config from options (command-line names with '_' or '-') over an optional TOML file; the
    plug-ins named by either are imported first, so that what they register can be named (and their parameters
    given); the options in `text` are command-line text, parsed strictly."""
    merged = Config.read_toml(config_file) if config_file is not None else {}
    given = keyed(options)
    plugins = [p for source in (merged, given) for p in plugin_list(source.get("plugin"))]  # each checked: strings
    merged.update(given)
    if plugins:  # the file's and the command line's, both
        merged["plugin"] = list(dict.fromkeys(plugins))
    load_plugins(merged.get("plugin", ()))
    return Config.from_mapping(merged, source=str(config_file) if config_file is not None else "",
                               text=frozenset(param_key(k) for k in text))


def refuse(exc: InputError) -> None:
    """Bad input found before any backend existed: under MPI every process agrees on it first (another process may
    have found none, or another), rank 0 says it, and all of them leave together; in one process, just say it."""
    if not launched_by_mpi():
        _say_input_error(exc, True)
        return
    backend = make_backend("mpi", None, "ordered")
    rank, text = backend.agree(encode_error(exc))[0]
    _say_input_error(exc if rank == backend.rank else decode_error(rank, text), backend.is_root)
    backend.close()


def _say_input_error(exc: InputError, is_root: bool) -> None:
    if is_root:
        where = f" (rank {exc.rank})" if exc.rank is not None else ""
        say(f"crpsgd_mpi: error{where}: {exc}")
    exc.reported = True


def plugin_list(value: Any) -> list[str]:
    """The plug-ins a `plugin` setting names: a string or a list of non-empty strings (anything else is refused
    before anything is imported, naming the value)."""
    if value is None:
        return []
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(v, str) and v for v in items):
        raise InputError("plugin", value, "must be a string or a list of strings (module names or Python files)")
    return list(items)


def execute(cfg: Config, print_summary: bool = False, config_file: str | Path | None = None,
            say_errors: bool = False) -> Outcome:
    """Run `cfg` on its backend (MPI under mpiexec, else in this process) and return how it ended on this process.
    Bad input raises InputError (on every process alike; with `say_errors` rank 0 has said it in one line, before
    the processes' last meeting, so no launcher can drop the line); a failure under MPI may end the process."""
    backend = make_backend(cfg.backend, None, cfg.reduction, cfg.stall_timeout)
    try:
        if cfg.workers is not None:
            backend.assign(cfg.workers)
        prepared = prepare(cfg, backend, config_file)
    except InputError as exc:
        if say_errors:
            _say_input_error(exc, backend.is_root)
        backend.close()
        raise
    return _run(prepared, print_summary)


def _run(prepared: Prepared, print_summary: bool) -> Outcome:
    """Run what every process prepared; the summary (rank 0, unless quiet) when it completes."""
    cfg, backend = prepared.cfg, prepared.backend
    with np.errstate(all="ignore"):  # an overflow is found and said by the divergence check, never as a warning
        outcome = Run(prepared, progress=not cfg.quiet and interactive()).execute()
    if print_summary and outcome.status == "complete" and backend.is_root and not cfg.quiet:
        show(summary(cfg, outcome, backend.n_workers, backend.name))
    return outcome


def execute_resume(path: str | Path, options: Mapping[str, Any], print_summary: bool = False,
                   say_errors: bool = False) -> Outcome:
    """Go on with the run recorded in the trace `path` from its last checkpoint (from the start when it has none),
    on this backend, with `options` (only those that do not change the run's numbers may differ from the recorded
    ones; the plug-ins the run used must be among `options['plugin']`: only those are imported, never the ones a
    trace names). A complete trace is left as it is (exit status 0), a diverged one too (3). A damaged checkpoint,
    like any bad input, is an InputError raised before the trace is touched (as for `execute`)."""
    given = keyed(options)
    if "plugin" in given:
        given["plugin"] = plugin_list(given["plugin"])
    load_plugins(given.get("plugin", ()))
    backend: Backend | None = None
    try:
        if launched_by_mpi() and given.get("backend", "auto") != "local":
            stall = given.get("stall_timeout", Config.__dataclass_fields__["stall_timeout"].default)
            backend = make_backend("mpi", None, "ordered", float(stall))
            point, cfg = _shared_resume_point(backend, path, given)
            backend.reduction = cfg.reduction
        else:
            point = read_resume_point(path)
            cfg = resumed_config(point, given)
            backend = make_backend(cfg.backend, None, cfg.reduction, cfg.stall_timeout)
        try:
            backend.assign(point.n_workers)  # the run's N, over however many processes this job has
        except InputError as exc:
            raise InputError("resume", str(path), f"was run by {point.n_workers} workers: {exc.reason}") from None
        ended = _ended(point)
        if ended is not None:
            if backend.is_root and not cfg.quiet and ended.status == "complete":
                say(f"crpsgd_mpi: {ended.message}")
            backend.close()
            return ended
        prepared = prepare(cfg, backend, None, resume=point)
    except InputError as exc:
        if say_errors:
            _say_input_error(exc, backend.is_root if backend is not None else True)
        if backend is not None:
            backend.close()
        raise
    if backend.is_root and not cfg.quiet:
        where = f"round {point.rounds}" if point.checkpoint is not None else "the start (it has no checkpoint yet)"
        say(f"crpsgd_mpi: resuming {point.path} ({point.status}) from {where}")
    return _run(prepared, print_summary)


def _shared_resume_point(backend: Backend, path: str | Path, given: dict[str, Any]) -> tuple[ResumePoint, Config]:
    """Rank 0 reads the trace (other hosts may not see it); every rank learns the point, or the error."""
    found: list[ResumePoint] = []
    agree_on(backend, _attempt(path, lambda: found.append(read_resume_point(path))) if backend.is_root else None)
    point: ResumePoint = pickle.loads(backend.share(pickle.dumps(found[0]) if backend.is_root else None))
    made: list[Config] = []
    agree_on(backend, _attempt(path, lambda: made.append(resumed_config(point, given))))  # every rank: its plug-ins
    return point, made[0]


def _attempt(path: str | Path, check: Callable[[], object]) -> InputError | None:
    """The InputError `check` raises, None if none; any other exception as an InputError naming the trace (the
    other ranks wait for the verdict: none may be left waiting)."""
    try:
        check()
    except InputError as exc:
        return exc
    except Exception as exc:  # noqa: BLE001 - whatever failed, the other ranks must hear the verdict
        return InputError("resume", str(path), f"cannot be resumed ({type(exc).__name__}: {exc})")
    return None


def _ended(point: ResumePoint) -> Outcome | None:
    """The outcome of resuming a run that has already ended for good (None: it can go on)."""
    if point.status == "complete":
        return Outcome("complete", EXIT_OK, point.path, f"{point.path} is complete: nothing to resume")
    if point.status == "diverged":
        return Outcome("diverged", EXIT_DIVERGED, point.path, f"{point.path} ended so; resuming would diverge again "
                                                              "(start a new run with a lower --gamma)")
    return None


def resume(path: str | Path, **options: Any) -> Trace | None:
    """Go on with the run recorded in the trace `path` (see `execute_resume`) and return the trace, as `simulate`
    does. Options that change the run's numbers are refused (InputError); `backend`, `workers` (the same N),
    `checkpoint_every`, `stall_timeout`, `quiet`, `plugin`, `fault` may be given. The plug-ins the run used must be
    given again (`plugin=[...]`): a trace that names others is refused, and they are not imported.

    Args:
        path: a trace written with `out=` (or `--out`), stopped anywhere.
        **options: the options that may differ from the recorded ones (above).

    Returns:
        The trace, as `simulate` returns it (None on the MPI ranks other than rank 0). A complete trace is returned
        as it is.

    Raises:
        InputError: an option that changes the run's numbers, plug-ins not given again, a damaged checkpoint or a
            file that is not a trace, before the trace is touched.
        RunFailed: the resumed run did not complete (`RunDiverged`, `RunInterrupted` among them), with its `.trace`.

    >>> trace = resume("runs/long.h5", quiet=True)  # doctest: +SKIP
    """
    options = keyed(options)
    options.setdefault("backend", "auto" if launched_by_mpi() else "local")
    with one_run_at_a_time("resume"), _signals_for_the_run():
        outcome = execute_resume(path, options, print_summary=True)
    return _result(outcome, in_memory=False)


def simulate(*, config: str | Path | None = None, **options: Any) -> Trace | None:
    """Run one simulation with the command line's options (underscores for dashes) and return its trace.

    In one process by default (`backend="local"`, `workers` virtual workers), or on the MPI ranks when this process
    was started by mpiexec (then rank 0 gets the trace and the other ranks None). `out=None` (default) keeps the
    trace in memory only; `out="path.h5"` writes it there.
    `config` is a TOML file the options override. Raises InputError for bad options, RunDiverged, RunInterrupted or
    RunFailed (with the recorded `.trace`) when the run does not complete.

    Threads: calls from several threads are safe but run one at a time (`one_run_at_a_time`: a run uses process-wide
    state); for runs side by side use processes. A call from inside a run (a plug-in's
    code) raises RuntimeError.

    Args:
        config: a TOML file of options; the keyword options win over it.
        **options: any option of `python -m crpsgd_mpi.run` (underscores for dashes), a selected plug-in's own
            parameters included.

    Returns:
        The run's trace, read back (`Trace`: `rounds` and `evals` as DataFrames, `attrs`, `x`); None on the MPI
        ranks other than rank 0.

    Raises:
        InputError: bad options (`.field` names the option), before anything runs.
        RunDiverged: the iterate stopped being finite.
        RunInterrupted: SIGINT, SIGTERM or SIGHUP ended the run.
        RunFailed: any other failure; each of the three carries the recorded `.trace`.
        RuntimeError: called from inside a run (a plug-in's code).

    >>> trace = simulate(algorithm="cr-psgd", T=2000, workers=4, quiet=True)
    >>> trace.evals.plot(x="sfo", y="suboptimality", logx=True, logy=True)  # doctest: +SKIP
    """
    options = keyed(options)
    options.setdefault("backend", "auto" if launched_by_mpi() else "local")
    keep = options.get("out") is not None
    with one_run_at_a_time("simulate"), _scratch(keep) as scratch:
        if not keep:
            options["out"], options["overwrite"] = str(scratch / "trace.h5"), True
        cfg = config_from(options, config)
        with _signals_for_the_run():
            outcome = execute(cfg, print_summary=True, config_file=config)
        return _result(outcome, in_memory=not keep)


#: Held by the thread whose `simulate` or `resume` is running. A run uses process-wide state: the registries' first
#: load (a second thread can see them half-filled), the signal handlers, and (before the compiled kernels) the
#: kernels' scratch buffers `_SCRATCH`, shared by every run of the same dimension: three threads then got a wrong L
#: and wrong losses, silently. One run at a time keeps any such state safe.
_RUN_LOCK = threading.Lock()
_RUN_OWNER: dict[str, int | None] = {"thread": None}


@contextmanager
def one_run_at_a_time(what: str) -> Iterator[None]:
    """One run of this process at a time: a call from another thread waits for the running one to end; a call from
    the thread that is running one (a plug-in calling `simulate` from its `run`) raises RuntimeError (it would
    wait for itself)."""
    me = threading.get_ident()
    if _RUN_OWNER["thread"] == me:
        raise RuntimeError(f"{what}() called from inside a run of this thread: one process runs one simulation at a "
                           "time (a run uses process-wide state); start it after this run ends, or in another "
                           "process")
    with _RUN_LOCK:
        _RUN_OWNER["thread"] = me
        try:
            yield
        finally:
            _RUN_OWNER["thread"] = None


def _result(outcome: Outcome, in_memory: bool) -> Trace | None:
    trace = None
    if outcome.path is not None and outcome.path.exists():
        trace = load_trace(outcome.path)
        if in_memory:
            trace.path = None
    if outcome.status == "complete":
        return trace
    kind = {"diverged": RunDiverged, "interrupted": RunInterrupted}.get(outcome.status, RunFailed)
    raise kind(outcome.status, outcome.message, outcome.exit_code, trace)


@contextmanager
def _scratch(keep: bool) -> Iterator[Path]:
    if keep:
        yield Path(".")
        return
    with tempfile.TemporaryDirectory(prefix="crpsgd-") as d:
        yield Path(d)


@contextmanager
def _signals_for_the_run() -> Iterator[None]:
    """SIGINT/SIGTERM/SIGHUP end the run cleanly while it lasts; the caller's handlers (a notebook's) come back after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {s: signal.getsignal(s) for s in signals.HANDLED}
    signals.install()
    try:
        yield
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)
        signals.unblock()
