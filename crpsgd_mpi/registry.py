"""Things chosen by name (algorithms, batch schedules, problems, data sets, step-size schedules): registries that the
built-ins and third-party plug-ins fill the same way (a decorator or `register` call, `--plugin MODULE_OR_FILE`,
entry points), and build the same way: every factory takes one `Setting` and returns its component."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast, overload

from . import limits
from .errors import InputError
from .params import Param, params_of

if TYPE_CHECKING:
    from .algorithms.base import Algorithm
    from .config import Config
    from .data.base import Source
    from .optim import GammaSchedule
    from .problems.base import Problem
    from .schedules import BatchSchedule

T = TypeVar("T")
P = TypeVar("P")


@dataclass(frozen=True)
class Setting:
    """What every registered factory is built from: the configuration, the number of workers N, the problem's
    smoothness estimate L (None before the data is loaded, or for problems without one, e.g. neural networks: then
    step sizes must be given), this process's workers (None: all N), and the text after 'name:' in a data set's name."""

    cfg: Config
    n_workers: int = 1
    L: float | None = None
    workers: range | None = None
    argument: str | None = None

    @property
    def local_workers(self) -> range:
        """The workers this process holds."""
        return range(self.n_workers) if self.workers is None else self.workers

    def step(self, name: str, given: float | None, default: Callable[[float], float]) -> float:
        """`given` if set, else `default(L)`; an InputError naming `name` if neither can be had."""
        if given is not None:
            return given
        if self.L is None or not self.L > 0:
            raise InputError(name, None, "must be given: the problem has no smoothness estimate to derive it from")
        return default(self.L)


class Registry(Generic[T, P]):
    """Names to components of one kind (`T`: a factory, or a class with a `create` factory) that build products of
    one type (`P`). Built-ins live in `builtin_module`, imported on first use; installed packages add theirs through
    the entry-point group `crpsgd_mpi.<kind>s`; anyone can `register`. Questions about a component before it is
    built (the memory it plans, the files it reads) are its attributes, read with `answer`."""

    def __init__(self, kind: str, field: str, builtin_module: str, product: str | None = None) -> None:
        self.kind, self.field, self.builtin_module = kind, field, builtin_module
        self.product = product  # "module:Class" every product must be an instance of (None: not checked)
        self.group = f"crpsgd_mpi.{kind}s"
        self._items: dict[str, T] = {}
        self._loaded = False

    @overload
    def register(self, name: str, obj: None = None, *, replace: bool = False,
                 params: tuple[Param, ...] | None = None, owns: tuple[str, ...] | None = None,
                 answers: Mapping[str, object] | None = None) -> Callable[[T], T]: ...

    @overload
    def register(self, name: str, obj: T, *, replace: bool = False, params: tuple[Param, ...] | None = None,
                 owns: tuple[str, ...] | None = None, answers: Mapping[str, object] | None = None) -> T: ...

    def register(self, name: str, obj: T | None = None, *, replace: bool = False,
                 params: tuple[Param, ...] | None = None, owns: tuple[str, ...] | None = None,
                 answers: Mapping[str, object] | None = None) -> Callable[[T], T] | T:
        """`@registry.register("name")` on a class or function, or `registry.register("name", obj)`; `params`
        declares the component's own parameters (else its `params` attribute, if any); `owns` names the core
        settings a built-in reads (for --help and run labels); `answers` sets the attributes that answer questions
        asked before the component is built (see `answer`)."""

        def add(item: T) -> T:
            if params is not None:
                item.params = tuple(params)  # type: ignore[attr-defined]  # any class or function takes attributes
            if owns is not None:
                item.owns = tuple(owns)  # type: ignore[attr-defined]  # any class or function takes attributes
            for question, value in (answers or {}).items():
                setattr(item, question, value)
            if not name or name != name.strip() or any(c.isspace() for c in name):
                raise ValueError(f"{self.kind} name {name!r}: must be a non-empty word")
            if name in self._items and self._items[name] is not item and not replace:
                raise ValueError(f"{self.kind} {name!r} is already registered (pass replace=True to override it)")
            _check_params(self.kind, name, item)
            self._items[name] = item
            return item

        return add if obj is None else add(obj)

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        importlib.import_module(self.builtin_module)
        for ep in entry_points(group=self.group):
            if ep.name not in self._items:
                try:
                    self._items[ep.name] = ep.load()
                except (Exception, SystemExit) as exc:  # noqa: BLE001 - a broken package must not break the others
                    raise InputError(self.field, ep.name, f"entry point {ep.value!r} of group {self.group} "
                                     f"failed to load: {type(exc).__name__}: {exc}") from None

    def get(self, name: str) -> T:
        """The object registered as `name`; an unknown name is an InputError listing what is registered."""
        self._load()
        try:
            return self._items[name]
        except KeyError:
            raise InputError(self.field, name, f"unknown {self.kind}; registered: {', '.join(self.names())}") from None

    def build(self, name: str, setting: Setting, value: object = None) -> P:
        """The product of `name`'s factory (`create` on a class, else the factory itself) called with `setting`; a
        product of the wrong type is one InputError naming the field and `value` (default: the name). The factory's
        own errors pass through: the caller knows what failed (a run's algorithm, a data set being loaded)."""
        entry = self.get(name)
        factory = cast(Callable[[Setting], P], getattr(entry, "create", entry) if isinstance(entry, type) else entry)
        product = factory(setting)
        if self.product is not None:
            module, _, cls_name = self.product.partition(":")
            if not isinstance(product, getattr(importlib.import_module(module), cls_name)):
                raise InputError(self.field, name if value is None else value,
                                 f"its factory returned {type(product).__name__}, not a {cls_name}")
        return product

    def answer(self, name: str, question: str, default: Any) -> Any:
        """`name`'s attribute `question` (a class's or function's answer to it), else `default`."""
        return getattr(self.get(name), question, default)

    def params(self, name: str) -> tuple[Param, ...]:
        """The parameters `name` declares (a plug-in's own; built-ins use core settings, see `owns`)."""
        return params_of(self.get(name))

    def owns(self, name: str) -> tuple[str, ...]:
        """The core settings a built-in component reads (its `owns`), for --help and messages."""
        return tuple(getattr(self.get(name), "owns", ()))

    def names(self) -> list[str]:
        """Registered names, sorted."""
        self._load()
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._items

    def table(self) -> list[tuple[str, str]]:
        """(name, first line of its docstring) for every registered name."""
        self._load()
        return [(name, ((getattr(self._items[name], "__doc__", None) or "").strip().splitlines() or [""])[0])
                for name in self.names()]

    def describe(self) -> str:
        """'name, name, ...' for --help and error messages."""
        return ", ".join(self.names())


def _check_params(kind: str, name: str, item: object) -> None:
    """A component's declared parameters are well formed, and none takes a core setting's name (`--T`, `--rho`):
    refused when the component registers, not when a run meets it."""
    from .config import RESERVED_NAMES

    try:
        declared = params_of(item)
    except ValueError as exc:
        raise ValueError(f"{kind} {name!r}: {exc}") from None
    for param in declared:
        if param.name in RESERVED_NAMES:
            raise ValueError(f"{kind} {name!r}: parameter {param.name!r} clashes with the core option "
                             f"{param.flag}; choose another name")


def owners_of(param: str) -> list[tuple[str, str]]:
    """(kind, name) of every registered component that declares `param`."""
    return [(reg.kind, name) for reg in REGISTRIES for name in reg.names()
            if any(p.name == param for p in reg.params(name))]


#: A factory: the one shape every registry builds with.
Factory = Callable[[Setting], P]

#: Algorithms are classes (their `create` is the factory; `check`, `resumable` and `largest_batch` answer questions
#: before a run); an algorithm need not subclass Algorithm, so its product is not type-checked.
ALGORITHMS: Registry[type[Algorithm], Algorithm] = Registry("algorithm", "algorithm", "crpsgd_mpi.algorithms")
SCHEDULES: Registry[Factory[BatchSchedule], BatchSchedule] = Registry(
    "schedule", "schedule", "crpsgd_mpi.schedules", "crpsgd_mpi.schedules:BatchSchedule")
PROBLEMS: Registry[Factory[Problem], Problem] = Registry("problem", "model", "crpsgd_mpi.problems")
DATASETS: Registry[Factory[Source], Source] = Registry(
    "dataset", "dataset", "crpsgd_mpi.data", "crpsgd_mpi.data.base:Source")
GAMMA_SCHEDULES: Registry[Factory[GammaSchedule], GammaSchedule] = Registry(
    "gamma-schedule", "gamma_schedule", "crpsgd_mpi.optim", "crpsgd_mpi.optim:GammaSchedule")
REGISTRIES: tuple[Registry[Any, Any], ...] = (ALGORITHMS, SCHEDULES, PROBLEMS, DATASETS, GAMMA_SCHEDULES)


def load_plugins(specs: Iterable[str]) -> None:
    """Import each plug-in: a module name (`mypkg.algos`) or a Python file (`examples/plugin.py`). Importing it
    registers what it defines. A failure, a `sys.exit` among them, is one InputError naming the plug-in; so is a spec
    that is not a non-empty string (a TOML `plugin = 5`)."""
    if isinstance(specs, str) or not isinstance(specs, Iterable) or isinstance(specs, Mapping):
        raise InputError("plugin", specs, "must be a string or a list of strings")
    for spec in list(specs):
        if not isinstance(spec, str) or not spec:
            raise InputError("plugin", spec, "must be a non-empty string: a module name or a Python file")
        path = Path(spec)
        try:
            if spec.endswith(".py") or path.is_file() or (path.is_symlink() and not path.is_dir()):
                limits.usable_path(spec, "plugin")
                limits.regular_file(spec, "plugin")
                name = "crpsgd_plugin_" + "".join(c if c.isalnum() else "_" for c in os.path.realpath(path))
                if name in sys.modules:
                    continue
                module_spec = importlib.util.spec_from_file_location(name, path)
                if module_spec is None or module_spec.loader is None:
                    raise InputError("plugin", spec, "not a Python file")
                module = importlib.util.module_from_spec(module_spec)
                sys.modules[name] = module
                try:
                    module_spec.loader.exec_module(module)
                except BaseException:
                    del sys.modules[name]
                    raise
            else:
                importlib.import_module(spec)
        except InputError:
            raise
        except SystemExit as exc:  # the plug-in would end the run silently, with its status
            raise InputError("plugin", spec, f"called sys.exit({exc.code!r}) while importing{_where(exc, path)}: "
                             "a plug-in must not end the process") from None
        except Exception as exc:  # noqa: BLE001 - a plug-in's own error, reported as one line
            if isinstance(exc, ModuleNotFoundError) and exc.name and (spec == exc.name or spec.startswith(exc.name + ".")):
                raise InputError("plugin", spec, f"cannot import: {exc}") from None
            raise InputError("plugin", spec, f"failed while importing{_where(exc, path)}: {type(exc).__name__}: "
                             f"{exc}") from None


def module_files() -> list[Path]:
    """The source files of every module loaded in this process: the plug-ins (by file or by module name), what they
    imported, the package itself. A run reads them all; its --out must never be one of them."""
    return [Path(f) for m in list(sys.modules.values()) if isinstance(f := getattr(m, "__file__", None), str)]


def _where(exc: BaseException, path: Path) -> str:
    tb = exc.__traceback__
    line = None
    while tb is not None:
        if Path(tb.tb_frame.f_code.co_filename).name == path.name:
            line = tb.tb_lineno
        tb = tb.tb_next
    return f" (line {line})" if line else ""
