"""The update rule every algorithm steps with (heavy ball, Nesterov, decoupled weight decay) and the step-size
schedules (registered by name for `--gamma-schedule`, with a linear warm-up that composes with any of them)."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import InputError
from .params import Param, int_text
from .registry import GAMMA_SCHEDULES, Setting

if TYPE_CHECKING:
    from .config import Config

#: What an algorithm may pass for its number of rounds: the count, a function that computes it (called only when the
#: step-size schedule needs it), or None (unknown in advance: an adaptive batch schedule).
Rounds = int | Callable[[], int | None] | None
#: Momentum settings of local SGD after an averaging round: each worker's buffer as it is, averaged in the same
#: collective as the models (its bytes counted), or set to zero.
MOMENTUM_AVERAGES = ("keep", "average", "reset")


# -- step-size schedules ------------------------------------------------------------------------------------------
class GammaSchedule(ABC):
    """The step size of round t = 1, 2, ... as a multiple of the base step gamma: gamma_t = gamma * factor(t, R),
    R the run's number of rounds (None when it is not known in advance; a schedule that needs it sets
    `needs_rounds`, and a run that cannot know R is refused before it starts). A function of t and R alone, so a
    resume needs nothing but the round index."""

    needs_rounds: bool = False

    @abstractmethod
    def factor(self, t: int, rounds: int | None) -> float:
        """gamma_t / gamma for round t (1-based) of `rounds`."""

    @abstractmethod
    def describe(self) -> str:
        """One line: the schedule's name and formula with its parameters."""


class ConstantGamma(GammaSchedule):
    """gamma_t = gamma (the default)."""

    def factor(self, t: int, rounds: int | None) -> float:
        return 1.0

    def describe(self) -> str:
        return "constant: gamma_t = gamma"


class StepGamma(GammaSchedule):
    """gamma_t = gamma * factor^k, k the number of milestones m < t (the first m rounds run at the step before;
    PyTorch's MultiStepLR with rounds for epochs), or k = floor((t - 1) / every) (StepLR). factor^k is the k-fold
    product 1.0 * factor * ... * factor, rounded at each step: the same bits on every machine (no libm pow)."""

    def __init__(self, factor: float, milestones: tuple[int, ...] = (), every: int = 0) -> None:
        if not factor > 0 or bool(milestones) == (every > 0) or every < 0 \
                or any(b <= a for a, b in zip(milestones, milestones[1:])) or (milestones and milestones[0] < 1):
            raise ValueError("need factor > 0 and either increasing milestones >= 1 or every >= 1")
        self.mult, self.milestones, self.every = factor, milestones, every
        self._k, self._power = 0, 1.0  # the last power computed: rounds come in order, so each is one product

    def stage(self, t: int) -> int:
        """k: how many times gamma has been multiplied by round t."""
        if self.every:
            return (t - 1) // self.every
        return sum(1 for m in self.milestones if m < t)

    def factor(self, t: int, rounds: int | None) -> float:
        k = self.stage(t)
        if k < self._k:
            self._k, self._power = 0, 1.0
        while self._k < k:
            self._k, self._power = self._k + 1, self._power * self.mult
        return self._power

    def describe(self) -> str:
        when = f"k = floor((t-1)/{self.every})" if self.every else \
            f"k = #milestones before t, milestones {','.join(map(str, self.milestones))}"
        return f"step: gamma_t = gamma * {self.mult:g}^k, {when}"


class CosineGamma(GammaSchedule):
    """gamma_t = gamma (1 + cos(pi (t - 1) / R)) / 2 over the R rounds the budget allows: gamma in round 1, falling to
    zero at the end of round R (round t takes the value at its start, (t - 1)/R of the way; PyTorch's
    CosineAnnealingLR with T_max = R and eta_min = 0). The cosine is `cos_pi`: the same bits on every machine."""

    needs_rounds = True

    def factor(self, t: int, rounds: int | None) -> float:
        if rounds is None or rounds < 1:
            raise ValueError("the cosine schedule needs the number of rounds")
        return (1.0 + cos_pi(Fraction(t - 1, rounds))) / 2.0

    def describe(self) -> str:
        return "cosine: gamma_t = gamma (1 + cos(pi (t-1)/R)) / 2, R the rounds the budget allows"


#: cos(x) = sum_k (-1)^k x^(2k) / (2k)!, sin(x) = sum_k (-1)^k x^(2k+1) / (2k+1)!: enough terms for |x| <= pi/4.
_COS_COEFFS = tuple((-1) ** k / math.factorial(2 * k) for k in range(12))
_SIN_COEFFS = tuple((-1) ** k / math.factorial(2 * k + 1) for k in range(12))


