"""One run in three parts, shared by every door (the command line, `simulate`, the experiment driver): the set-up
that every process agrees on (`prepare`), the run (`Run`), and the report (`summary`)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import secrets
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from . import __version__
from .algorithms import Algorithm
from .algorithms.base import returned_point
from .checkpoint import Checkpointer
from .comm import Backend
from .config import DEFAULT_EVAL_POINTS, Config
from .errors import Diverged, InputError
from .fstar_cache import cache_path, cached_optimum
from .ledger import EvalPlan, Ledger
from .optim import UpdateRule
from .outcome import EXIT_DIVERGED, EXIT_OK, Outcome, say, silences_output
from .pipeline import Checkpoints, DivergenceGuard, Evaluation, FaultInjection, Pipeline, ProgressLine, TraceFlush
from .problems import Problem
from .progress import Progress
from .registry import ALGORITHMS, DATASETS, PROBLEMS, Setting
from .resume_point import ResumePoint
from .theory import smoothness
from .trace import DISK_MARGIN, TraceWriter, check_output_path
from .workers import Workers


@dataclass
class Prepared:
    """What every process agreed on before the run: the algorithm, the problem with this process's data loaded, the
    trace path (rank 0)."""

    cfg: Config
    backend: Backend
    algorithm: type[Algorithm]
    problem: Problem
    out: Path | None
    resume: ResumePoint | None = None


def prepare(cfg: Config, backend: Backend, config_file: str | Path | None = None,
            resume: ResumePoint | None = None) -> Prepared:
    """Check everything that can be checked before running (the output first: nothing is loaded for a run whose
    trace could not be written, or would destroy one of its inputs) and load this process's shards. Every process
    learns of any process's error, so all of them raise the same InputError and none runs on alone."""
    error: InputError | None = None
    algorithm, problem, out = None, None, None
    step: tuple[str, object, str] = ("workers", backend.n_workers, "checked")  # named if it raises
    try:
        cfg.check_workers(backend.n_workers)
        step = ("algorithm", cfg.algorithm, "checked")
        algorithm = ALGORITHMS.get(cfg.algorithm)
        algorithm.check(cfg, backend.n_workers)
        if PROBLEMS.answer(cfg.model, "estimates_smoothness", True) is False:  # no L to derive step sizes from
            algorithm.create(Setting(cfg, backend.n_workers))
        if backend.is_root:
            step = ("out", str(cfg.out) if cfg.out else None, "checked")
            inputs = [*input_files(cfg), *([config_file] if config_file else [])]
            out = check_output_path(cfg.out or default_out(cfg, backend.n_workers), cfg.overwrite, inputs)
            if resume is not None:
                step = ("resume", str(resume.path), "checked")
                _room_to_resume(resume)
        step = ("dataset", cfg.dataset, f"loaded (--model {cfg.model})")
        problem = PROBLEMS.build(cfg.model, Setting(cfg, backend.n_workers, workers=backend.local_workers))
        cfg = resolve_evaluations(cfg, problem)
        if resume is not None:
            step = ("resume", str(resume.path), "checked")
            _same_data(resume, problem, cfg)
            _fits(resume, problem)
        if not problem.estimates_smoothness:  # the step sizes cannot be derived (a plug-in's factory may not say)
            step = ("algorithm", cfg.algorithm, "checked")
            algorithm.create(Setting(cfg, backend.n_workers))
    except InputError as exc:
        error = exc
    except Exception as exc:  # noqa: BLE001 - raised on one process only, it would leave the others waiting
        error = InputError(step[0], step[1], f"could not be {step[2]}: {type(exc).__name__}: {exc}")
    agree_on(backend, error)
    assert algorithm is not None and problem is not None
    return Prepared(cfg, backend, algorithm, problem, out, resume)


def resolve_evaluations(cfg: Config, problem: Problem) -> Config:
    """`cfg` with the evaluation settings it left unset filled in: the problem's choice (a network's evaluation
    budget), else DEFAULT_EVAL_POINTS points. The trace records the values the run used."""
    chosen = {"eval_points": DEFAULT_EVAL_POINTS, **problem.evaluation_settings()}
    unset: dict[str, Any] = {k: v for k, v in chosen.items() if getattr(cfg, k) is None}
    return dataclasses.replace(cfg, **unset) if unset else cfg


