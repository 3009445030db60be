"""`python -m crpsgd_mpi.configure_mpi [--undo] [--prefix DIR]`: set up this environment's MPI for the plain
`mpiexec` (what `make install` runs; see `crpsgd_mpi.mpienv`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .mpienv import configure, detect_mpi


def main(argv: Sequence[str] | None = None) -> int:
    """Write or remove the settings; prints what changed."""
    p = argparse.ArgumentParser(prog="python -m crpsgd_mpi.configure_mpi", description=__doc__.splitlines()[0])
    p.add_argument("--prefix", type=Path, default=Path(sys.prefix), help="environment to configure (default: this one)")
    p.add_argument("--undo", action="store_true", help="remove every setting this command wrote")
    ns = p.parse_args(argv)
    kind = detect_mpi(ns.prefix)
    changes = configure(ns.prefix, undo=ns.undo)
    if not ns.undo and not changes:
        print(f"crpsgd_mpi.configure_mpi: {ns.prefix}: MPI '{kind}' needs no settings; nothing written")
        return 0
    for c in changes:
        verb = ("removed from" if ns.undo else "wrote") if c.changed else "unchanged:"
        print(f"crpsgd_mpi.configure_mpi: {verb} {c.path}")
    if not ns.undo:
        print("crpsgd_mpi.configure_mpi: activate the environment again (. bin/activate) for the root permission")
    return 0


if __name__ == "__main__":
    sys.exit(main())
