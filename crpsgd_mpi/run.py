"""Command line: `mpiexec -n N python -m crpsgd_mpi.run [options]` or `--backend local --workers N`. It parses, calls the
API (`api.execute`) and maps what happens to an exit status."""

from __future__ import annotations

if __name__ == "__main__":  # before the imports below (numpy, h5py: ~0.2 s): a Ctrl-C now ends us quietly, status 130
    import _signal  # the built-in module: `signal` itself takes milliseconds to import
    import os as _os

    for _sig in (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP):
        _signal.signal(_sig, lambda signum, frame: _os._exit(130))

from . import threads  # noqa: F401, E402, I001  (must precede numpy)

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, NoReturn

from . import __version__, signals
from .api import config_from, execute, execute_resume, plugin_list, refuse
from .comm import rank_from_env
from .config import (BACKENDS, CORE_NAMES, DEVICES, FIELD_KINDS, REDUCTIONS, REGULARIZERS, STORAGES, Config,
                     cli_value)
from .errors import InputError, Interrupted
from .outcome import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, say
from .optim import MOMENTUM_AVERAGES
from .registry import ALGORITHMS, DATASETS, GAMMA_SCHEDULES, PROBLEMS, SCHEDULES, load_plugins

_LISTED = (("--algorithm", ALGORITHMS), ("--schedule", SCHEDULES), ("--model", PROBLEMS), ("--dataset", DATASETS),
           ("--gamma-schedule", GAMMA_SCHEDULES))


@dataclass
class Resume:
    """`--resume PATH` with the options given beside it."""

    path: str
    options: dict[str, Any]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        _say_root(f"crpsgd_mpi: error: {message}")
        raise SystemExit(EXIT_USAGE)

    def _print_message(self, message: str, file: Any = None) -> None:
        """argparse's own output (--version): a standard output that cannot take it is said, not ignored."""
        if message and file is sys.stdout:
            _print_out(message.rstrip("\n"), "--version")
        else:
            super()._print_message(message, file)


#: Choices shown in --help for the core settings that have a fixed set (the registries add theirs).
_CHOICES = {"backend": BACKENDS, "reduction": REDUCTIONS, "storage": STORAGES, "device": DEVICES,
            "regularizer": REGULARIZERS, "momentum_average": MOMENTUM_AVERAGES}
#: Where each core setting belongs in --help: the built-in component that reads it, else the run's core.
_GROUPS = (("problems (logreg, networks)", ("model", "regularizer", "lam", "intercept", "storage", "device", "eval_samples",
                                            "test_samples")),
           ("data", ("dataset", "fmnist_dir", "samples", "features", "condition", "label_noise", "data_seed")),
           ("batch schedules (cr-psgd, catalyst's inner loop)", ("schedule", "B1", "rho", "step_factor", "step_every",
                                                                  "norm_theta")),
           ("algorithms", ("algorithm", "T", "gamma", "theta", "batch_size", "period", "local_batch")),
           ("update rule and step sizes (every algorithm)", ("momentum", "nesterov", "weight_decay", "gamma_schedule",
                                                             "warmup_rounds", "momentum_average")),
           ("backend and run", ("backend", "workers", "reduction", "seed", "eval_points", "stall_timeout",
                                "checkpoint_every", "fault", "plugin")),
           ("output", ("out", "overwrite", "quiet")))


