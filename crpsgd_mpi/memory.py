"""Arrays on 64-byte boundaries: what the blocked BLAS kernel reads in place (see problems/logreg.py)."""

from __future__ import annotations

import numpy as np

#: Bytes: a cache line, and the widest vector (AVX-512) a BLAS kernel may load.
ALIGN = 64


def aligned_empty(shape: int | tuple[int, ...]) -> np.ndarray:
    """An uninitialised float64 C-contiguous array whose first element sits on a 64-byte boundary."""
    dims = (shape,) if isinstance(shape, int) else tuple(shape)
    n = int(np.prod(dims, dtype=np.int64))
    raw = np.empty(n + ALIGN // 8)
    off = (-raw.ctypes.data % ALIGN) // 8
    return raw[off:off + n].reshape(dims)


def is_aligned(a: np.ndarray) -> bool:
    """C-contiguous and starting on a 64-byte boundary."""
    return a.flags.c_contiguous and a.ctypes.data % ALIGN == 0
