"""Run families: a TOML file names a study, a base config, labelled runs and seeds; the driver runs what
has no complete trace yet (resumable) and leaves plotting to a separate stage."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from .config import Config
from .errors import InputError
from .launch import run_job
from .trace import read_trace

DONE = ("complete", "diverged")


@dataclass(frozen=True)
class Run:
    """One run of a family: its label, seed, config overrides and trace path."""

    family: str
    label: str
    seed: int
    settings: dict[str, Any]
    path: Path


@dataclass
class Family:
    """A family of runs from one TOML file."""

    name: str
    study: str
    title: str
    epsilon: float | None
    seeds: list[int]
    base: dict[str, Any]
    runs: dict[str, dict[str, Any]]
    sweep_workers: list[int] = field(default_factory=list)

    def expand(self, results: Path) -> list[Run]:
        """Every (label, seed) run, with its trace path under results/<family>/."""
        out = []
        for label, overrides in self.runs.items():
            grid = self.sweep_workers or [None]
            for n in grid:
                settings = {**self.base, **overrides}
                name = label
                if n is not None:
                    settings["workers"] = n
                    name = f"{label}-N{n}"
                for seed in self.seeds:
                    path = results / self.name / f"{name}-seed{seed}.h5"
                    out.append(Run(self.name, name, seed, {**settings, "seed": seed}, path))
        return out


def load_family(path: Path) -> Family:
    """Parse and validate a family file (each run's config is validated now, not mid-sweep)."""
    with path.open("rb") as fh:
        raw = tomllib.load(fh)
    try:
        fam = Family(name=path.stem, study=raw["study"], title=raw.get("title", path.stem),
                     epsilon=raw.get("epsilon"), seeds=list(raw.get("seeds", [0])), base=dict(raw.get("base", {})),
                     runs={k: dict(v) for k, v in raw["runs"].items()},
                     sweep_workers=list(raw.get("sweep", {}).get("workers", [])))
    except KeyError as exc:
        raise InputError(str(path), exc.args[0], "missing key in family file") from None
    for label, overrides in fam.runs.items():
        Config.from_mapping({**fam.base, **overrides}, source=f"{path}:{label}")
    return fam


def needs_run(run: Run) -> bool:
    """A trace that is missing, unreadable, or not finished (running/failed/interrupted) is (re)done."""
    if not run.path.exists():
        return True
    try:
        return read_trace(run.path).status not in DONE
    except (OSError, KeyError):
        return True


def execute(run: Run, use_mpi: bool = False, timeout: float = 1800.0) -> int:
    """Run one member: in this process (local backend), or under mpiexec with as many ranks as the
    run's `workers` (default 10)."""
    args = []
    for key, value in run.settings.items():
        if key in ("workers", "backend") and use_mpi:
            continue
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            args.append(flag if value else "--no-" + key.replace("_", "-"))
        else:
            args += [flag, str(value)]
    args += ["--out", str(run.path), "--overwrite", "--quiet"]
    if use_mpi:
        ranks = int(run.settings.get("workers", 10))
        res = run_job(ranks, [sys.executable, "-m", "crpsgd_mpi.run", *args], timeout=timeout)
        if res.returncode not in (0, 3):
            sys.stderr.write(res.stderr)
        return res.returncode
    from .run import main

    return main(["--backend", "local", *args])


def run_families(paths: list[Path], results: Path, use_mpi: bool = False, verbose: bool = True) -> int:
    """Run every family member that has no complete trace; returns the number of failed runs."""
    failures = 0
    for path in paths:
        fam = load_family(path)
        todo = [r for r in fam.expand(results) if needs_run(r)]
        if verbose:
            print(f"{fam.name}: {len(todo)} run(s) to do", flush=True)
        for run in todo:
            t0 = time.perf_counter()
            code = execute(run, use_mpi)
            if verbose:
                print(f"  {run.label} seed {run.seed}: exit {code} in {time.perf_counter() - t0:.1f} s", flush=True)
            failures += code not in (0, 3)
    return failures
