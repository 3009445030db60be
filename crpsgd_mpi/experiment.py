"""Run families: a TOML file names a study, a base config, labelled runs and seeds; the driver runs what
has no complete trace yet (resumable) and leaves plotting to a separate stage."""

from __future__ import annotations

import gc
import itertools
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import Config
from .errors import InputError
from .launch import run_job
from .params import key as param_key
from .trace import read_trace

DONE = ("complete", "diverged")


@dataclass(frozen=True)
class Run:
    """One run of a family: its label, seed, config overrides and trace path."""

    family: str
    label: str
    seed: int
    settings: dict[str, Any]
    path: Path


@dataclass
class Family:
    """A family of runs from one TOML file (the format: `load_family`)."""

    name: str
    study: str
    title: str
    epsilon: float | None
    seeds: list[int]
    base: dict[str, Any]
    runs: dict[str, dict[str, Any]]
    sweep: dict[str, list[Any]] = field(default_factory=dict)

    def expand(self, results: Path) -> list[Run]:
        """Every (label, swept values, seed) run, with its trace path under results/<family>/: the runs are the
        cross product of the labelled runs, the sweep's lists (in the file's order) and the seeds."""
        out = []
        keys = list(self.sweep)
        for label, overrides in self.runs.items():
            for values in itertools.product(*(self.sweep[k] for k in keys)):
                settings = {**self.base, **overrides, **dict(zip(keys, values))}
                name = "-".join([label, *(_tag(k, v) for k, v in zip(keys, values))])
                for seed in self.seeds:
                    path = results / self.name / f"{name}-seed{seed}.h5"
                    out.append(Run(self.name, name, seed, {**settings, "seed": seed}, path))
        return out


def _tag(key: str, value: Any) -> str:
    """A swept value in a run's name: N8 for workers (as the studies have always named them), else key_value."""
    text = f"N{value}" if key == "workers" else f"{key}_{value:g}" if isinstance(value, float) else f"{key}_{value}"
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in text)


#: The keys of a family file; every other top-level key is a mistake.
FAMILY_KEYS = ("study", "title", "epsilon", "seeds", "base", "runs", "sweep")


def load_family(path: Path) -> Family:
    """Parse and validate a family file, a TOML file of these keys:

    - `title` (text for figures), `study` (what `make figures` draws: pl, nonconvex, speedup, schedules, deep;
      any other word, or none, for a family of one's own), `epsilon` (of the tables), `seeds` (list, default [0]);
    - `[base]`: any run option (`plugin` included), shared by every run;
    - `[runs.LABEL]`: one table per labelled run, the options it changes (possibly none); at least one;
    - `[sweep]`: any option (a plug-in's parameters included) with a list of values: every labelled run is run
      for each combination (the cross product).

    Each run's config is validated now (plug-ins imported first), not mid-sweep; the file is read as safely as a
    config file (a regular UTF-8 file of bounded size), every fault one InputError naming the file."""
    from .api import config_from

    raw = Config.read_toml(path)
    for key in raw:
        if key not in FAMILY_KEYS:
            raise InputError("family", str(path), f"unknown key {key!r} (a family has {', '.join(FAMILY_KEYS)}; "
                             "run options go in [base], [runs.LABEL] or [sweep])")
    try:
        runs = raw.get("runs") or {"run": {}}
        fam = Family(name=path.stem, study=str(raw.get("study", "custom")), title=str(raw.get("title", path.stem)),
                     epsilon=raw.get("epsilon"), seeds=[int(s) for s in raw.get("seeds", [0])],
                     base=dict(raw.get("base", {})), runs={str(k): dict(v) for k, v in runs.items()},
                     sweep={param_key(k): list(v) for k, v in raw.get("sweep", {}).items()})
    except (TypeError, ValueError, AttributeError) as exc:
        raise InputError("family", str(path), f"not a family file ({type(exc).__name__}: {exc})") from None
    for key, values in fam.sweep.items():
        if not values:
            raise InputError("family", str(path), f"[sweep] {key}: needs a non-empty list of values")
    for run in fam.expand(Path(".")):
        config_from(run.settings)  # plug-ins named anywhere imported, every value checked
    return fam


