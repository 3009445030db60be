"""Command line: `mpiexec -n N python -m crpsgd_mpi.run [options]` or `--backend local --workers N`."""

from __future__ import annotations

from . import threads  # noqa: F401, I001  (must precede numpy)

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from dataclasses import fields  # noqa: E402
from datetime import datetime  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, NoReturn

import numpy as np  # noqa: E402

from . import __version__, signals  # noqa: E402
from .algorithms import CRPSGD, PSGD, Algorithm, Catalyst, LocalSGD, catalyst_counts, resolve_period  # noqa: E402
from .comm import Backend, make_backend, rank_from_env  # noqa: E402
from .config import Config  # noqa: E402
from .data import Dataset, load  # noqa: E402
from .errors import Diverged, InputError, Interrupted, PeerFailure  # noqa: E402
from .fstar_cache import cached_optimum  # noqa: E402
from .ledger import EvalPlan, Ledger  # noqa: E402
from .monitor import Monitor  # noqa: E402
from .outcome import EXIT_DIVERGED, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, say, say_to_launcher  # noqa: E402
from .problems import make_regularizer  # noqa: E402
from .theory import Constants, default_constants, smoothness  # noqa: E402
from .trace import TraceWriter, check_output_path  # noqa: E402
from .workers import Workers  # noqa: E402



class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        _say(f"crpsgd_mpi: error: {message}")
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    """One option per Config field (same names, '-' for '_'), plus --config."""
    p = _Parser(prog="python -m crpsgd_mpi.run",
                description="Parallel SGD with dynamic batch sizes (CR-PSGD, Catalyst) and baselines, "
                            "counting SFO, rounds and bytes exactly; writes an HDF5 trace.")
    p.add_argument("--config", metavar="FILE.toml", help="TOML file with the same keys; options given here win")
    p.add_argument("--version", action="version", version=f"crpsgd_mpi {__version__}")
    for f in fields(Config):
        flag = "--" + f.name.replace("_", "-")
        ann = str(f.type)
        helptext = f.metadata.get("help", "") + ("" if f.default is None else f" (default: {f.default})")
        if ann == "bool":
            p.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=helptext)
        elif ann.startswith("int |") and f.name == "period":
            p.add_argument(flag, dest=f.name, default=None, metavar="H|stich|prsgd", help=helptext)
        elif ann.startswith("int"):
            p.add_argument(flag, dest=f.name, type=int, default=None, metavar="INT", help=helptext)
        elif ann.startswith("float"):
            p.add_argument(flag, dest=f.name, type=float, default=None, metavar="X", help=helptext)
        else:
            p.add_argument(flag, dest=f.name, default=None, help=helptext)
    return p


