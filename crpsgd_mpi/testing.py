"""A conformance kit for plug-in authors (as scikit-learn's `check_estimator`): `check_algorithm`, `check_schedule`
and `check_gamma_schedule` run a component on a small problem and check what every built-in guarantees: its
parameters declared, its counts consistent with the ledger (and with the schedule's own sequence), an exact resume,
and the same trace from the in-process backend and from mpiexec. A failed check raises ConformanceError naming it."""

from __future__ import annotations

import contextlib
import io
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .api import config_from, load_trace, resume, simulate
from .errors import InputError, RunFailed
from .optim import StepSizes, make_gamma_schedule
from .registry import ALGORITHMS, load_plugins
from .schedules import make_schedule
from .trace import Trace, equal_iterates

#: The small problem every check runs (seconds in process): synthetic data, 3 workers, checkpoints every round.
SMALL: dict[str, int | str | bool] = {"samples": 2000, "features": 5, "T": 1500, "workers": 3, "eval_points": 6,
                                      "checkpoint_every": "1", "quiet": True}
COUNTED = ("round", "sfo", "batch_size", "stage", "bytes", "gamma")


class ConformanceError(AssertionError):
    """A component broke a promise: which check, and what was seen."""


@dataclass
class Report:
    """The checks a component passed, and those skipped with the reason."""

    component: str
    passed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"{self.component}: {len(self.passed)} checks passed"] + [f"  ok   {p}" for p in self.passed]
        return "\n".join(lines + [f"  skip {s}" for s in self.skipped])


def check_schedule(name: str, plugin: str | None = None, mpi: bool | None = None, **params: Any) -> Report:
    """Check the batch schedule `name` (with its parameters `params`) under CR-PSGD: the rounds' batches are the
    schedule's own sequence under the budget (for a schedule that does not adapt), and every check of
    `check_algorithm`."""
    options = {**params, "schedule": name, "algorithm": "cr-psgd"}
    report = check_algorithm("cr-psgd", plugin=plugin, mpi=mpi, _options=options, _component=f"schedule {name}")
    cfg = config_from({**SMALL, **options, **({"plugin": plugin} if plugin else {})})
    try:
        schedule = make_schedule(cfg, int(SMALL["workers"]))
    except InputError as exc:
        raise ConformanceError(f"schedule {name}: {exc.reason}") from None
    if not schedule.plan(cfg.T).needs_spread:
        with tempfile.TemporaryDirectory() as tmp:
            trace = _simulate(options, plugin, Path(tmp) / "t.h5")
        want = list(schedule.within(cfg.T))
        got = [int(b) for b in trace.rounds["batch_size"]]
        _expect(got == want, f"schedule {name}: the rounds ran batches {got[:8]}... but within(T) gives "
                             f"{want[:8]}...")
        _expect(schedule.rounds_and_sfo(cfg.T) == (len(want), sum(want)),
                f"schedule {name}: rounds_and_sfo({cfg.T}) = {schedule.rounds_and_sfo(cfg.T)}, the sequence gives "
                f"{(len(want), sum(want))}")
        report.passed.append("batches are the schedule's own sequence under the budget; rounds_and_sfo agrees")
    return report


def check_gamma_schedule(name: str, plugin: str | None = None, mpi: bool | None = None, algorithm: str = "cr-psgd",
                         **params: Any) -> Report:
    """Check the step-size schedule `name` (with its parameters `params`) under `algorithm`: every round's recorded
    step size (rounds/gamma) is the schedule's own gamma * factor(t, R), R the rounds the run made, and every check
    of `check_algorithm` (the exact resume among them: the schedule must be a function of the round alone)."""
    options = {**params, "gamma_schedule": name, "algorithm": algorithm}
    report = check_algorithm(algorithm, plugin=plugin, mpi=mpi, _options=options,
                             _component=f"gamma-schedule {name}")
    cfg = config_from({**SMALL, **options, **({"plugin": plugin} if plugin else {})})
    with tempfile.TemporaryDirectory() as tmp:
        trace = _simulate(options, plugin, Path(tmp) / "t.h5")
    got = np.asarray(trace.rounds["gamma"], dtype=np.float64)
    rounds = len(got)
    steps = StepSizes(float(trace.config["gamma"]), make_gamma_schedule(cfg), cfg.warmup_rounds, rounds)
    want = np.array([steps(t) for t in range(1, rounds + 1)])
    _expect(bool(np.array_equal(got, want)), f"gamma-schedule {name}: the rounds ran step sizes {got[:4]}... but the "
                                             f"schedule gives {want[:4]}...")
    _expect(bool(np.all(np.isfinite(got)) and np.all(got >= 0)), f"gamma-schedule {name}: a step size is negative "
                                                                 "or not finite")
    report.passed.append("step sizes are the schedule's own gamma * factor(t, R), one per round")
    return report


def check_algorithm(name: str | type, plugin: str | None = None, mpi: bool | None = None, _options: Any = None,
                    _component: str | None = None, **params: Any) -> Report:
    """Check the algorithm `name` (or a class, registered under its `name` attribute or class name) with its
    parameters: declared parameters; counts consistent with the ledger and the budget; an exact resume from a
    checkpoint (if it is resumable); the in-process trace equal to mpiexec's (mpi: None = when mpiexec is on
    PATH). Returns the Report; raises ConformanceError at the first broken promise."""
    if plugin:
        load_plugins([plugin])
    if isinstance(name, type):
        name = _register_class(name)
    options = dict(_options) if _options is not None else {**params, "algorithm": name}
    report = Report(_component or f"algorithm {name}")
    cfg = config_from({**SMALL, **options, **({"plugin": plugin} if plugin else {})})
    _check_declared(cfg, report)
    with tempfile.TemporaryDirectory() as tmpd:
        tmp = Path(tmpd)
        trace = _simulate(options, plugin, tmp / "full.h5")
        _check_counts(trace, cfg.T, report)
        _check_resume(options, plugin, trace, tmp, report)
        _check_backends(options, plugin, trace, tmp, mpi, report)
    return report


