"""The contract of a problem: what the workers optimise, over the shards this process holds. Problems are chosen by
name (`--model`) from the PROBLEMS registry; algorithms, backends, the ledger and the trace never learn which."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..registry import PROBLEMS, Setting

__all__ = ["PROBLEMS", "Problem", "Reduce", "Smoothness", "register_problem"]

#: The key of a problem's cached f*: (the setting, a function giving the data's fingerprint) -> the key, or None when
#: the run needs no f* (the fingerprint is asked for only when it is needed: it may read the data).
OptimumKey = Callable[[Setting, Callable[[], str]], "str | None"]

#: Sum of per-worker rows (k, m) over all N workers, in worker order, identical on every process (collective).
Reduce = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Smoothness:
    """An estimate of the smoothness constant L of f, and how it was obtained (recorded in the trace)."""

    L: float
    method: str
    converged: bool = True
    details: dict[str, float] = field(default_factory=dict)


class Problem(ABC):
    """What the N workers optimise, seen from the k workers this process simulates (an MPI rank: its block of the N;
    N in process).

    x is a flat vector of `dim` numbers of `dtype` (float64 for logistic regression, float32 for networks);
    per-worker vectors are (k, dim) rows, one per local worker. Worker i's shard has `shard_sizes[i]` samples, and
    a minibatch is a row of a (k, B) array of indices into each worker's own shard, drawn by `Workers` from the
    worker's random stream. One SFO is one sample's gradient, so `gradients` with batches of B costs B SFO per
    worker; `Workers` counts them, the problem only computes.

    Subclasses set the attributes in their constructor (from the configuration, loading this process's shards)
    and implement the abstract methods; the rest have defaults for problems without them."""

    name: str = ""
    dim: int
    dtype: np.dtype
    n_samples: int
    shard_sizes: list[int]
    data_name: str
    #: False when the full gradient over the training set costs too much to evaluate (networks): evaluations then
    #: record the loss only, and ||grad f||^2 as NaN.
    evaluates_gradient: bool = True
    #: False when `smoothness` returns None: every step size must then be given (checked before the run).
    estimates_smoothness: bool = True

    @abstractmethod
    def initial_point(self) -> np.ndarray:
        """x_0, identical on every process (it may depend on the seed root, never on N)."""

    @abstractmethod
    def gradients(self, models: np.ndarray, batches: np.ndarray, out: np.ndarray) -> None:
        """out[i] = the mean gradient of the data loss over worker i's minibatch `batches[i]` at `models[i]`,
        regulariser excluded (`add_regularizer_grad` adds it). All k local workers are handed over at once, so
        that a problem may stack them; worker i's result must not depend on the others (bit for bit: that is what
        makes the in-process backend's traces identical to MPI's)."""

    @abstractmethod
    def loss_sums(self, x: np.ndarray, with_gradient: bool) -> np.ndarray:
        """(k, 1 + dim) if `with_gradient` else (k, 1): for each local worker, the sum over its shard (or the part of
        it a problem evaluates, see `eval_samples`) of the data loss at x, and of its gradient. The caller sums them
        over all workers in worker order and divides by `eval_samples`."""

    @property
    def eval_samples(self) -> int:
        """How many training samples an evaluation covers in all (default: every one)."""
        return self.n_samples

    def evaluation_settings(self) -> dict[str, int]:
        """The evaluation settings (`eval_points`, `eval_samples`, `test_samples`) this problem chose for those the
        configuration left unset (None), e.g. from the evaluation budget of a network; the run records them as its
        own. Default: none (`eval_points` then defaults to DEFAULT_EVAL_POINTS)."""
        return {}

    def regularizer(self, x: np.ndarray) -> float:
        """r(x), added to the data loss (exact, no SFO); default 0."""
        return 0.0

    def add_regularizer_grad(self, x: np.ndarray, out: np.ndarray) -> None:
        """out += grad r(x), row-wise if x is 2-D; default nothing."""
        return None

    def smoothness(self, reduce: Reduce) -> Smoothness | None:
        """An estimate of L of f, computed collectively with `reduce` (the same on every process, and for every
        seed); None when the problem has none (then every step size must be given)."""
        return None

    def test_sums(self, x: np.ndarray) -> np.ndarray | None:
        """(k, 3): for each local worker, over its part of the held-out test set: the sum of the losses, the number
        of correct predictions, the number of samples; None when the problem has no test set."""
        return None

    def buffers(self) -> np.ndarray | None:
        """(k, m) state of each local worker outside x that every round averages over the workers (BatchNorm's
        running statistics), sent in the same round and counted in its bytes; None when there is none."""
        return None

    def set_buffers(self, mean: np.ndarray) -> None:
        """Every local worker takes the averaged state (m,)."""
        return None

    def fingerprint(self) -> str | None:
        """A short string that changes when the problem's data change (a resume refuses data that changed); None:
        the problem cannot tell."""
        return None

    def optimum_key(self) -> str | None:
        """A key under which f* of this problem is cached (it is computed by L-BFGS); None: no f* (non-convex)."""
        return None

    def describe(self) -> str:
        """The problem in a few words, for the summary line: e.g. 'synthetic (20000 x 51, l2 lam=0.001)'."""
        return f"{self.name} on {self.data_name} ({self.n_samples} samples, dim {self.dim})"


#: A problem's factory: a `Setting` (the configuration, N, this process's workers) -> the problem, its data loaded.
Factory = Callable[[Setting], Problem]


def register_problem(name: str, *, estimates_smoothness: bool = True,
                     optimum_key: OptimumKey | None = None) -> Callable[[Factory], Factory]:
    """Decorator: make a problem factory selectable as `--model name` (built-ins use it too). It answers two
    questions before any data is loaded: `estimates_smoothness` (False: its problems have no estimate of L, so a run
    that leaves a step size to derive is refused at once), and `optimum_key` (a function of the setting and the
    data's fingerprint, asked only when called, giving the key of a cached f*, or None when the run needs no f*;
    absent: never)."""

    def add(factory: Factory) -> Factory:
        answers: dict[str, object] = {"estimates_smoothness": estimates_smoothness}
        if optimum_key is not None:
            answers["optimum_key"] = optimum_key
        PROBLEMS.register(name, factory, answers=answers)
        return factory

    return add
