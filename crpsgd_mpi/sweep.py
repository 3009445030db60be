"""`python -m crpsgd_mpi.sweep FAMILY.toml... [--results DIR] [--jobs J] [--mpi]`: run every member of the families
that has no complete trace yet (resumable: a second call runs nothing that is complete), then stop; plotting is
`python -m crpsgd_mpi.compare` or `make figures`. The family format: `experiment.load_family`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .errors import InputError
from .experiment import default_jobs, run_families
from .outcome import EXIT_USAGE, say


def main(argv: Sequence[str] | None = None, default_families: Sequence[Path] = ()) -> int:
    """Exit status 0 when every member ended complete (or diverged: a result too), 1 when one failed, 2 for a bad
    family file or option (one line naming it)."""
    p = argparse.ArgumentParser(prog="python -m crpsgd_mpi.sweep", description=__doc__.splitlines()[0])
    p.add_argument("families", nargs="*" if default_families else "+", type=Path, metavar="FAMILY.toml",
                   help="family files: title, seeds, [base], [runs.LABEL], [sweep] (see the docs: Experiments and sweeps)")
    p.add_argument("--results", type=Path, default=Path("results"), help="folder of the traces (default results/)")
    p.add_argument("--mpi", action="store_true",
                   help="run each member under mpiexec with its own number of workers as ranks, not in process")
    p.add_argument("--jobs", type=int, default=None, metavar="J",
                   help="runs at a time, each in its own process with one BLAS thread (default: the number of cores; "
                        "with --mpi: 1, as each run has its own ranks)")
    ns = p.parse_args(argv)
    if ns.jobs is not None and ns.jobs < 1:
        say(f"crpsgd_mpi: error: jobs={ns.jobs}: must be >= 1")
        return EXIT_USAGE
    jobs = ns.jobs if ns.jobs is not None else (1 if ns.mpi else default_jobs())
    try:
        failed = run_families(list(ns.families or default_families), ns.results, ns.mpi, jobs=jobs)
    except InputError as exc:
        say(f"crpsgd_mpi: error: {exc}")
        return EXIT_USAGE
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