def cos_pi(q: Fraction) -> float:
    """cos(pi q) for a rational q, in elementary IEEE operations only (exact range reduction of q, then a Taylor
    polynomial of fixed degree on |pi q| <= pi/4 by Horner's rule): its bits depend on q alone, not on the C library.
    Within about 4e-16 of the true value (the tests compare it with math.cos)."""
    q = abs(q) % 2
    if q > 1:
        q = 2 - q
    if q > Fraction(1, 2):
        return -cos_pi(1 - q)
    if q > Fraction(1, 4):  # cos(pi q) = sin(pi (1/2 - q))
        x = math.pi * float(Fraction(1, 2) - q)
        return x * _horner(_SIN_COEFFS, x * x)
    x = math.pi * float(q)
    return _horner(_COS_COEFFS, x * x)


def _horner(coeffs: tuple[float, ...], z: float) -> float:
    acc = 0.0
    for c in reversed(coeffs):
        acc = acc * z + c
    return acc


@dataclass(frozen=True)
class StepSizes:
    """gamma_t of every round t = 1, 2, ...: g = gamma * schedule.factor(t, R), then in the first K - 1 rounds of a
    linear warm-up over K = `warmup` rounds g * t / K (from gamma/K in round 1 up to the schedule's own value in
    round K; the schedule's rounds are counted from 1 as ever, so milestones are absolute). Constant without warm-up
    is gamma itself, with no arithmetic at all (today's bits)."""

    gamma: float
    schedule: GammaSchedule = field(default_factory=ConstantGamma)
    warmup: int = 0
    rounds: int | None = None
    #: gamma_t = gamma in every round (set from the fields).
    constant: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "constant", type(self.schedule) is ConstantGamma and self.warmup <= 1)
        if self.schedule.needs_rounds and self.rounds is None:
            raise InputError("gamma_schedule", self.schedule.describe(), "needs the run's number of rounds in "
                                                                         "advance, and the algorithm did not give it")

    def __call__(self, t: int) -> float:
        """gamma_t for round t (1-based)."""
        if self.constant:
            return self.gamma
        value = self.gamma * self.schedule.factor(t, self.rounds)
        if t < self.warmup:
            value = value * t / self.warmup
        return value


# -- the update rule --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class UpdateRule:
    """How x moves given a gradient g and the round's step gamma_t (PyTorch's SGD convention, buffer v from 0):

        heavy ball (momentum beta):  v <- beta v + g;  d = v
        Nesterov (--nesterov):       v <- beta v + g;  d = g + beta v
        no momentum:                 d = g
        decoupled weight decay wd:   x <- (1 - gamma_t wd) x   (SGDW; torch.optim.AdamW's form of x - gamma wd x)
        then                         x <- x - gamma_t d

    The L2 regulariser (--lam) is part of g, as before. With beta = 0 and wd = 0 the step is x -= gamma_t * g: the
    same operations in the same order as before this rule existed, so those runs keep their bits."""

    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    schedule: GammaSchedule = field(default_factory=ConstantGamma)
    warmup: int = 0

    @classmethod
    def from_config(cls, cfg: Config) -> UpdateRule:
        """The rule of a run: --momentum, --nesterov, --weight-decay, --gamma-schedule (with its parameters) and
        --warmup-rounds."""
        return cls(cfg.momentum, cfg.nesterov, cfg.weight_decay, make_gamma_schedule(cfg), cfg.warmup_rounds)

    @property
    def plain(self) -> bool:
        """No momentum and no weight decay: x -= gamma_t * g."""
        return self.momentum == 0.0 and self.weight_decay == 0.0

    @property
    def chosen(self) -> tuple[str, Any] | None:
        """The first setting that makes this rule other than plain SGD at a constant step, as (option, value); None
        for plain SGD."""
        for name, value, plain in (("momentum", self.momentum, 0.0), ("weight_decay", self.weight_decay, 0.0),
                                   ("gamma_schedule", self.schedule.describe(), ConstantGamma().describe()),
                                   ("warmup_rounds", self.warmup, 0)):
            if value != plain and not (name == "warmup_rounds" and value == 1):
                return name, value
        return None

    @property
    def needs_rounds(self) -> bool:
        """The step-size schedule needs the run's number of rounds in advance."""
        return self.schedule.needs_rounds

    def optimizer(self, gamma: float, rounds: Rounds = None) -> Optimizer:
        """The stepper of an algorithm with base step `gamma` over `rounds` rounds (see `Rounds`)."""
        count = rounds() if callable(rounds) and self.needs_rounds else rounds if isinstance(rounds, int) else None
        return Optimizer(self, StepSizes(gamma, self.schedule, self.warmup, count))

