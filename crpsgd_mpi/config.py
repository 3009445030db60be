"""The run configuration: one typed, validated, serialisable object (TOML in, JSON/TOML out)."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import tomllib

from . import limits
from .errors import InputError
from .limits import INT64_MAX, MAX_MAGNITUDE, MAX_T, Need
from .params import FLOAT_TEXT as _FLOAT_TEXT
from .params import INT_TEXT as _INT_TEXT
from .params import MAX_DIGITS as _MAX_DIGITS
from .params import Param, field_kind, keyed, typed
from .params import key as param_key

REGULARIZERS = ("l2", "nonconvex", "none")
BACKENDS = ("auto", "mpi", "local")
DEVICES = ("cpu", "cuda")
REDUCTIONS = ("exact", "ordered", "allreduce")
STORAGES = ("auto", "dense", "sparse")
NAMED_PERIODS = ("stich", "prsgd")
DEFAULT_FMNIST_DIR = "/usr/share/datasets/fashion-mnist"
#: Evaluation points of a run that does not set --eval-points (networks: at most this many, see ledger.evaluation_budget).
DEFAULT_EVAL_POINTS = limits.DEFAULT_EVAL_POINTS
DEFAULT_CHECKPOINT_EVERY = "60s"
#: What a checkpoint interval's unit means in seconds.
_TIME_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}
#: A configuration is a few hundred bytes; a file far larger is not one (and is not read into memory).
MAX_CONFIG_BYTES = 1 << 20
#: Longest --stall-timeout and --checkpoint-every time (about 31.7 years); a stall timeout of 0 turns the watchdog off.
MAX_STALL_TIMEOUT = 1e9
@dataclass(frozen=True)
class Config:
    """Everything a run needs; `None` for gamma/theta/workers means "derive it" (see `resolve`)."""

    algorithm: str = field(default="cr-psgd", metadata={"help": "algorithm to run (registered: see --list)"})
    T: int = field(default=10_000, metadata={"help": "per-worker SFO budget"})
    B1: int = field(default=1, metadata={"help": "first batch size of CR-PSGD (also the inner one of catalyst)"})
    rho: float = field(default=1.1, metadata={"help": "batch growth factor of CR-PSGD, > 1"})
    schedule: str = field(
        default="geometric",
        metadata={"help": "batch schedule of cr-psgd and catalyst's inner loop: geometric (Algorithm 1), linear, "
                  "step, norm-test, or a plug-in's"},
    )
    step_factor: float = field(default=2.0, metadata={"help": "schedule 'step': multiply the batch by this, > 1"})
    step_every: int = field(default=10, metadata={"help": "schedule 'step': ... every this many rounds"})
    norm_theta: float = field(
        default=0.5, metadata={"help": "schedule 'norm-test': grow the batch while Var(g) > norm_theta^2 ||g||^2"})
    gamma: float | None = field(default=None, metadata={"help": "step size (default: theory-derived from L)"})
    theta: float | None = field(default=None, metadata={"help": "catalyst proximal weight (default 2L)"})
    batch_size: int = field(default=1, metadata={"help": "psgd: fixed per-worker batch size"})
    period: int | str = field(
        default="stich",
        metadata={"help": "local-sgd: local steps between averages: an integer, 'stich' = floor(sqrt(T/N)) "
                  "or 'prsgd' = max(1, floor(T^(1/4) / N^(3/4)))"},
    )
    local_batch: int = field(default=1, metadata={"help": "local-sgd: batch size of each local step"})
    momentum: float = field(
        default=0.0,
        metadata={"help": "heavy-ball momentum beta in [0, 1): v <- beta v + g, x <- x - gamma v (PyTorch's SGD); "
                  "every algorithm; 0: plain SGD, as before"},
    )
    nesterov: bool = field(default=False, metadata={"help": "Nesterov momentum: x <- x - gamma (g + beta v) (needs "
                                                             "--momentum > 0)"})
    weight_decay: float = field(
        default=0.0,
        metadata={"help": "decoupled weight decay wd (SGDW): x <- (1 - gamma wd) x with every step, beside the L2 "
                  "regulariser --lam that is part of the gradient"},
    )
    gamma_schedule: str = field(
        default="constant",
        metadata={"help": "step-size schedule over the rounds: constant, step, cosine, or a plug-in's"},
    )
    warmup_rounds: int = field(
        default=0, metadata={"help": "linear warm-up of the step size over the first K rounds (0: none), times the "
                             "--gamma-schedule"})
    momentum_average: str = field(
        default="keep",
        metadata={"help": "local-sgd with momentum: after an averaging round each worker's buffer is kept as it is "
                  "(keep), averaged in the same round (average: the round's bytes double), or set to zero (reset)"},
    )
    model: str = field(
        default="logreg",
        metadata={"help": "what the workers optimise: logreg (logistic regression), resnet20 or cnn (networks, needs "
                  "the [torch] extra), or a plug-in's"},
    )
    device: str = field(default="cpu", metadata={"help": "networks: cpu or cuda (a GPU shared by the ranks)"})
    eval_samples: int | None = field(
        default=None,
        metadata={"help": "networks: training samples an evaluation covers in all, a fixed part of each shard "
                  "(default: 10000, fewer where the evaluation budget needs: docs, Deep networks)"},
    )
    test_samples: int | None = field(
        default=None,
        metadata={"help": "networks: test images an evaluation scores, a fixed seeded subset of the test set "
                  "(default: all of it, fewer where the evaluation budget needs)"},
    )
    dataset: str = field(
        default="synthetic",
        metadata={"help": "'synthetic', 'fashion-mnist', or a path to a LIBSVM/svmlight or HDF5 (/X, /y) file"},
    )
    fmnist_dir: str = field(default=DEFAULT_FMNIST_DIR, metadata={"help": "folder of the Fashion-MNIST IDX files"})
    storage: str = field(default="auto", metadata={"help": "feature storage: auto (sparse LIBSVM stays CSR), dense, sparse"})
    intercept: bool = field(default=True, metadata={"help": "append a constant-1 feature"})
    regularizer: str = field(default="l2", metadata={"help": "l2, nonconvex (lam * sum x^2/(1+x^2)) or none"})
    lam: float = field(default=1e-3, metadata={"help": "regularisation weight lambda"})
    samples: int = field(default=20_000, metadata={"help": "synthetic: number of rows"})
    features: int = field(default=50, metadata={"help": "synthetic: number of features"})
    condition: float = field(default=100.0, metadata={"help": "synthetic: ratio of largest to smallest feature variance"})
    label_noise: float = field(default=0.05, metadata={"help": "synthetic: probability of a flipped label"})
    data_seed: int = field(default=0, metadata={"help": "synthetic: seed of the generator (the data never depends on N)"})
    seed: int = field(default=0, metadata={"help": "seed root: shard shuffle and per-worker sampling streams"})
    out: str | None = field(default=None, metadata={"help": "trace path (default: a new file under runs/)"})
    overwrite: bool = field(default=False, metadata={"help": "replace an existing --out"})
    eval_points: int | None = field(
        default=None,
        metadata={"help": f"full-objective evaluations, spaced geometrically in SFO (at most max(T + 1, 40); default "
                  f"{DEFAULT_EVAL_POINTS}, for networks fewer where the evaluation budget needs)"},
    )
    backend: str = field(default="auto", metadata={"help": "mpi, local, or auto (mpi when started by mpiexec)"})
    workers: int | None = field(
        default=None,
        metadata={"help": "number of workers N: local backend, virtual workers in one process (default 10); mpi, "
                  "spread over the ranks in contiguous blocks (at least one a rank; default: one a rank)"},
    )
    reduction: str = field(
        default="exact",
        metadata={"help": "exact: integer Allreduce of every addend on one fixed-point grid, rounded once (the same "
                  "bits on any backend, placement and MPI; correctly rounded where the addends fit the grid); "
                  "ordered: Allgather + fixed-order sum (same bits, N times the bytes); allreduce: the MPI "
                  "library's float Allreduce(SUM) (its order, its bits)"},
    )
    stall_timeout: float = field(
        default=300.0,
        metadata={"help": "MPI: end the job when no collective completes for this many seconds, naming the ranks "
                  "that did not arrive (must exceed the longest computation between two rounds); 0 disables"},
    )
    quiet: bool = field(default=False, metadata={"help": "print nothing but errors"})
    plugin: tuple[str, ...] = field(
        default=(),
        metadata={"help": "import this module or Python file first, on every process (repeatable): it may register "
                  "algorithms, schedules, problems and data sets"},
    )
    fault: str | None = field(
        default=None,
        metadata={"help": "inject a failure: 'W:R' raises an exception on worker W after round R, 'W:R:kill' kills "
                  "its process with SIGKILL there (tests the no-hang and resume paths)"},
    )
    checkpoint_every: str = field(
        default=DEFAULT_CHECKPOINT_EVERY,
        metadata={"help": "write a checkpoint (for --resume) every this many rounds ('500') or seconds ('60s', "
                  "'10m'), or 'off'"},
    )
    extras: tuple[tuple[str, Any], ...] = field(
        default=(),
        metadata={"help": "the selected plug-in components' own parameters, (name, value) sorted by name; given and "
                  "recorded as top-level settings (`--power 1.5`, `power = 1.5`)", "internal": True},
    )

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], source: str = "", text: frozenset[str] = frozenset()) -> Config:
        """Build and validate from a mapping (TOML table, API keywords or CLI overrides); keys may use '-' or '_'.
        A key that is no core setting must be a parameter of a selected component (`component_params`); the keys in
        `text` are command-line text, parsed strictly."""
        kwargs: dict[str, Any] = {}
        rest: dict[str, tuple[str, Any]] = {}
        for raw_key, value in values.items():
            key = param_key(raw_key)
            if key in FIELD_KINDS:
                if key == "checkpoint_every" and isinstance(value, int) and not isinstance(value, bool):
                    value = str(value)  # TOML's `checkpoint_every = 500`: rounds
                kwargs[key] = typed(key, value, FIELD_KINDS[key])
            else:
                rest[key] = (raw_key, value)
        defaults = {f.name: f.default for f in fields(cls)}
        declared = component_params(*(kwargs.get(k, defaults[k])
                                      for k in ("algorithm", "schedule", "model", "dataset", "gamma_schedule")))
        extras: dict[str, Any] = {}
        for key, (raw_key, value) in rest.items():
            if key not in declared:
                raise InputError(raw_key, value, _unknown(key, source))
            extras[key] = declared[key][1].value(value, from_text=key in text)
        for key, (_, param) in declared.items():
            extras.setdefault(key, param.default)
        cfg = cls(**kwargs, extras=tuple(sorted(extras.items())))
        cfg.validate()
        return cfg

    def param(self, name: str) -> Any:
        """A parameter's value: a selected plug-in component's own (`extras`), else the core setting."""
        for key, value in self.extras:
            if key == name:
                return value
        if name in CORE_NAMES:
            return getattr(self, name)
        raise KeyError(f"{name!r} is neither a setting nor a parameter of this run's components")

    @classmethod
    def from_toml(cls, path: str | Path, overrides: Mapping[str, Any] | None = None) -> Config:
        """Read a TOML file; `overrides` (e.g. from the command line) win over the file."""
        merged = cls.read_toml(path)
        merged.update(keyed(overrides or {}))
        return cls.from_mapping(merged, source=str(path))

    @staticmethod
    def read_toml(path: str | Path) -> dict[str, Any]:
        """The raw settings of a TOML file (keys with '_'), not yet checked. Only a regular file of at most
        MAX_CONFIG_BYTES of UTF-8 is read (a FIFO or a device is refused without being opened)."""
        raw = limits.read_small_file(path, "config", MAX_CONFIG_BYTES)
        try:
            text = raw.decode("utf-8-sig")  # a leading byte-order mark, as some editors write, is dropped
        except UnicodeDecodeError as exc:
            raise InputError("config", str(path), f"is not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset "
                                                  f"{exc.start})") from None
        try:
            data = tomllib.loads(text)
        except (tomllib.TOMLDecodeError, ValueError, RecursionError) as exc:
            raise InputError("config", str(path), f"cannot read TOML: {limits.shown(exc)}") from None
        return keyed(data)

    def validate(self) -> None:
        """Raise InputError naming the first invalid field: types, ranges, the relations between fields, and the
        memory the settings alone imply (the rest of the memory plan needs the data's shape and N: `check_source`)."""
        from .registry import ALGORITHMS, GAMMA_SCHEDULES, PROBLEMS, SCHEDULES

        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, str) and "\0" in value:
                raise InputError(f.name, value, "must not contain a NUL character")
        self._check_paths()
        if self.algorithm not in ALGORITHMS:
            ALGORITHMS.get(self.algorithm)  # raises, listing what is registered
        if self.schedule not in SCHEDULES:
            SCHEDULES.get(self.schedule)
        if self.model not in PROBLEMS:
            PROBLEMS.get(self.model)
        _choice("device", self.device, DEVICES)
        for name in ("eval_samples", "test_samples"):
            if getattr(self, name) is not None:
                _count(name, getattr(self, name), 1)
        _choice("regularizer", self.regularizer, REGULARIZERS)
        _choice("backend", self.backend, BACKENDS)
        _choice("reduction", self.reduction, REDUCTIONS)
        _choice("storage", self.storage, STORAGES)
        _count("T", self.T, 1, MAX_T, "2^62: SFO counts and evaluation targets must stay 64-bit integers")
        _count("B1", self.B1, 1)
        if not (_is_number(self.rho) and math.isfinite(self.rho) and self.rho > 1):
            raise InputError("rho", self.rho, "must be a finite number > 1")
        for name in ("gamma", "theta"):
            value = getattr(self, name)
            if value is not None and not (_is_number(value) and math.isfinite(value) and value > 0):
                raise InputError(name, value, "must be a finite number > 0")
        if self.theta is not None and self.theta > MAX_MAGNITUDE:
            raise InputError("theta", self.theta, f"must be <= {MAX_MAGNITUDE:g} (gamma = 1/(L + theta) must stay > 0)")
        _count("batch_size", self.batch_size, 1)
        if not (_is_number(self.step_factor) and math.isfinite(self.step_factor) and self.step_factor > 1):
            raise InputError("step_factor", self.step_factor, "must be a finite number > 1")
        _count("step_every", self.step_every, 1)
        if not (_is_number(self.norm_theta) and math.isfinite(self.norm_theta) and self.norm_theta > 0):
            raise InputError("norm_theta", self.norm_theta, "must be a finite number > 0")
        if isinstance(self.period, str):
            if self.period not in NAMED_PERIODS:
                raise InputError("period", self.period, "must be an integer >= 1, 'stich' or 'prsgd'")
        else:
            _count("period", self.period, 1)
        _count("local_batch", self.local_batch, 1)
        self._check_update_rule(GAMMA_SCHEDULES)
        if not _is_number(self.lam) or not math.isfinite(self.lam) or self.lam < 0:
            raise InputError("lam", self.lam, "must be a finite number >= 0")
        if self.lam > MAX_MAGNITUDE:
            raise InputError("lam", self.lam, f"must be <= {MAX_MAGNITUDE:g} (the smoothness constant L must stay "
                                              "finite, and gamma = 1/L > 0)")
        if self.regularizer != "none" and self.lam == 0:
            raise InputError("lam", self.lam, f"must be > 0 with regularizer {self.regularizer!r} (or use 'none')")
        if not self.dataset:
            raise InputError("dataset", self.dataset, "must be 'synthetic', 'fashion-mnist' or a file path")
        _count("samples", self.samples, 1)
        _count("features", self.features, 1)
        if not (_is_number(self.condition) and math.isfinite(self.condition) and self.condition >= 1):
            raise InputError("condition", self.condition, "must be a finite number >= 1")
        if not (_is_number(self.label_noise) and 0 <= self.label_noise < 0.5):
            raise InputError("label_noise", self.label_noise, "must be in [0, 0.5)")
        _count("data_seed", self.data_seed, 0, INT64_MAX, "2^63 - 1: the trace stores seeds as 64-bit integers")
        _count("seed", self.seed, 0, INT64_MAX, "2^63 - 1: the trace stores seeds as 64-bit integers")
        if self.eval_points is not None:
            _count("eval_points", self.eval_points, 2)
            cap = max(self.T + 1, DEFAULT_EVAL_POINTS)
            if self.eval_points > cap:
                raise InputError("eval_points", self.eval_points,
                                 f"must be <= max(T + 1, {DEFAULT_EVAL_POINTS}) = {cap}: the plan has at most T "
                                 "targets (one per SFO), plus the start")
        if self.workers is not None:
            _count("workers", self.workers, 1)
        if not (_is_number(self.stall_timeout) and math.isfinite(self.stall_timeout) and self.stall_timeout >= 0):
            raise InputError("stall_timeout", self.stall_timeout, "must be a finite number of seconds >= 0 (0: off)")
        if self.stall_timeout > MAX_STALL_TIMEOUT:
            raise InputError("stall_timeout", self.stall_timeout,
                             f"must be <= {MAX_STALL_TIMEOUT:g} seconds (0 turns the watchdog off)")
        if self.fault is not None:
            self.fault_point()
        self.checkpoint_plan()
        limits.require(self._fixed_needs())

    def _check_update_rule(self, registry: Any) -> None:
        """--momentum in [0, 1), --nesterov only with momentum, --weight-decay >= 0, --warmup-rounds >= 0, a known
        --momentum-average, and a step-size schedule that its own parameters build."""
        from .optim import MOMENTUM_AVERAGES, make_gamma_schedule

        if not (_is_number(self.momentum) and math.isfinite(self.momentum) and 0 <= self.momentum < 1):
            raise InputError("momentum", self.momentum, "must be a number >= 0 and < 1")
        if self.nesterov and self.momentum == 0:
            raise InputError("nesterov", self.nesterov, "needs --momentum > 0 (the look-ahead is beta v)")
        if not (_is_number(self.weight_decay) and math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise InputError("weight_decay", self.weight_decay, "must be a finite number >= 0")
        if self.weight_decay > MAX_MAGNITUDE:
            raise InputError("weight_decay", self.weight_decay, f"must be <= {MAX_MAGNITUDE:g}")
        _count("warmup_rounds", self.warmup_rounds, 0)
        _choice("momentum_average", self.momentum_average, MOMENTUM_AVERAGES)
        if self.gamma_schedule not in registry:
            registry.get(self.gamma_schedule)  # raises, listing what is registered
        make_gamma_schedule(self)

    def _check_paths(self) -> None:
        """The fields that name files or folders are paths a system call can take (no loop, no over-long name)."""
        from .registry import DATASETS

        name, _, arg = self.dataset.partition(":")
        data = (arg or None) if name in DATASETS else self.dataset
        for fld, path in (("out", self.out), ("dataset", data), ("fmnist_dir", self.fmnist_dir)):
            if path:
                limits.usable_path(path, fld)

    def _fixed_needs(self) -> list[Need]:
        """Memory every process needs whatever N and the data: the evaluation plan, and what the data set says it
        needs from the configuration alone (its `fixed_needs`: for synthetic data the row permutation, the
        generator's blocks and the model-sized vectors)."""
        from .registry import DATASETS

        points = self.eval_points or DEFAULT_EVAL_POINTS
        needs = [Need("eval_points", self.eval_points, 32.0 * points, f"the evaluation plan ({points} points x 32 bytes)")]
        name = self.dataset.partition(":")[0]
        if name in DATASETS:
            needs += DATASETS.answer(name, "fixed_needs", lambda cfg: [])(self)
        return needs

    def fault_point(self) -> tuple[int, int, str] | None:
        """(worker, round, 'raise' or 'kill') of the injected failure, if any."""
        if self.fault is None:
            return None
        parts = self.fault.split(":")
        how = "raise"
        if len(parts) == 3 and parts[2].strip() == "kill":
            how, parts = "kill", parts[:2]
        if len(parts) != 2 or not all(_INT_TEXT.fullmatch(p.strip()) and p.strip()[0] != "-" for p in parts):
            raise InputError("fault", self.fault, "must be 'WORKER:ROUND' or 'WORKER:ROUND:kill' with two "
                                                  "non-negative integers")
        worker, after = (int(p) if len(p.strip()) <= _MAX_DIGITS else INT64_MAX + 1 for p in parts)
        if worker > INT64_MAX or after > INT64_MAX:
            raise InputError("fault", self.fault, "WORKER and ROUND must be < 2^63")
        return worker, after, how

    def checkpoint_plan(self) -> tuple[str, float] | None:
        """('rounds', n) or ('seconds', s) from --checkpoint-every; None for 'off'."""
        text = self.checkpoint_every.strip().lower() if isinstance(self.checkpoint_every, str) else ""
        if text == "off":
            return None
        why = "must be a number of rounds ('500'), of seconds, minutes or hours ('60s', '10m', '1h'), or 'off'"
        if _INT_TEXT.fullmatch(text) and not text.startswith("-"):
            if len(text) > _MAX_DIGITS or not 1 <= int(text) <= INT64_MAX:
                raise InputError("checkpoint_every", self.checkpoint_every, why)
            return "rounds", float(int(text))
        if text[-1:] in _TIME_UNITS and _FLOAT_TEXT.fullmatch(text[:-1]) and not text.startswith("-"):
            seconds = float(text[:-1]) * _TIME_UNITS[text[-1]]
            if math.isfinite(seconds) and 0 < seconds <= MAX_STALL_TIMEOUT:
                return "seconds", seconds
        raise InputError("checkpoint_every", self.checkpoint_every, why)

    def check_workers(self, n_workers: int) -> None:
        """The checks that need the number of workers N (known once the backend exists): the injected fault's
        worker must be one of the N."""
        point = self.fault_point()
        if point is not None and point[0] >= n_workers:
            raise InputError("fault", self.fault, f"worker {point[0]} does not exist: the run has workers "
                                                  f"0..{n_workers - 1}")

    def distinguishing(self) -> list[tuple[str, Any]]:
        """(name, value) of what tells this run from another of its algorithm: the settings the algorithm reads
        (expanding its batch schedule, when it uses one: the schedule's name and settings), gamma and theta only
        when given, the update rule's settings that are not the defaults, then the selected components' own
        parameters."""
        from .registry import ALGORITHMS, SCHEDULES

        out: list[tuple[str, Any]] = []
        owned = list(ALGORITHMS.owns(self.algorithm)) if self.algorithm in ALGORITHMS else []
        for name in owned:
            if name == "schedule":
                out.append(("schedule", self.schedule))
                out += [(k, getattr(self, k)) for k in (SCHEDULES.owns(self.schedule) if self.schedule in SCHEDULES
                                                        else ())]
            elif getattr(self, name) is not None:
                out.append((name, getattr(self, name)))
        out += [(name, getattr(self, name)) for name, default in UPDATE_RULE_DEFAULTS.items()
                if getattr(self, name) != default]
        return out + list(self.extras)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of every setting (None kept), the components' own parameters among them."""
        out = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items() if k != "extras"}
        out.update(self.extras)
        return out

    def to_json(self) -> str:
        """JSON of every field, keys sorted."""
        return json.dumps(self.to_dict(), sort_keys=True)

    def to_toml(self) -> str:
        """TOML text that `from_toml` reads back to an equal Config (None fields omitted)."""
        import tomli_w

        return tomli_w.dumps({k: v for k, v in self.to_dict().items() if v is not None})