def parse_config(argv: Sequence[str] | None) -> Config:
    """Config from defaults < TOML file < command line."""
    ns = vars(build_parser().parse_args(argv))
    path = ns.pop("config")
    overrides = {k: v for k, v in ns.items() if v is not None}
    if path:
        return Config.from_toml(path, overrides)
    return Config.from_mapping(overrides)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 1 failed, 2 bad input, 3 diverged, 130 interrupted)."""
    signals.install()
    try:
        cfg = parse_config(argv)
        backend = make_backend(cfg.backend, cfg.workers, cfg.reduction, cfg.stall_timeout)
    except InputError as exc:
        _say(f"crpsgd_mpi: error: {exc}", root_only=True)
        return EXIT_USAGE
    except Interrupted:
        return EXIT_INTERRUPTED
    return Session(cfg, backend).execute()


class Session:
    """One run: set-up (agreed on by every process), the algorithm, the trace, the summary."""

    def __init__(self, cfg: Config, backend: Backend) -> None:
        self.cfg, self.backend = cfg, backend
        self.N = backend.n_workers
        self.writer: TraceWriter | None = None
        self.monitor: Monitor | None = None

    def execute(self) -> int:
        """Set up, run, write; returns the exit status. Any failure on any process ends every process."""
        self.backend.set_fatal(self._fatal)
        try:
            prepared = self._setup()
            if prepared is None:
                self.backend.close()
                return EXIT_USAGE
            return self._run(*prepared)
        except Diverged as exc:  # every process sees the same iterate, so all of them diverge together
            self.backend.close()
            self._finish("diverged", None, str(exc))
            _say(f"crpsgd_mpi: diverged: {exc} (lower --gamma)", root_only=True)
            return EXIT_DIVERGED
        except BaseException as exc:  # noqa: BLE001 - every failure must end the whole job
            return self._fail(exc)

    # -- set-up ------------------------------------------------------------------------------------
    def _setup(self) -> tuple[Dataset, Path | None, int] | None:
        """Load this process's shards and check everything that can be checked before running; every
        process learns of any process's error (no process runs on alone)."""
        error, data, out, period = None, None, None, 0
        try:
            cfg = self.cfg
            period = self._check_budget()
            if self.backend.is_root:
                out = check_output_path(cfg.out or self._default_out(), cfg.overwrite)
            data = load(cfg, self.N, self.backend.local_workers)
        except InputError as exc:
            error = str(exc)
        errors = self.backend.agree(error)
        if errors:
            rank, message = errors[0]
            where = f" (rank {rank})" if self.backend.name == "mpi" and self.N > 1 else ""
            _say(f"crpsgd_mpi: error{where}: {message}", root_only=True)
            return None
        assert data is not None
        return data, out, period

    def _check_budget(self) -> int:
        cfg, N = self.cfg, self.N
        if cfg.algorithm == "catalyst":
            K, inner = catalyst_counts(N, cfg.T)
            if inner < cfg.B1:
                raise InputError("T", cfg.T, f"catalyst inner budget floor(sqrt(T/N)) = {inner} < B1 = {cfg.B1} "
                                 f"with N = {N}: no inner round fits")
        if cfg.algorithm == "local-sgd":
            period = resolve_period(cfg.period, N, cfg.T)
            if period * cfg.local_batch > cfg.T:
                raise InputError("period", cfg.period, f"period x local_batch = {period * cfg.local_batch} "
                                 f"exceeds T = {cfg.T}: no round fits")
            return period
        return 0

    def _default_out(self) -> Path:
        cfg = self.cfg
        name = Path(cfg.dataset).stem if cfg.dataset not in ("synthetic", "fashion-mnist") else cfg.dataset
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        base = Path("runs") / f"{cfg.algorithm}-{name}-N{self.N}-T{cfg.T}-seed{cfg.seed}-{stamp}"
        path, i = base.with_suffix(".h5"), 1
        while path.exists():
            path, i = Path(f"{base}-{i}.h5"), i + 1
        return path

    # -- the run -----------------------------------------------------------------------------------
    def _run(self, data: Dataset, out: Path | None, period: int) -> int:
        cfg = self.cfg
        reg = make_regularizer(cfg.regularizer, cfg.lam)
        ledger = Ledger()
        workers = Workers(self.backend, data, reg, cfg.seed, ledger)
        x0 = np.zeros(data.n_features)
        L = smoothness(workers, cfg.seed)
        consts = default_constants(cfg.algorithm, L, cfg.gamma, cfg.theta)
        f_star = cached_optimum(workers, x0, cfg, data.fingerprint) if reg.name == "l2" else None
        algorithm = self._algorithm(consts, period)
        resolved = self._resolved_config(consts, data, period)
        if out is not None:
            attrs = {
                "algorithm": cfg.algorithm, "N": self.N, "T": cfg.T, "seed": cfg.seed,
                "config": json.dumps(resolved, sort_keys=True), "versions": json.dumps(self._versions()),
            }
            if f_star is not None:
                attrs["f_star"] = f_star
            self.writer = TraceWriter(out, attrs, overwrite=cfg.overwrite)
        plan = EvalPlan(cfg.T, cfg.eval_points)
        self.monitor = Monitor(workers, ledger, plan, self.writer, f_star,
                               eval_stage_ends=cfg.algorithm == "catalyst", fault=cfg.fault_point())
        workers.on_round = self.monitor
        ledger.restart_clock()
        self.monitor.evaluate(x0)
        x = algorithm.run(workers, x0)
        loss, gn = self.monitor.evaluate(x)
        self.backend.close()
        self._finish("complete", x, None)
        if self.backend.is_root and not cfg.quiet:
            self._summary(data, consts, f_star, loss, gn)
        return EXIT_OK

    def _algorithm(self, c: Constants, period: int) -> Algorithm:
        cfg = self.cfg
        if cfg.algorithm == "cr-psgd":
            return CRPSGD(cfg.T, cfg.B1, cfg.rho, c.gamma)
        if cfg.algorithm == "catalyst":
            assert c.theta is not None
            return Catalyst(self.N, cfg.T, cfg.B1, cfg.rho, c.gamma, c.theta)
        if cfg.algorithm == "psgd":
            return PSGD(cfg.T, cfg.batch_size, c.gamma)
        return LocalSGD(cfg.T, period, cfg.local_batch, c.gamma)

    def _resolved_config(self, c: Constants, data: Dataset, period: int) -> dict[str, Any]:
        resolved = self.cfg.to_dict()
        resolved.update(gamma=c.gamma, theta=c.theta, workers=self.N, backend=self.backend.name, L=c.L,
                        n_samples=data.n_samples, n_features=data.n_features, dataset_name=data.name)
        if self.cfg.algorithm == "local-sgd":
            resolved["period_resolved"] = period
        return resolved

    def _versions(self) -> dict[str, str]:
        import h5py
        import scipy

        v = {"crpsgd_mpi": __version__, "python": platform.python_version(), "numpy": np.__version__,
             "scipy": scipy.__version__, "h5py": h5py.__version__, "hdf5": h5py.version.hdf5_version}
        v.update(self.backend.describe())
        return v

    def _finish(self, status: str, x: np.ndarray | None, message: str | None) -> None:
        """Write the final status once; from here on the outcome is decided and signals are ignored."""
        signals.hold()
        try:
            if self.monitor is not None:
                self.monitor.flush()
            if self.writer is None or self.monitor is None:
                return
            led = self.monitor.ledger
            extra: dict[str, Any] = {"rounds_total": led.rounds, "sfo_per_worker": led.sfo,
                                     "unspent_sfo": self.cfg.T - led.sfo, "bytes_per_rank": led.bytes,
                                     "wall_time": led.elapsed(), "eval_time": self.monitor.eval_time}
            if message:
                extra["message"] = message
            self.writer.finish(status, x, extra)
        finally:
            signals.ignore()

    def _fatal(self, status: str, message: str, code: int, by_launcher: bool = False) -> None:
        """Rank 0, called once by whoever ends the job: mark the trace, say one line (straight to the user when the
        launcher, ending the job itself, no longer relays our output)."""
        if self.monitor is not None and not message.startswith("rank "):
            message += f" (after round {self.monitor.ledger.rounds})"
        try:
            self._finish(status, None, message)
        except Exception as write_exc:  # noqa: BLE001
            _say(f"crpsgd_mpi: could not mark the trace {status}: {write_exc}")
        where = f" ({self.writer.path} marked {status})" if self.writer is not None else ""
        (say_to_launcher if by_launcher else say)(f"crpsgd_mpi: {status}: {message.splitlines()[0]}{where}")

    def _fail(self, exc: BaseException) -> int:
        if isinstance(exc, PeerFailure):
            status, code = exc.status, exc.exit_code
        elif isinstance(exc, (Interrupted, KeyboardInterrupt)):
            status, code = "interrupted", EXIT_INTERRUPTED
        elif isinstance(exc, SystemExit):
            status, code = "failed", exc.code if isinstance(exc.code, int) and exc.code else EXIT_FAILED
        else:
            status, code = "failed", EXIT_FAILED
        message = f"{type(exc).__name__}: {exc}" if not isinstance(exc, PeerFailure) else str(exc)
        # the trace keeps the traceback of the process that failed (a peer sends its own along)
        detail = "" if status == "interrupted" or isinstance(exc, PeerFailure) else "\n" + traceback.format_exc()
        if not self.backend.claim_ending():  # the supervisor is ending the job already
            signals.ignore()
            time.sleep(30.0)
            return code
        if not self.backend.is_root:
            signals.ignore()  # the root's abort ends this process; no second report
            if status != "interrupted":
                _say(f"crpsgd_mpi: rank {self.backend.local_workers[0]}: {status}: {message}")
            self.backend.report_failure(message + detail, status, code)
            return code
        self._fatal(status, message + detail, code)
        if self.backend.name == "mpi" and self.N > 1:
            self.backend.abort(code)
        return code

    def _summary(self, data: Dataset, c: Constants, f_star: float | None, loss: float, gn: float) -> None:
        assert self.monitor is not None
        cfg, led = self.cfg, self.monitor.ledger
        sub = f", suboptimality {loss - f_star:.3e}" if f_star is not None else ""
        lines = [
            f"{cfg.algorithm} on {data.name} ({data.n_samples} x {data.n_features}, {cfg.regularizer} "
            f"lam={cfg.lam:g}), N={self.N} ({self.backend.name}), T={cfg.T}",
            f"  rounds {led.rounds}, SFO per worker {led.sfo} ({cfg.T - led.sfo} unspent), "
            f"{led.bytes / 1e6:.3f} MB reduced per rank",
            f"  final loss {loss:.10g}{sub}, ||grad f||^2 {gn:.3e}",
            f"  L={c.L:.6g}, gamma={c.gamma:.6g}" + (f", theta={c.theta:.6g}" if c.theta else ""),
            f"  trace {self.writer.path if self.writer else '-'} (complete); {led.elapsed():.2f} s of rounds, "
            f"{self.monitor.eval_time:.2f} s of evaluations",
        ]
        print("\n".join(lines), flush=True)


def _say(text: str, root_only: bool = False) -> None:
    if root_only and rank_from_env() != 0:
        return
    print(text, file=sys.stderr, flush=True)


def main_exit() -> NoReturn:
    """Console-script entry: exit with main()'s status."""
    sys.exit(main())


if __name__ == "__main__":
    main_exit()