def _fits(point: ResumePoint, problem: Problem) -> None:
    """The checkpoint's arrays have this problem's shapes (checked before the trace is touched)."""
    cp = point.checkpoint
    if cp is not None:
        x = cp.algorithm.get("x")
        if isinstance(x, np.ndarray) and x.size != problem.dim:
            raise InputError("resume", str(point.path), f"its checkpoint's iterate has {x.size} numbers, the problem "
                                                        f"{problem.dim}")
        buffers = problem.buffers()
        width = None if buffers is None else buffers.shape[-1]
        if (cp.buffers is None) != (width is None) or (cp.buffers is not None and cp.buffers.shape[-1] != width):
            raise InputError("resume", str(point.path), "its checkpoint's network statistics do not fit the model")


def _room_to_resume(point: ResumePoint) -> None:
    """Every change of a trace is made to a copy: a resume needs room for one (else the trace is left as it is)."""
    st = os.statvfs(point.path.parent)
    free, need = st.f_bavail * st.f_frsize, point.path.stat().st_size + DISK_MARGIN
    if free < need:
        raise InputError("resume", str(point.path), f"no room to go on writing it ({free // 1024} KB free on its "
                                                    f"device, {need // 1024} KB needed): free some space first")


def _same_data(point: ResumePoint, problem: Problem, cfg: Config) -> None:
    """A resume goes on with the data its run started with."""
    if point.fingerprint is not None and problem.fingerprint() != point.fingerprint:
        raise InputError("dataset", cfg.dataset, f"its data changed since the run recorded in {point.path} started "
                                                 f"(fingerprint {problem.fingerprint()}, recorded {point.fingerprint})")
    if point.n_features and problem.dim != point.n_features:
        raise InputError("dataset", cfg.dataset, f"has dimension {problem.dim}, the run recorded in {point.path} "
                                                 f"had {point.n_features}")


def agree_on(backend: Backend, error: InputError | None) -> None:
    """Collective: every process learns whether any process found an error (`error` is this one's); then every
    process raises the same one (its own, or the first process's)."""
    agreed = backend.agree(None if error is None else encode_error(error))
    if agreed:
        raise error if error is not None else decode_error(*agreed[0])


def encode_error(error: InputError) -> str:
    """An InputError as the text the processes agree on."""
    return json.dumps([error.field, repr(error.value), error.reason])


def decode_error(rank: int, text: str) -> InputError:
    """The InputError that process `rank` found (whatever arrived: a text that is not one is shown as it is)."""
    try:
        fld, shown, reason = json.loads(text)
        return InputError(str(fld), _Shown(str(shown)), str(reason), rank=rank)
    except (ValueError, TypeError):
        return InputError("?", _Shown("?"), text, rank=rank)