def _register_class(cls: type) -> str:
    name = getattr(cls, "name", None) or cls.__name__.lower()
    if name not in ALGORITHMS:
        ALGORITHMS.register(name, cls)
    return str(name)


def _simulate(options: dict[str, Any], plugin: str | None, out: Path, **more: Any) -> Trace:
    extra = {"plugin": plugin} if plugin else {}
    trace = simulate(**{**SMALL, **options, **extra, **more}, backend="local", out=str(out), overwrite=True)
    assert trace is not None
    return trace


def _expect(ok: bool, what: str) -> None:
    if not ok:
        raise ConformanceError(what)


def _check_declared(cfg: Any, report: Report) -> None:
    from .config import component_params

    for pname, (owner, param) in component_params(cfg.algorithm, cfg.schedule, cfg.model, cfg.dataset,
                                                  cfg.gamma_schedule).items():
        _expect(bool(param.help.strip()), f"{owner}: parameter {pname} has no help")
        param.check(param.default)
        _expect(cfg.param(pname) is not None, f"{owner}: parameter {pname} has no value in the run")
    report.passed.append("parameters declared, with help and valid defaults; the run records each")


def _check_counts(trace: Trace, T: int, report: Report) -> None:
    r = trace.rounds
    n = len(r)
    _expect(n > 0, f"no round ran on a budget of T = {T}")
    _expect(list(r["round"]) == list(range(1, n + 1)), "rounds are not numbered 1, 2, ... in order")
    sfo, batch = np.asarray(r["sfo"], dtype=np.int64), np.asarray(r["batch_size"], dtype=np.int64)
    _expect(bool(np.all(np.diff(sfo) >= 0)) and sfo[0] >= 0, "SFO per worker decreases between rounds")
    _expect(int(sfo[-1]) <= T, f"SFO per worker {int(sfo[-1])} exceeds the budget T = {T}")
    _expect(bool(np.all(batch >= 0)), "a round records a negative batch size")
    _expect(bool(np.all(np.asarray(r["bytes"]) > 0)), "a round moved no bytes: every round is one collective")
    if trace.x is not None:
        _expect(bool(np.all(np.isfinite(trace.x))), "the returned point is not finite")
    report.passed.append(f"counts: {n} rounds numbered in order, SFO cumulative and within T, bytes each round")


def _same(a: Trace, b: Trace) -> str | None:
    """None when the counted columns, the evaluations and the final x are equal bit for bit, else what differs."""
    for c in COUNTED:
        if not np.array_equal(np.asarray(a.rounds[c]), np.asarray(b.rounds[c]), equal_nan=c == "gamma"):
            return f"rounds/{c}"
    for c in a.evals.columns:
        if c not in ("wall_time", "time") and not np.array_equal(np.asarray(a.evals[c]), np.asarray(b.evals[c]),
                                                                 equal_nan=True):
            return f"evals/{c}"
    if not equal_iterates(a.x, b.x):
        return "final x"
    return None


def _check_resume(options: dict[str, Any], plugin: str | None, full: Trace, tmp: Path, report: Report) -> None:
    rounds = len(full.rounds)
    if rounds < 2:
        report.skipped.append("exact resume: fewer than 2 rounds")
        return
    out = tmp / "stopped.h5"
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # the injected fault's own line
            _simulate(options, plugin, out, fault=f"0:{rounds // 2}")
    except RunFailed:
        pass
    else:
        raise ConformanceError(f"a run with an injected fault after round {rounds // 2} completed")
    try:
        resumed = resume(out, quiet=True, **({"plugin": [plugin]} if plugin else {}))
    except Exception as exc:  # noqa: BLE001 - said in the report
        raise ConformanceError(f"exact resume: resuming raised {type(exc).__name__}: {exc}") from None
    if resumed is None or (len(resumed.rounds) < rounds and resumed.attrs.get("resumes") is None):
        report.skipped.append("exact resume: not resumable (no state(); the run starts over)")
        return
    diff = _same(full, load_trace(out))
    _expect(diff is None, f"exact resume: the resumed run differs from the uninterrupted one in {diff}")
    report.passed.append(f"exact resume from a checkpoint (stopped after round {rounds // 2} of {rounds})")


def _check_backends(options: dict[str, Any], plugin: str | None, local: Trace, tmp: Path, mpi: bool | None,
                    report: Report) -> None:
    why = "not asked (mpi=False)"
    if mpi is None:
        mpi, why = shutil.which("mpiexec") is not None, "no mpiexec on PATH"
    if not mpi:
        report.skipped.append(f"in process = mpiexec: {why}")
        return
    from .experiment import _flags
    from .launch import run_job

    out = tmp / "mpi.h5"
    settings = {**SMALL, **options, **({"plugin": plugin} if plugin else {})}
    args = [*_flags(settings, use_mpi=True), "--out", str(out), "--overwrite"]
    res = run_job(int(SMALL["workers"]), [sys.executable, "-m", "crpsgd_mpi.run", *args], timeout=300)
    _expect(res.returncode == 0, f"under mpiexec the run ended with status {res.returncode}: {res.stderr[-500:]}")
    diff = _same(local, load_trace(out))
    _expect(diff is None, f"in process and under mpiexec -n {SMALL['workers']} the traces differ in {diff}")
    report.passed.append(f"in process = mpiexec -n {SMALL['workers']}, bit for bit")


__all__ = ["ConformanceError", "Report", "check_algorithm", "check_gamma_schedule", "check_schedule"]