def needs_run(run: Run) -> bool:
    """A trace that is missing, unreadable, or not finished (running/failed/interrupted) is (re)done."""
    if not run.path.exists():
        return True
    try:
        return read_trace(run.path).status not in DONE
    except (OSError, KeyError):
        return True


def resumable(run: Run) -> bool:
    """The member's trace was stopped after a checkpoint, and its run is the one the family asks for now (every
    option that changes the numbers equal, those the family leaves out included)."""
    from .api import config_from
    from .resume_point import CHANGEABLE, read_resume_point

    try:
        point = read_resume_point(run.path)
        if point.checkpoint is None or point.status in DONE:
            return False
        wanted = config_from(run.settings).to_dict()
    except Exception:  # noqa: BLE001 - a trace that cannot be resumed is simply run again
        return False
    return all(point.options.get(key) == value for key, value in wanted.items() if key not in CHANGEABLE)


def execute(run: Run, use_mpi: bool = False, timeout: float = 1800.0) -> int:
    """Run one member: in this process (local backend), or under mpiexec with as many ranks as the
    run's `workers` (default 10). A member stopped after a checkpoint is resumed from it, not run again."""
    if resumable(run):  # the family's own plug-ins, given again (a resume imports no plug-in the trace names)
        plugins = run.settings.get("plugin", [])
        args = ["--resume", str(run.path), "--quiet",
                *(a for p in ([plugins] if isinstance(plugins, str) else plugins) for a in ("--plugin", str(p)))]
    else:
        args = [*_flags(run.settings, use_mpi), "--out", str(run.path), "--overwrite", "--quiet"]
    if use_mpi:
        ranks = int(run.settings.get("workers", 10))
        res = run_job(ranks, [sys.executable, "-m", "crpsgd_mpi.run", *args], timeout=timeout)
        if res.returncode not in (0, 3):
            sys.stderr.write(res.stderr)
        return res.returncode
    from .run import main

    return main(["--backend", "local", *args])


def _flags(settings: dict[str, Any], use_mpi: bool) -> list[str]:
    """A member's settings as command-line options (under mpiexec the ranks are the workers)."""
    args: list[str] = []
    for key, value in settings.items():
        if key in ("workers", "backend") and use_mpi:
            continue
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            args.append(flag if value else "--no-" + key.replace("_", "-"))
        elif isinstance(value, (list, tuple)):
            for item in value:
                args += [flag, str(item)]
        else:
            args += [flag, repr(value) if isinstance(value, float) else str(value)]
    return args


def run_families(paths: list[Path], results: Path, use_mpi: bool = False, verbose: bool = True,
                 jobs: int = 1) -> int:
    """Run every family member that has no complete trace; returns the number of failed runs. With jobs > 1 the
    runs go to a pool of that many fresh processes (one BLAS thread each); the traces are those of jobs = 1 (see
    `FstarOrder`)."""
    todo: list[Run] = []
    for path in paths:
        fam = load_family(path)
        mine = [r for r in fam.expand(results) if needs_run(r)]
        if verbose:
            print(f"{fam.name}: {len(mine)} run(s) to do", flush=True)
        todo += mine
    if jobs > 1 and len(todo) > 1:
        return _run_pool(todo, use_mpi, jobs, verbose)
    failures = 0
    for k, run in enumerate(todo, 1):
        code, seconds = _timed_execute(run, use_mpi)
        if verbose:
            _progress(k, len(todo), run, code, seconds)
        failures += code not in (0, 3)
    return failures


