"""Things chosen by name (algorithms, batch schedules, problems, data sets, step-size schedules): registries that the
built-ins and third-party plug-ins fill the same way (a decorator or `register` call, `--plugin MODULE_OR_FILE`,
entry points)."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from importlib.metadata import entry_points
from pathlib import Path
from typing import Generic, TypeVar

from . import limits
from .errors import InputError
from .params import Param, params_of

T = TypeVar("T")


class Registry(Generic[T]):
    """Names to objects of one kind. Built-ins live in `builtin_module`, imported on first use; installed packages
    add theirs through the entry-point group `crpsgd_mpi.<kind>s`; anyone can `register`."""

    def __init__(self, kind: str, field: str, builtin_module: str) -> None:
        self.kind, self.field, self.builtin_module = kind, field, builtin_module
        self.group = f"crpsgd_mpi.{kind}s"
        self._items: dict[str, T] = {}
        self._loaded = False

    def register(self, name: str, obj: T | None = None, *, replace: bool = False,
                 params: tuple[Param, ...] | None = None, owns: tuple[str, ...] | None = None) -> Callable[[T], T] | T:
        """`@registry.register("name")` on a class or function, or `registry.register("name", obj)`; `params`
        declares the component's own parameters (else its `params` attribute, if any); `owns` names the core
        settings a built-in reads (for --help and run labels)."""

        def add(item: T) -> T:
            if params is not None:
                item.params = tuple(params)  # type: ignore[attr-defined]  # any class or function takes attributes
            if owns is not None:
                item.owns = tuple(owns)  # type: ignore[attr-defined]  # any class or function takes attributes
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
                except (Exception, SystemExit) as exc:  # a broken package must not break the others
                    raise InputError(self.field, ep.name, f"entry point {ep.value!r} of group {self.group} "
                                     f"failed to load: {type(exc).__name__}: {exc}") from None

    def get(self, name: str) -> T:
        """The object registered as `name`; an unknown name is an InputError listing what is registered."""
        self._load()
        try:
            return self._items[name]
        except KeyError:
            raise InputError(self.field, name, f"unknown {self.kind}; registered: {', '.join(self.names())}") from None

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


ALGORITHMS: Registry = Registry("algorithm", "algorithm", "crpsgd_mpi.algorithms")
SCHEDULES: Registry = Registry("schedule", "schedule", "crpsgd_mpi.schedules")
PROBLEMS: Registry = Registry("problem", "model", "crpsgd_mpi.problems")
DATASETS: Registry = Registry("dataset", "dataset", "crpsgd_mpi.data")
GAMMA_SCHEDULES: Registry = Registry("gamma-schedule", "gamma_schedule", "crpsgd_mpi.optim")
REGISTRIES = (ALGORITHMS, SCHEDULES, PROBLEMS, DATASETS, GAMMA_SCHEDULES)


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
        except Exception as exc:  # a plug-in's own error, reported as one line
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
