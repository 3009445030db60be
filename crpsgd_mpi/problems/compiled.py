"""The one-pass kernel of large dense batches, compiled by numba: each row's margin in eight fixed lanes, then its
term added to the gradient sum in row order while the row is in L1, in IEEE operations whose order this code fixes."""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Literal, TypedDict

import numpy as np

from .kernels import GRAM, LOSS


def _cache_dir() -> str:
    """Where numba keeps compiled code unless NUMBA_CACHE_DIR says: the user's cache folder (unwritable: numba
    compiles in memory, once per process)."""
    return str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "crpsgd_mpi" / "numba")


os.environ.setdefault("NUMBA_CACHE_DIR", _cache_dir())
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import numba
    from numba.core.errors import NumbaWarning

warnings.filterwarnings("ignore", category=NumbaWarning)  # an unwritable cache costs a compile, never a line

LANES = 8


class _JitOptions(TypedDict):
    """The options of numba.njit that this module compiles with."""

    cache: bool
    nogil: bool
    boundscheck: bool
    fastmath: bool
    error_model: Literal["python", "numpy"]


# fastmath off: no reassociation and no fused multiply-add, so the bits do not depend on the vector width or on
# the instruction set numba compiles for (a test compiles for a generic x86-64 and compares).
_JIT: _JitOptions = {"cache": True, "nogil": True, "boundscheck": False, "fastmath": False, "error_model": "numpy"}


@numba.njit(**_JIT)
def one_pass(X: np.ndarray, rows: np.ndarray, gather: bool, y: np.ndarray, v: np.ndarray, mode: int,
             scale: float, out: np.ndarray, margins: np.ndarray) -> None:  # pragma: no cover (compiled)
    """out = sum over t, in order, of c_t X[r_t] with r_t = rows[t] if gather else t; c_t from z_t = X[r_t].v by
    `mode`; in LOSS mode margins[t] = y z_t. The margin: lane k sums the products of columns j = k mod 8 in order,
    the lanes are added as ((0+1)+(2+3))+((4+5)+(6+7)), then the last d mod 8 products in order."""
    n = rows.shape[0] if gather else X.shape[0]
    d = X.shape[1]
    dd = d - d % LANES
    acc = np.empty(LANES)
    for j in range(d):
        out[j] = 0.0
    for t in range(n):
        i = rows[t] if gather else t
        for k in range(LANES):
            acc[k] = 0.0
        for j0 in range(0, dd, LANES):
            for k in range(LANES):
                acc[k] += X[i, j0 + k] * v[j0 + k]
        z = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))
        for j in range(dd, d):
            z += X[i, j] * v[j]
        if mode == GRAM:
            c = z
        else:
            yz = y[i] * z
            if mode == LOSS:
                margins[t] = yz
            c = (-y[i] * (1.0 / (1.0 + math.exp(yz)))) * scale
        for j in range(d):
            out[j] += c * X[i, j]
