"""Run every experiment family of this folder (experiments/*.toml but example.toml) that has no complete trace yet:
`python -m crpsgd_mpi.sweep` with these families as the default.

usage: python experiments/driver.py [--results DIR] [--jobs J] [--mpi] [FAMILY.toml ...]
"""

from __future__ import annotations

import sys
from pathlib import Path

from crpsgd_mpi.sweep import main

HERE = Path(__file__).resolve().parent

if __name__ == "__main__":
    sys.exit(main(default_families=sorted(f for f in HERE.glob("*.toml") if f.stem != "example")))