class _Shown:
    """A value known only by its repr (it was checked on another process)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def input_files(cfg: Config) -> list[Path]:
    """Every file a run of `cfg` reads (data set files and the files an HDF5 data set links to, the source of every
    loaded module, plug-ins among them, the f* cache and its lock): an --out that is one of them is refused, whatever
    name it is given by."""
    from .data import input_places
    from .registry import module_files

    files = [f for p in input_places(cfg) for f in _files_at(p)]
    cache = cache_path()
    return [*files, *(Path(p) for p in cfg.plugin if p.endswith(".py")), *module_files(), cache,
            cache.with_name(cache.name + ".lock")]


def _files_at(place: Path) -> list[Path]:
    """`place`, or every file under it when it is a folder."""
    try:
        return [*place.rglob("*")] if place.is_dir() else [place]
    except (OSError, RuntimeError):
        return [place]


def run_label(cfg: Config) -> str:
    """'schedule=polynomial, B1=1, power=1.5': what tells the run apart (Config.distinguishing)."""
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in cfg.distinguishing())


def default_out(cfg: Config, n_workers: int) -> Path:
    """runs/<algorithm>-<its settings>-<data>-N<N>-T<T>-seed<s>-<time>-<pid><random>.h5, not yet taken: runs
    started in the same second, on this host or another sharing the folder, never pick the same name."""
    name = cfg.dataset.partition(":")[0]
    name = name if name in DATASETS else Path(cfg.dataset).stem
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    label = "-".join(f"{v}" if k == "schedule" else f"{k}_{v:g}" if isinstance(v, float) else f"{k}_{v}"
                     for k, v in cfg.distinguishing())
    label = "".join(c if c.isalnum() or c in "._-" else "_" for c in label)[:80]
    base = Path("runs") / f"{cfg.algorithm}{'-' + label if label else ''}-{name}-N{n_workers}-T{cfg.T}-seed{cfg.seed}-{stamp}"
    while True:
        path = Path(f"{base}-{os.getpid()}{secrets.token_hex(2)}.h5")
        if not path.exists():
            return path


class Run:
    """The run of a prepared configuration: builds the workers, the algorithm and the round pipeline, writes the
    trace; any failure on any process ends every process, with the trace saying why (the run's `Ending`)."""

    def __init__(self, prepared: Prepared, progress: bool | TextIO = False) -> None:
        self.p, self.cfg, self.backend = prepared, prepared.cfg, prepared.backend
        self.N = self.backend.n_workers
        self.ending = self.backend.ending
        self.progress = progress if self.backend.is_root else False

    def execute(self) -> Outcome:
        """Run to the end; the outcome on this process (failures under MPI may end the process instead)."""
        self.ending.begin(self.cfg.T)
        try:
            return self._run()
        except Diverged as exc:  # every process sees the same iterate, so all of them diverge together
            self.ending.conclude("diverged", None, str(exc))
            return Outcome("diverged", EXIT_DIVERGED, self.ending.path(), str(exc))
        except BaseException as exc:  # noqa: BLE001 - every failure must end the whole job
            return self.ending.fail(exc, self.p.out or self.cfg.out)

    def _run(self) -> Outcome:
        cfg, problem = self.cfg, self.p.problem
        ledger = Ledger()
        workers = Workers(self.backend, problem, cfg.seed, ledger, UpdateRule.from_config(cfg))
        x0 = problem.initial_point()
        point = self.p.resume
        if point is None:
            smooth = smoothness(workers)
            L = smooth.L if smooth is not None else None
            key = problem.optimum_key()
            f_star = cached_optimum(workers, x0, key) if key is not None else None
        else:  # the constants the run derived: it goes on with exactly those
            smooth, L, f_star = None, point.L, point.f_star
        algorithm = self.p.algorithm.create(Setting(cfg, self.N, L))
        constants = {"L": L, **algorithm.constants()}
        if smooth is not None:
            constants.update(L_method=smooth.method, L_converged=smooth.converged, **smooth.details)
            if not smooth.converged and self.backend.is_root:
                say(f"crpsgd_mpi: note: the estimate of L ({smooth.method}) did not converge; it is used as it is "
                    f"(L = {smooth.L:.8g}) and the trace says so (L_converged false)")
        if self.p.out is not None:
            self.ending.open_trace(lambda: self._open_trace(constants, f_star))
        progress = Progress(cfg.T, file=self.progress if not isinstance(self.progress, bool) else None) \
            if self.progress else None
        if cfg.eval_points is None:  # resolve_evaluations fills it in before any run
            raise ValueError("eval_points was not resolved")
        plan = EvalPlan(cfg.T, cfg.eval_points)
        evaluation = Evaluation(workers, ledger, plan, f_star, progress)
        trace = TraceFlush(ledger, evaluation, self.ending.writer)
        self.ending.record(trace)
        ledger.restart_clock()
        state = None
        if point is not None and point.checkpoint is not None:
            point.checkpoint.restore(workers, ledger, plan, evaluation, trace)
            state = point.checkpoint.algorithm_state(workers)
        checkpointer = Checkpointer(cfg.checkpoint_plan(), workers, ledger, plan, evaluation, trace, algorithm)
        workers.on_round = self._pipeline(workers, evaluation, trace, checkpointer, progress)
        if state is None:
            evaluation.evaluate(x0)
            x = algorithm.run(workers, x0)
        else:
            x = algorithm.run(workers, x0, resume=state)
        x = returned_point(cfg.algorithm, x, x0)
        loss, gn = evaluation.evaluate(x)
        test = evaluation.last_test
        if progress is not None:
            progress.close(ledger)
        self.ending.conclude("complete", x, None)
        values = {"loss": loss, "grad_norm_sq": gn, "f_star": f_star, "constants": constants, "problem": problem,
                  "ledger": ledger, "eval_time": evaluation.eval_time, "wall_time": ledger.elapsed(), "test": test,
                  "start_loss": evaluation.first_loss}
        return Outcome("complete", EXIT_OK, self.ending.path(), values=values)

    def _pipeline(self, workers: Workers, evaluation: Evaluation, trace: TraceFlush, checkpointer: Checkpointer,
                  progress: Progress | None) -> Pipeline:
        """The hooks called after every round, in this order (pipeline.py has them; a new one goes in this list)."""
        ledger = workers.ledger
        return Pipeline([
            FaultInjection(self.cfg.fault_point(), workers.backend.local_workers, ledger),
            DivergenceGuard(ledger),  # before anything evaluates or writes the iterate
            evaluation,  # at the planned points; before the flush that writes its row
            ProgressLine(progress, ledger),
            trace,  # the rows into the trace, now and then
            Checkpoints(checkpointer),  # after the flush: a checkpoint matches every row written
        ])

    def _open_trace(self, constants: dict[str, Any], f_star: float | None) -> TraceWriter:
        """The run's trace: a new one, or (a resume) the trace cut back to the rows its checkpoint matches."""
        point = self.p.resume
        assert self.p.out is not None
        if point is None:
            return TraceWriter(self.p.out, self._attrs(constants, f_star), overwrite=self.cfg.overwrite)
        writer = TraceWriter.reopen(self.p.out)  # ours only once truncated: a failure leaves it as it was
        writer.truncate(point.rounds, point.checkpoint.evals if point.checkpoint else 0,
                        {"resumes": json.dumps([*point.history, self._resumed(point)])})
        return writer

    def _attrs(self, constants: dict[str, Any], f_star: float | None) -> dict[str, Any]:
        cfg, problem = self.cfg, self.p.problem
        resolved = {**cfg.to_dict(), "theta": None, **constants, "workers": self.N, "backend": self.backend.name,
                    "n_samples": problem.n_samples, "n_features": problem.dim, "dataset_name": problem.data_name,
                    "dtype": problem.dtype.name}
        attrs: dict[str, Any] = {"algorithm": cfg.algorithm, "N": self.N, "T": cfg.T, "seed": cfg.seed,
                                 "config": json.dumps(resolved, sort_keys=True), "versions": json.dumps(self._versions()),
                                 "run_config": cfg.to_json()}
        fingerprint = problem.fingerprint()
        if fingerprint is not None:
            attrs["data_fingerprint"] = fingerprint
        if f_star is not None:
            attrs["f_star"] = f_star
        return attrs

    def _resumed(self, point: ResumePoint) -> dict[str, Any]:
        """One entry of the trace's list of resumes."""
        return {"after_round": point.rounds, "status_was": point.status, "backend": self.backend.name,
                "time": datetime.now(timezone.utc).isoformat(timespec="seconds")}

    def _versions(self) -> dict[str, str]:
        import h5py
        import scipy

        v = {"crpsgd_mpi": __version__, "python": platform.python_version(), "numpy": np.__version__,
             "scipy": scipy.__version__, "h5py": h5py.__version__, "hdf5": h5py.version.hdf5_version}
        v.update(self.backend.describe())
        return v


def summary(cfg: Config, outcome: Outcome, n_workers: int, backend: str) -> str:
    """The lines printed after a complete run."""
    v = outcome.values
    led, c = v["ledger"], v["constants"]
    sub = f", suboptimality {v['loss'] - v['f_star']:.3e}" if v["f_star"] is not None else ""
    gn = f", ||grad f||^2 {v['grad_norm_sq']:.3e}" if math.isfinite(v["grad_norm_sq"]) else ""
    test = f", test accuracy {v['test'][1]:.4f}" if v.get("test") else ""
    L = f"L={c['L']:.6g}, " if c.get("L") is not None and math.isfinite(c["L"]) else ""
    steps = L + ", ".join(f"{k}={c[k]:.6g}" for k in ("gamma", "theta") if c.get(k) is not None)
    return "\n".join([
        f"{cfg.algorithm} ({run_label(cfg)}) on {v['problem'].describe()}, N={n_workers} ({backend}), T={cfg.T}",
        f"  rounds {led.rounds}, SFO per worker {led.sfo} ({cfg.T - led.sfo} unspent), "
        f"{led.bytes / 1e6:.3f} MB reduced per rank",
        f"  final loss {v['loss']:.10g}{sub}{gn}{test}",
        f"  {steps}",
        f"  trace {outcome.path or '-'} (complete); {v['wall_time']:.2f} s of rounds, {v['eval_time']:.2f} s of evaluations",
        *_warnings(v, c),
    ])


def _warnings(v: dict[str, Any], c: dict[str, Any]) -> list[str]:
    """What a complete run's numbers say against it: a final loss above the start's means the step size is too
    large (the run is complete, not good)."""
    start = v.get("start_loss")
    if start is None or not v["loss"] > start:
        return []
    gamma = f"gamma={c['gamma']:.6g}" if c.get("gamma") is not None else "the step size"
    return [f"  warning: the final loss {v['loss']:.6g} is above the starting loss {start:.6g}: {gamma} is too "
            "large for this run (try a smaller --gamma)"]


def interactive() -> bool:
    """True when standard error is a terminal, or (under Open MPI's mpiexec, which relays rank 0's standard error)
    when the launcher's is: progress lines are shown only then."""
    try:
        if sys.stderr.isatty():
            return True
    except (AttributeError, ValueError):
        return False
    if not silences_output(os.getppid()):
        return False
    try:
        fd = os.open(f"/proc/{os.getppid()}/fd/2", os.O_WRONLY | os.O_NOCTTY)
    except OSError:
        return False
    try:
        return os.isatty(fd)
    finally:
        os.close(fd)