def build_parser(selected: dict[str, str] | None = None) -> argparse.ArgumentParser:
    """One option per core setting (same names, '-' for '_'), grouped by the component that reads it, plus
    --config, --list and --resume, plus every registered plug-in component's own parameters, a group each (only
    the selected components' groups when `selected` names them, as for `--help --algorithm X`)."""
    p = _Parser(prog="python -m crpsgd_mpi.run",
                description="Parallel SGD with dynamic batch sizes (CR-PSGD, Catalyst) and baselines, "
                            "counting SFO, rounds and bytes exactly; writes an HDF5 trace. Exit status: 0 complete, "
                            "1 failed, 2 bad input, 3 diverged, 130 interrupted.")
    p.add_argument("--config", metavar="FILE.toml", help="TOML file with the same keys; options given here win")
    p.add_argument("--list", action="store_true", help="list the registered algorithms, schedules, models, data sets "
                   "and step-size schedules")
    p.add_argument("--resume", metavar="TRACE.h5", help="go on with the run recorded in this trace from its last "
                   "checkpoint, appending to it (options that change the run's numbers must be left out)")
    p.add_argument("--version", action="version", version=f"crpsgd_mpi {__version__}")
    by_name = {f.name: f for f in fields(Config) if not f.metadata.get("internal")}
    for title, names in _GROUPS:
        group = p.add_argument_group(title)
        for name in names:
            _core_option(group, by_name.pop(name))
    for f in by_name.values():  # a setting no group lists yet
        _core_option(p, f)
    seen: set[str] = set()
    for registry in (ALGORITHMS, SCHEDULES, PROBLEMS, DATASETS, GAMMA_SCHEDULES):
        for name in registry.names():
            declared = [q for q in registry.params(name) if q.name not in seen]
            if not declared or (selected and selected.get(registry.kind) not in (None, name)):
                continue
            group = p.add_argument_group(f"{registry.kind} {name} (its own parameters; "
                                         f"--{registry.field.replace('_', '-')} {name})")
            for q in declared:
                seen.add(q.name)
                group.add_argument(q.flag, dest=q.name, default=None, metavar=q.kind.upper(),
                                   help=f"{q.help}: {q.describe()}")
    return p


def _core_option(p: Any, f: Any) -> None:
    flag = "--" + f.name.replace("_", "-")
    kind = FIELD_KINDS[f.name].removesuffix("?")
    shown = f.default if not isinstance(f.default, tuple) else " ".join(f.default) or "none"
    helptext = f.metadata.get("help", "") + ("" if f.default is None else f" (default: {shown})")
    if kind == "bool":
        p.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=helptext)
    elif kind == "strs":
        p.add_argument(flag, dest=f.name, action="append", default=None, metavar="MODULE_OR_FILE", help=helptext)
    elif kind == "period":
        p.add_argument(flag, dest=f.name, default=None, metavar="H|stich|prsgd", help=helptext)
    elif kind == "int":  # parsed strictly by `cli_value`, as a TOML value would be
        p.add_argument(flag, dest=f.name, default=None, metavar="INT", help=helptext)
    elif kind == "float":
        p.add_argument(flag, dest=f.name, default=None, metavar="X", help=helptext)
    elif f.name in _CHOICES:
        p.add_argument(flag, dest=f.name, default=None, metavar="{" + ",".join(_CHOICES[f.name]) + "}",
                       help=helptext)
    elif f.name == "dataset":
        p.add_argument(flag, dest=f.name, default=None, metavar="NAME|NAME:ARG|FILE", help=helptext)
    else:
        p.add_argument(flag, dest=f.name, default=None, help=helptext)


def _registered_help(p: argparse.ArgumentParser) -> None:
    """Name in --help what is registered (after the plug-ins given on the command line are imported)."""
    for action in p._actions:
        for flag, registry in _LISTED:
            if flag in action.option_strings:
                action.help = (action.help or "").split(" (registered")[0] + f" (registered: {registry.describe()})"


def parse_config(argv: Sequence[str] | None) -> Config | None:
    """Config from defaults < TOML file < command line; None when only --help or --list was asked for."""
    cfg = parse(argv)[0]
    return cfg if isinstance(cfg, Config) else None