def default_jobs() -> int:
    """The number of cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _timed_execute(run: Run, use_mpi: bool) -> tuple[int, float]:
    """Exit status and seconds of one run; afterwards its memory is freed at once (a run's Workers and its round
    pipeline refer to each other, so without a collection its data could linger through the next runs)."""
    t0 = time.perf_counter()
    try:
        code = execute(run, use_mpi)
    finally:
        gc.collect()
    return code, time.perf_counter() - t0


def _pool_task(run: Run, use_mpi: bool) -> tuple[int, float]:
    """`_timed_execute` in a pool process, which then takes SIGINT and SIGTERM the default way again (a run installs
    its own handlers): an idle pool process ends with the driver's process group."""
    try:
        return _timed_execute(run, use_mpi)
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _progress(k: int, n: int, run: Run, code: int, seconds: float) -> None:
    status = "done" if code == 0 else f"exit {code}"
    print(f"  run {k} of {n}: {run.family} {run.label} seed {run.seed}: {status} in {seconds:.1f} s", flush=True)


def _run_pool(todo: list[Run], use_mpi: bool, jobs: int, verbose: bool) -> int:
    """The runs in a pool of `jobs` spawned processes, started in list order as far as `FstarOrder` allows. The
    processes inherit the environment, in which `threads` has set one BLAS thread before their numpy loads."""
    from . import threads  # noqa: F401

    order = FstarOrder(todo)
    if verbose:
        print(f"{len(todo)} run(s) on {jobs} processes", flush=True)
    failures, done = 0, 0
    running: dict[Future[tuple[int, float]], Run] = {}
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        try:
            while order.pending or running:
                for run in order.startable(jobs - len(running)):
                    running[pool.submit(_pool_task, run, use_mpi)] = run
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for fut in finished:
                    run = running.pop(fut)
                    order.finished(run)
                    code, seconds = fut.result()
                    done += 1
                    failures += code not in (0, 3)
                    if verbose:
                        _progress(done, len(todo), run, code, seconds)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return failures


class FstarOrder:
    """Which runs may start now so that every f* is computed once, by the run that computes it when the runs go one
    after another: the first run (in list order) that needs an f* not yet in the cache computes it; the other runs
    needing the same f* wait until it has finished (then they read the cache, as they would have in turn). Runs that
    need no f*, or one already cached, start at once."""

    def __init__(self, runs: list[Run]) -> None:
        from .fstar_cache import cache_path, read_table

        self.pending = list(runs)
        self._read = lambda: read_table(cache_path())
        self._cached = set(self._read())
        self._keys = {run.path: fstar_key(run) for run in runs}
        self._computing: set[str] = set()

    def startable(self, slots: int) -> Iterator[Run]:
        """Up to `slots` runs to start now, taken off the pending list in order."""
        taken = 0
        for run in list(self.pending):
            if taken >= slots:
                return
            key = self._keys[run.path]
            if key is not None and key not in self._cached:
                if key in self._computing:
                    continue
                self._computing.add(key)
            self.pending.remove(run)
            taken += 1
            yield run

    def finished(self, run: Run) -> None:
        """`run` has ended: its f* (if it computed one) is now in the cache; if it failed first, the next run that
        needs the same f* computes it."""
        key = self._keys[run.path]
        if key is not None and key in self._computing:
            self._computing.discard(key)
            self._cached |= set(self._read())


def fstar_key(run: Run) -> str | None:
    """The f* cache key of a run that needs f* (its problem's `optimum_key` says which), else None."""
    from .api import config_from
    from .registry import PROBLEMS, Setting

    cfg = config_from(run.settings)
    ask = PROBLEMS.answer(cfg.model, "optimum_key", None)
    if ask is None:
        return None
    try:
        key: str | None = ask(Setting(cfg, cfg.workers if cfg.workers is not None else 10), lambda: _fingerprint(cfg))
        return key
    except InputError:  # e.g. a missing data file: the run itself will fail and say so
        return None


_FINGERPRINTS: dict[tuple[Any, ...], str] = {}


def _fingerprint(cfg: Config) -> str:
    """The data fingerprint of a config (each data set opened once per driver)."""
    from .data import open_source

    what = (cfg.dataset, cfg.fmnist_dir, cfg.samples, cfg.features, cfg.condition, cfg.label_noise, cfg.data_seed)
    if what not in _FINGERPRINTS:
        _FINGERPRINTS[what] = open_source(cfg).fingerprint()
    return _FINGERPRINTS[what]