class Optimizer:
    """One algorithm's stepper: `step(x, g, t)` moves x (one iterate (d,), or one per local worker (k, d)) by the
    rule with round t's step size, keeping the momentum buffer `velocity` (of x's shape, zero at first). Its state
    is the buffer (none without momentum): the step sizes are a function of t, so a resume needs only the round."""

    def __init__(self, rule: UpdateRule, steps: StepSizes) -> None:
        self.rule, self.gamma = rule, steps
        self.velocity: np.ndarray | None = None
        self._plain = rule.plain
        self._fixed = steps.gamma if steps.constant else None
        #: what the ledger records for each round: the step size itself when it is constant (no call per round)
        self.step_size: float | StepSizes = steps if self._fixed is None else self._fixed

    def step(self, x: np.ndarray, g: np.ndarray, t: int) -> None:
        """x <- the rule's update of x by gradient g (x's shape) in round t, in place."""
        gamma = self._fixed if self._fixed is not None else self.gamma(t)
        if self._plain:
            x -= gamma * g
            return
        rule = self.rule
        d = g
        beta = rule.momentum
        if beta:
            v = self.velocity
            if v is None or v.shape != g.shape:
                v = self.velocity = np.zeros_like(g)
            v *= beta
            v += g
            d = g + beta * v if rule.nesterov else v
        if rule.weight_decay:
            x *= 1.0 - gamma * rule.weight_decay
        x -= gamma * d

    def reset(self) -> None:
        """Momentum back to zero (Catalyst's new outer step, local SGD's --momentum-average reset)."""
        if self.velocity is not None:
            self.velocity[...] = 0.0

    def state(self) -> dict[str, Any]:
        """{'velocity': a copy of the buffer} with momentum, else {} (the state of a run without momentum is as
        before)."""
        return {} if self.velocity is None else {"velocity": self.velocity.copy()}

    def restore(self, state: dict[str, Any], like: np.ndarray) -> None:
        """Go on from `state` (a fresh optimizer of the same run); the buffer has the shape and dtype of `like`."""
        if self.rule.momentum and "velocity" in state:
            self.velocity = np.array(state["velocity"], dtype=like.dtype).reshape(like.shape)


# -- the registry's built-ins ----------------------------------------------------------------------------------
@GAMMA_SCHEDULES.register("constant")
def _constant(setting: Setting) -> GammaSchedule:
    """gamma_t = gamma (the default)."""
    return ConstantGamma()


@GAMMA_SCHEDULES.register("step", params=(
    Param("gamma_milestones", "str", "", "gamma schedule 'step': multiply gamma by --gamma-factor after each of "
          "these rounds (increasing, comma-separated: 100,200)"),
    Param("gamma_every", "int", 0, "gamma schedule 'step': ... or after every this many rounds (0: use the "
          "milestones)", low=0),
    Param("gamma_factor", "float", 0.1, "gamma schedule 'step': the factor", low=0.0, low_open=True),
))
def _step(setting: Setting) -> GammaSchedule:
    """gamma_t = gamma factor^k after k milestones, or after every K rounds (the classic step decay)."""
    cfg = setting.cfg
    text, every = cfg.param("gamma_milestones"), cfg.param("gamma_every")
    milestones = parse_milestones(text)
    if not milestones and not every:
        raise InputError("gamma_milestones", text, "give the rounds after which gamma is multiplied (e.g. 100,200), "
                                                   "or --gamma-every K")
    if milestones and every:
        raise InputError("gamma_every", every, "give --gamma-milestones or --gamma-every, not both")
    return StepGamma(cfg.param("gamma_factor"), milestones, every)


@GAMMA_SCHEDULES.register("cosine")
def _cosine(setting: Setting) -> GammaSchedule:
    """gamma_t = gamma (1 + cos(pi (t-1)/R)) / 2: to zero at the end of the R rounds the budget allows."""
    return CosineGamma()


def parse_milestones(text: str) -> tuple[int, ...]:
    """'100,200' -> (100, 200): strictly increasing integers >= 1; '' -> (); else the one-line InputError."""
    if not text.strip():
        return ()
    why = "must be increasing round numbers >= 1, comma-separated (e.g. 100,200)"
    try:
        values = tuple(int_text("gamma_milestones", part.strip()) for part in text.split(","))
    except InputError:
        raise InputError("gamma_milestones", text, why) from None
    if values[0] < 1 or any(b <= a for a, b in zip(values, values[1:])):
        raise InputError("gamma_milestones", text, why)
    return values


def make_gamma_schedule(cfg: Config) -> GammaSchedule:
    """The step-size schedule `cfg.gamma_schedule` names, built from `cfg` (a plug-in factory's failure is one
    InputError naming it)."""
    try:
        return GAMMA_SCHEDULES.build(cfg.gamma_schedule, Setting(cfg))
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - a plug-in's own error, said in one line
        raise InputError("gamma_schedule", cfg.gamma_schedule, f"its factory failed: {type(exc).__name__}: {exc}") \
            from None


def check_rounds(cfg: Config, rounds: Rounds, why: str) -> None:
    """InputError when the step-size schedule needs the number of rounds in advance and `rounds` cannot give it
    (`why`: what makes it unknown, e.g. an adaptive batch schedule)."""
    if not make_gamma_schedule(cfg).needs_rounds:
        return
    count = rounds() if callable(rounds) else rounds
    if count is None:
        raise InputError("gamma_schedule", cfg.gamma_schedule, f"needs the run's number of rounds in advance: {why}")


__all__ = ["ConstantGamma", "CosineGamma", "GammaSchedule", "MOMENTUM_AVERAGES", "Optimizer", "StepGamma",
           "StepSizes", "UpdateRule", "check_rounds", "cos_pi", "make_gamma_schedule", "parse_milestones"]