class _Quiet(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise ValueError(message)


def _early(args: list[str]) -> argparse.Namespace:
    """The options that decide which options exist: --plugin, --config and the component choices (a malformed
    command line is left to the full parser, which says what is wrong in one line)."""
    p = _Quiet(add_help=False)
    p.add_argument("--config")
    p.add_argument("--plugin", action="append", default=None)
    for flag, registry in _LISTED:
        p.add_argument(flag, dest=registry.kind, default=None)
    try:
        return p.parse_known_args(args)[0]
    except ValueError:
        return argparse.Namespace(config=None, plugin=None, **{r.kind: None for _, r in _LISTED})


def parse(argv: Sequence[str] | None) -> tuple[Config | Resume | None, str | None]:
    """(Config, the --config file) from defaults < TOML file < command line; (None, None) for --help or --list; a
    Resume for --resume. The plug-ins (command line and --config file) are imported first: their components'
    parameters are options like any other."""
    args = list(sys.argv[1:] if argv is None else argv)
    early = _early(args)
    from_file = Config.read_toml(early.config) if early.config is not None else {}
    load_plugins([*plugin_list(from_file.get("plugin")), *(early.plugin or ())])
    if "-h" in args or "--help" in args:
        selected = {r.kind: getattr(early, r.kind) for _, r in _LISTED if getattr(early, r.kind) is not None}
        parser = build_parser(selected)
        _registered_help(parser)
        _print_out(parser.format_help().rstrip("\n"), "--help")
        return None, None
    parser = build_parser()
    ns = vars(parser.parse_args(args))
    path, listing, resume = ns.pop("config"), ns.pop("list"), ns.pop("resume")
    given = {k: v for k, v in ns.items() if v is not None}
    options = {k: cli_value(k, v) if k in CORE_NAMES else v for k, v in given.items()}
    text = frozenset(k for k in given if k not in CORE_NAMES)
    if resume is not None and not listing:
        merged = {**from_file, **options}
        plugins = [*plugin_list(from_file.get("plugin")), *plugin_list(options.get("plugin"))]
        if plugins:  # the file's and the command line's, both (as for a new run)
            merged["plugin"] = list(dict.fromkeys(plugins))
        return Resume(resume, merged), path
    if listing:
        lines = []
        for flag, registry in _LISTED:
            rows = registry.table()
            if rows:
                lines.append(f"{registry.kind}s ({flag}):")
                width = max(len(name) for name, _ in rows)
                lines += [f"  {name:<{width}}  {doc}{_own(registry, name)}" for name, doc in rows]
        lines.append("data sets also: a LIBSVM/svmlight or HDF5 (/X, /y) file path")
        _print_out("\n".join(lines), "--list")
        return None, None
    return config_from(options, path, text=text), path


def _own(registry: Any, name: str) -> str:
    declared = registry.params(name)
    return f" [{', '.join(f'{q.flag} {q.kind}' for q in declared)}]" if declared else ""


def _print_out(text: str, asked: str) -> None:
    """Print what `asked` (--list, --help) asked for; a full or closed standard output is bad input named in one
    line (its later writes go nowhere, so the interpreter's last flush is quiet)."""
    try:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except (OSError, ValueError, AttributeError) as exc:  # AttributeError: no standard output at all (None)
        why = "it is closed" if isinstance(exc, AttributeError) else getattr(exc, "strerror", None) or exc
        raise InputError("stdout", _stdout_name(), f"cannot take what {asked} prints: {why}") from None


def _stdout_name() -> str:
    """What standard output is (a file's path, 'pipe:[...]'), for the one line; its output silenced from now on."""
    try:
        name = os.readlink("/proc/self/fd/1")
    except OSError:
        name = "standard output"
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass
    return name


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 1 failed, 2 bad input, 3 diverged, 130 interrupted)."""
    signals.install()
    try:
        cfg, config_file = parse(argv)
        if cfg is None:
            return EXIT_OK
        hint = ""  # a resumed trace that had diverged says what to do itself
        if isinstance(cfg, Resume):
            outcome = execute_resume(cfg.path, cfg.options, print_summary=True, say_errors=True)
        else:
            outcome = execute(cfg, print_summary=True, config_file=config_file, say_errors=True)
            hint = " (lower --gamma)"
    except InputError as exc:
        if not getattr(exc, "reported", False):
            refuse(exc)
        return EXIT_USAGE
    except Interrupted:
        return EXIT_INTERRUPTED
    if outcome.status == "diverged":
        _say_root(f"crpsgd_mpi: diverged: {outcome.message}{hint}")
    return outcome.exit_code


def _say_root(text: str) -> None:
    if rank_from_env() == 0:
        say(text)


def main_exit() -> NoReturn:
    """Process entry (console script, `python -m`): exit with main()'s status; a signal that arrives on the way out
    changes nothing and prints nothing."""
    try:
        code = main()
    except (Interrupted, KeyboardInterrupt):
        code = EXIT_INTERRUPTED
    except SystemExit as exc:  # argparse's own exits (--version, a usage error)
        code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else EXIT_USAGE
    signals.ignore()
    try:  # what is left in the buffer: a full standard output is one line, not a traceback
        if sys.stdout is not None:
            sys.stdout.flush()
    except (OSError, ValueError) as exc:
        _say_root(f"crpsgd_mpi: error: stdout={_stdout_name()!r}: cannot be written: "
                  f"{getattr(exc, 'strerror', None) or exc}")
        code = code or EXIT_USAGE
    sys.exit(code)


if __name__ == "__main__":
    main_exit()
