"""The N workers as an algorithm sees them: minibatch gradients, averaging, the run's update rule, evaluations; every
SFO, round and byte counted. They sample from each worker's own random stream and speak to the other processes
through a Backend; what they optimise is a Problem, which neither they nor the algorithm look into."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .comm.base import Backend
from .errors import InputError
from .ledger import Ledger
from .optim import Optimizer, Rounds, UpdateRule
from .problems.base import Problem
from .seeding import Stream, rng_for, rng_from_words, rng_to_words

RoundHook = Callable[[np.ndarray, bool], None]


class Workers:
    """The k workers this process simulates (an MPI rank: its block of the N; in process: all N), each with its shard
    of the problem and its random stream (seeded from the root seed and the worker's number, never from N).

    Arrays of per-worker vectors have shape (k, dim), of the problem's dtype. An algorithm written against this
    class runs unchanged on every backend and for every problem, and the Ledger sees every SFO and every round.
    `rule` is the run's update rule (--momentum, --nesterov, --weight-decay, --gamma-schedule; plain SGD at a
    constant step by default): an algorithm steps with `optimizer(gamma, rounds)`, never with x - gamma * g."""

    def __init__(self, backend: Backend, problem: Problem, seed: int, ledger: Ledger,
                 rule: UpdateRule | None = None) -> None:
        self.backend, self.problem, self.ledger = backend, problem, ledger
        self.rule = rule if rule is not None else UpdateRule()
        self._unapplied = self.rule.chosen  # the rule's first setting other than plain SGD, until an optimizer is asked
        self.n = backend.n_workers
        self.k = len(problem.shard_sizes)
        self.d = problem.dim
        self.dtype = np.dtype(problem.dtype)
        self.on_round: RoundHook | None = None  # the run's round pipeline (pipeline.Pipeline)
        self._rngs = [rng_for(seed, Stream.SAMPLING, w) for w in backend.local_workers]
        self._sizes = list(problem.shard_sizes)
        self._models = np.empty((self.k, self.d), dtype=self.dtype)
        self._grads = np.empty((self.k, self.d), dtype=self.dtype)
        self._draws = np.empty((self.k, 0), dtype=np.int64)
        self._payload: np.ndarray | None = None

    # -- stochastic first-order oracle ----------------------------------------------------------
    def gradients(self, x: np.ndarray, batch: int) -> np.ndarray:
        """Each local worker's mean stochastic gradient of f over `batch` fresh samples drawn i.i.d. (with
        replacement) from its own shard; x is shared (d,) or per worker (k, d). Returns (k, d), valid until the next
        call. Costs `batch` SFO per worker."""
        models, grads = self._models, self._grads
        models[:] = x
        self.problem.gradients(models, self._draw(batch), grads)
        self.problem.add_regularizer_grad(models, grads)
        self.ledger.add_sfo(batch)
        return grads

    def _draw(self, batch: int) -> np.ndarray:
        """Every local worker's next `batch` row indices into its shard, from its own stream."""
        if self._draws.shape[1] != batch:
            self._draws = np.empty((self.k, batch), dtype=np.int64)
        draws, sizes = self._draws, self._sizes
        if batch == 1:  # the scalar draw is 4x cheaper and consumes the stream identically
            for i, rng in enumerate(self._rngs):
                draws[i, 0] = rng.integers(0, sizes[i])
        else:
            for i, rng in enumerate(self._rngs):
                draws[i] = rng.integers(0, sizes[i], size=batch)
        return draws

    def rng_words(self) -> np.ndarray:
        """(k, RNG_WORDS) uint64: every local worker's sampling stream, exactly (for a checkpoint)."""
        return np.stack([rng_to_words(rng) for rng in self._rngs])

    def set_rng_words(self, words: np.ndarray) -> None:
        """Every local worker's stream goes on from its row of `words` (k, RNG_WORDS)."""
        for rng, row in zip(self._rngs, words, strict=True):
            rng_from_words(rng, row)

    # -- the update rule -----------------------------------------------------------------------------
    def optimizer(self, gamma: float, rounds: Rounds = None) -> Optimizer:
        """The run's update rule for an algorithm whose base step size is `gamma` and that runs `rounds` rounds (a
        count, or a function computing it: a step-size schedule such as cosine needs it): `step(x, g, t)` moves x
        by gradient g in round t (1-based, as the trace numbers rounds: `rounds_done` after the round's average,
        `rounds_done + 1` before it). The trace records its step size of every round (rounds/gamma). Its
        momentum buffer has x's shape (one per local worker for (k, d) models) and belongs in the algorithm's
        `state()` (`Optimizer.state`), per worker rows in `Algorithm.worker_state`."""
        opt = self.rule.optimizer(gamma, rounds)
        self.ledger.step_size = opt.step_size
        self._unapplied = None
        return opt

    @property
    def rounds_done(self) -> int:
        """Rounds counted so far in the run (a resumed run's included)."""
        return self.ledger.rounds

    # -- communication ---------------------------------------------------------------------------
    def average(self, rows: np.ndarray) -> np.ndarray:
        """Mean over all N workers of their rows (k, m): one communication round. Returns (m,), identical on every
        worker, valid until the next call. The problem's per-worker state that rounds keep in step (BatchNorm's
        running statistics) rides in the same collective, and counts in its bytes."""
        state = self.problem.buffers()
        if state is None:
            out = self.backend.mean(rows)
            self.ledger.add_round(rows.shape[1] * rows.itemsize)
            return out
        m = rows.shape[1]
        payload = self._payload
        if payload is None or payload.shape != (self.k, m + state.shape[1]) or payload.dtype != rows.dtype:
            payload = self._payload = np.empty((self.k, m + state.shape[1]), dtype=rows.dtype)
        payload[:, :m] = rows
        payload[:, m:] = state
        out = self.backend.mean(payload)
        self.ledger.add_round(payload.shape[1] * payload.itemsize)
        self.problem.set_buffers(out[m:])
        return out[:m]

    def end_round(self, x: np.ndarray, stage_end: bool = False) -> None:
        """The algorithm's consensus iterate after the round just counted (for evaluation and checks). An algorithm
        that never asked for the run's update rule (`optimizer`) while the user chose one is refused here, after its
        first round: it would run plain SGD and say nothing."""
        if self._unapplied is not None:
            name, value = self._unapplied
            raise InputError(name, value, "the algorithm does not step with the run's update rule "
                                          "(workers.optimizer), so it would ignore this setting")
        if self.on_round is not None:
            self.on_round(x, stage_end)

    def set_stage(self, stage: int) -> None:
        """Label the following rounds with an outer-loop index (Catalyst's k; 0 otherwise)."""
        self.ledger.stage = stage

    # -- exact full-data quantities (not counted as SFO or rounds) ---------------------------------
    def objective(self, x: np.ndarray) -> tuple[float, np.ndarray | None]:
        """f(x) and grad f(x) of the full objective (None where the problem does not evaluate gradients), the
        workers' sums reduced in worker order."""
        p = self.problem
        total = self.backend.sum(p.loss_sums(x, p.evaluates_gradient))
        M = p.eval_samples
        if not p.evaluates_gradient:
            return float(total[0]) / M + p.regularizer(x), None
        grad = total[1:] / M
        p.add_regularizer_grad(x, grad)
        return float(total[0]) / M + p.regularizer(x), grad

    def test_metrics(self, x: np.ndarray) -> tuple[float, float] | None:
        """(mean loss, accuracy) on the held-out test set, or None when the problem has none."""
        rows = self.problem.test_sums(x)
        if rows is None:
            return None
        loss, correct, count = self.backend.sum(rows)
        return float(loss / count), float(correct / count)