#: The update rule's settings and their defaults (plain SGD at a constant step): a run names those it changes.
UPDATE_RULE_DEFAULTS: dict[str, Any] = {"momentum": 0.0, "nesterov": False, "weight_decay": 0.0,
                                        "gamma_schedule": "constant", "warmup_rounds": 0, "momentum_average": "keep"}
#: The core settings (command-line options and TOML keys of every run) and the kind of value each takes
#: (`params.field_kind`); no component parameter may take one of these names, nor the command line's own options.
FIELD_KINDS = {f.name: field_kind(f.type) for f in fields(Config) if not f.metadata.get("internal")}
CORE_NAMES = frozenset(FIELD_KINDS)
RESERVED_NAMES = CORE_NAMES | {"config", "list", "resume", "help", "version", "extras"}


def component_params(algorithm: Any, schedule: Any, model: Any, dataset: Any,
                     gamma_schedule: Any = "constant") -> dict[str, tuple[str, Param]]:
    """name -> (owner, Param) of the parameters the selected components declare (plug-ins, and the built-in step-size
    schedules), owner as 'schedule polynomial'. Two selected components declaring one name differently is an
    InputError naming both."""
    from .registry import ALGORITHMS, DATASETS, GAMMA_SCHEDULES, PROBLEMS, SCHEDULES

    out: dict[str, tuple[str, Param]] = {}
    for registry, name in ((ALGORITHMS, algorithm), (SCHEDULES, schedule), (PROBLEMS, model),
                           (DATASETS, str(dataset).split(":", 1)[0] if isinstance(dataset, str) else dataset),
                           (GAMMA_SCHEDULES, gamma_schedule)):
        if not isinstance(name, str) or name not in registry:
            continue
        owner = f"{registry.kind} {name}"
        for param in registry.params(name):
            if param.name in out and out[param.name][1] != param:
                raise InputError(param.name, None, f"declared differently by {out[param.name][0]} and {owner}: "
                                                   "they cannot be used together")
            out[param.name] = (owner, param)
    return out


