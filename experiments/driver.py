"""Run every experiment family (experiments/*.toml) that has no complete trace yet, then stop.

usage: python experiments/driver.py [--results DIR] [--jobs J] [--mpi] [FAMILY.toml ...]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from crpsgd_mpi.errors import InputError
from crpsgd_mpi.experiment import default_jobs, run_families
from crpsgd_mpi.outcome import say

HERE = Path(__file__).resolve().parent


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("families", nargs="*", type=Path, help="family files (default: every experiments/*.toml but example)")
    p.add_argument("--results", type=Path, default=Path("results"), help="folder of the traces (default results/)")
    p.add_argument("--mpi", action="store_true",
                   help="run each member under mpiexec with its own number of workers as ranks, not in process")
    p.add_argument("--jobs", type=int, default=None, metavar="J",
                   help="runs at a time, each in its own process with one BLAS thread (default: the number of cores; "
                        "with --mpi: 1, as each run has its own ranks)")
    ns = p.parse_args()
    if ns.jobs is not None and ns.jobs < 1:
        p.error("--jobs must be >= 1")
    jobs = ns.jobs if ns.jobs is not None else (1 if ns.mpi else default_jobs())
    families = ns.families or sorted(f for f in HERE.glob("*.toml") if f.stem != "example")
    try:
        failed = run_families(families, ns.results, ns.mpi, jobs=jobs)
    except InputError as exc:
        say(f"driver: error: {exc}")
        return 2
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
