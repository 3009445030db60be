"""The contract of an algorithm: built from a `Setting`, given the workers and a start point, it spends the budget and
returns x. Algorithms are registered by name in `ALGORITHMS` (built-ins and plug-ins alike)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from ..config import Config
from ..errors import AlgorithmError, Diverged
from ..registry import ALGORITHMS, Setting
from ..schedules import schedule_bound
from ..workers import Workers

__all__ = ["ALGORITHMS", "Algorithm", "Setting", "State", "register_algorithm"]

#: An algorithm's resumable state: names to arrays, numbers, strings or nested states.
State = dict[str, Any]


class Algorithm(ABC):
    """A parallel SGD method. It talks only to `Workers` (gradients, average, end_round, set_stage), so it runs
    unchanged on every backend and for every problem; every SFO and round it spends is counted there.

    A subclass implements `create` (from a `Setting`) and `run`; it may refuse, in `check`, a configuration under
    which no round fits (called on every process before any data is loaded), and it reports in `constants` what it
    resolved (step sizes, periods: they are recorded in the trace). It moves its iterates with the run's update
    rule, `workers.optimizer(gamma, rounds).step(x, g, t)` (momentum, weight decay and the step-size schedule the
    user chose; plain x - gamma g by default), and keeps the optimizer's `state()` in its own."""

    name: str = ""
    #: Whether `run(..., resume=state)` goes on exactly from a `state()` (checkpoints are taken only then). None:
    #: undeclared, as in plug-ins written before it existed: resumable when the class implements `state()`.
    resumable: ClassVar[bool | None] = None

    @classmethod
    def can_resume(cls) -> bool:
        """The declared `resumable`, else whether the class implements `state()`."""
        return can_resume(cls)

    @classmethod
    def check(cls, cfg: Config, n_workers: int) -> None:
        """Raise InputError naming the option when `cfg` cannot run with N workers; default: nothing to check."""
        return None

    @classmethod
    def largest_batch(cls, cfg: Config, n_workers: int) -> tuple[int, str]:
        """(the largest per-worker batch a run draws, the option that sets it), for the memory plan. Default: the
        bound of the configured batch schedule under the budget T (a schedule that cannot be built or bounded: the
        budget itself, its error comes in the run)."""
        return schedule_bound(cfg, n_workers, cfg.T)

    @classmethod
    @abstractmethod
    def create(cls, setting: Setting) -> Algorithm:
        """The algorithm for this run."""

    @abstractmethod
    def run(self, workers: Workers, x0: np.ndarray, resume: State | None = None) -> np.ndarray:
        """Run to the end of the per-worker SFO budget; return the point the method returns. `resume`: a `state()`
        this algorithm returned at the end of a round, to go on from there exactly (only ever given to an algorithm
        whose `state()` returns one: a plug-in without resume may leave the parameter out)."""

    def constants(self) -> dict[str, Any]:
        """What the algorithm resolved, for the trace's config (e.g. {"gamma": ..., "theta": ...})."""
        return {"gamma": getattr(self, "gamma", None)}

    def worker_state(self) -> dict[str, np.ndarray]:
        """The per-worker part of the resumable state: name -> (k, m) array of this process's local workers' rows
        (local SGD's momentum buffers). Called on every process at every checkpoint, before `state()`: the
        checkpoint gathers every worker's rows (a collective) and stores each as (N, m) under
        `state["workers"][name]`; `run(resume=)` receives this process's block back there, (k, m), whichever backend
        and placement it runs on. Default: none."""
        return {}

    def state(self) -> State | None:
        """Called at the end of a round (from `workers.end_round`): everything `run(..., resume=state)` needs to go
        on exactly from there (arrays, numbers, nested dicts of them); None: this algorithm cannot be resumed (the
        default, for plug-ins that do not implement it)."""
        return None


def can_resume(cls: type) -> bool:
    """Whether an algorithm class (a subclass of Algorithm, or any class with its methods) resumes from `state()`:
    its declared `resumable`, else whether it implements `state()`."""
    declared = getattr(cls, "resumable", None)
    if declared is not None:
        return bool(declared)
    return getattr(cls, "state", Algorithm.state) is not Algorithm.state


def returned_point(name: str, x: object, like: np.ndarray) -> np.ndarray:
    """The point algorithm `name` returned from `run`, checked: a floating-point array of the start point's shape
    (else AlgorithmError: the run fails), every value finite (else Diverged, as for a non-finite iterate)."""
    if not isinstance(x, np.ndarray):
        raise AlgorithmError(f"algorithm {name!r} returned {type(x).__name__}, not a point: run() must return the "
                             f"final iterate, an array of shape {like.shape}")
    if x.shape != like.shape or x.dtype.kind != "f":
        raise AlgorithmError(f"algorithm {name!r} returned an array of shape {x.shape} and dtype {x.dtype}, not a "
                             f"point: run() must return the final iterate, a float array of shape {like.shape}")
    bad = int(x.size - np.count_nonzero(np.isfinite(x)))
    if bad:
        raise Diverged(f"algorithm {name!r} returned a point that is not finite ({bad} of its {x.size} values are "
                       "NaN or inf)")
    return x


def register_algorithm(name: str) -> Callable[[type[Algorithm]], type[Algorithm]]:
    """Class decorator: make an `Algorithm` selectable as `--algorithm name` (built-ins use it too)."""

    def add(cls: type[Algorithm]) -> type[Algorithm]:
        cls.name = name
        ALGORITHMS.register(name, cls)
        return cls

    return add