def _unknown(key: str, source: str) -> str:
    """Why a key is refused: the component it belongs to (not selected in this run), or unknown."""
    from .registry import owners_of

    owners = owners_of(key)
    where = " in " + source if source else ""
    if owners:
        picks = " or ".join(f"--{kind} {name}" for kind, name in owners)
        return (f"a parameter of {' and '.join(f'{k} {n!r}' for k, n in owners)}, which this run does not use "
                f"(select it with {picks}){where}")
    return f"unknown setting{where}"


def cli_value(key: str, text: Any) -> Any:
    """The value of `key` from its command-line text, parsed strictly: an integer is ASCII digits with an optional
    sign (no other scripts' or full-width digits, no underscores or spaces), a number is an ASCII decimal or
    nan/inf (judged by `validate`), a bool one of true/false, yes/no, on/off, 1/0. A bad text raises the InputError
    a TOML file's bad value raises (same field, same reason); a non-string (an on/off flag's bool) passes through."""
    if not isinstance(text, str):
        return text
    if key not in FIELD_KINDS:
        raise InputError(key, None, "unknown setting")
    return typed(key, text, FIELD_KINDS[key], from_text=True)


def _choice(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise InputError(name, value, "must be one of " + ", ".join(allowed))


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _at_least(name: str, value: int, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise InputError(name, value, f"must be an integer >= {low}")


def _count(name: str, value: int, low: int, high: int = INT64_MAX,
           why: str = "2^63 - 1: counts are 64-bit integers") -> None:
    """An integer in [low, high]; above high the reason says why that is the limit."""
    _at_least(name, value, low)
    if value > high:
        raise InputError(name, value, f"must be <= {why}")
