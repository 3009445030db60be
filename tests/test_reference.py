"""Regression: traces of fixed runs are bit-identical to those recorded on main at 42f87cb (before the
Problem/registry refactors). A digest covers every counted column, every evaluation and the final x.
Re-recorded since: cr-psgd-large-batch (branch scale), whose batches and shards are large enough for the blocked
BLAS kernel (problems/logreg.py) that replaced einsum there; every other case still runs einsum.
Re-recorded for all cases when L came to be computed exactly (the Gram matrix for d <= 16, Lanczos to 1e-10
otherwise) instead of by 200 seeded power iterations: the old L of the small cases had not converged (0.2543105
against 0.2543231, 5e-5 low), of the others it differed in the 8th digit; gamma = 1/L and every number after it moved.

After a change that is *meant* to alter the numbers, print the new digests with
`python tests/test_reference.py` and say in the commit why they changed."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import HEART, run_cli
from crpsgd_mpi.trace import read_trace

SMALL = ["--backend", "local", "--samples", "3000", "--features", "10", "--eval-points", "6"]
CASES: dict[str, list[str]] = {
    "cr-psgd-N4": [*SMALL, "--workers", "4", "--T", "3000", "--rho", "1.3"],
    "cr-psgd-large-batch": ["--backend", "local", "--samples", "20000", "--workers", "2", "--T", "40000",
                            "--rho", "2", "--eval-points", "4"],
    "psgd-B3": [*SMALL, "--workers", "3", "--algorithm", "psgd", "--T", "600", "--batch-size", "3"],
    "local-sgd-stich": [*SMALL, "--workers", "5", "--algorithm", "local-sgd", "--T", "800", "--local-batch", "2"],
    "local-sgd-N1": [*SMALL, "--workers", "1", "--algorithm", "local-sgd", "--T", "300", "--period", "7"],
    "catalyst-nonconvex": [*SMALL, "--workers", "4", "--algorithm", "catalyst", "--T", "900",
                           "--regularizer", "nonconvex"],
    "catalyst-l2-N3": [*SMALL, "--workers", "3", "--algorithm", "catalyst", "--T", "400", "--rho", "1.5"],
    "heart-sparse-cr-psgd": ["--backend", "local", "--dataset", str(HEART), "--storage", "sparse", "--workers", "3",
                             "--T", "500", "--rho", "1.2", "--eval-points", "5"],
    "heart-dense-psgd-none": ["--backend", "local", "--dataset", str(HEART), "--storage", "dense", "--workers", "2",
                              "--algorithm", "psgd", "--T", "200", "--regularizer", "none", "--gamma", "0.1",
                              "--eval-points", "5"],
}

DIGESTS = {
    "cr-psgd-N4": "2ab986a1e34d267f6f540730",
    "cr-psgd-large-batch": "4ce08f0e853d8661a95ac4c2",
    "psgd-B3": "382a4e953a7f492054405d09",
    "local-sgd-stich": "fa96cef68a4c4bec28270308",
    "local-sgd-N1": "ee83f3c742a3494f695535e7",
    "catalyst-nonconvex": "847eb1a62cfe67dcd60d4565",
    "catalyst-l2-N3": "aeebf9d368efdce7d0dbfe4a",
    "heart-sparse-cr-psgd": "70bbb1e5e281afbe832db1d0",
    "heart-dense-psgd-none": "5f25606372b7906682c5f70f",
}


def digest(path: Path) -> str:
    """Hash of the counted columns, the evaluations, the final x, f* and the constants used."""
    tr = read_trace(path)
    h = hashlib.blake2b(digest_size=12)
    for c in ("round", "sfo", "batch_size", "stage", "bytes"):
        h.update(np.ascontiguousarray(tr.rounds[c], dtype=np.int64).tobytes())
    for c in ("round", "sfo"):
        h.update(np.ascontiguousarray(tr.evals[c], dtype=np.int64).tobytes())
    for c in ("loss", "grad_norm_sq", "suboptimality"):
        h.update(np.ascontiguousarray(tr.evals[c], dtype=np.float64).tobytes())
    assert tr.x is not None
    h.update(np.ascontiguousarray(tr.x, dtype=np.float64).tobytes())
    for key in ("L", "gamma", "theta"):
        h.update(repr(tr.config.get(key)).encode())
    h.update(repr(float(tr.attrs.get("f_star", np.nan))).encode())
    return h.hexdigest()


def run_case(name: str, tmp: Path) -> str:
    out = tmp / f"{name}.h5"
    assert run_cli(*CASES[name], "--out", str(out), "--overwrite") == 0
    return digest(out)


@pytest.mark.parametrize("name", sorted(CASES))
def test_trace_unchanged(tmp_path: Path, name: str) -> None:
    assert run_case(name, tmp_path) == DIGESTS[name]


if __name__ == "__main__":
    import os
    import tempfile

    sys.path.insert(0, str(Path(__file__).parent))
    os.environ.setdefault("CRPSGD_CACHE", tempfile.mkdtemp())
    with tempfile.TemporaryDirectory() as d:
        for n in CASES:
            print(f'    "{n}": "{run_case(n, Path(d))}",')
