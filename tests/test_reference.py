"""Regression: traces of fixed runs are bit-identical to the recorded digests, on any machine. A digest covers every
counted column, every evaluation and the final x.

The digests hold by construction, not because they were recorded here: no number a trace records comes from BLAS,
LAPACK, ARPACK or numpy's SIMD transcendental loops (see crpsgd_mpi/arith.py and problems/kernels.py), and the
workers' vectors are combined by the exact sum (comm/exact.py), which depends on the addends alone. Last
re-recorded when the exact sum became the default reduction: the cases with N >= 3 changed in their last bits (a
sum of two floats is correctly rounded either way, so the N = 1 and N = 2 cases kept theirs). Before that, when the
kernels, norms, L and f* became fixed-order. The last test re-runs cases under what it can vary here: numpy's SIMD
dispatch held to its baseline, numba compiling for a generic x86-64 (no AVX, no FMA), three BLAS threads, and the
exact sum's numpy steps instead of the compiled ones.

After a change that is *meant* to alter the numbers, print the new digests with
`python tests/test_reference.py` and say in the commit why they changed."""

from __future__ import annotations

import hashlib
import os
import subprocess
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
    "cr-psgd-N4": "629428854f9aa960dab1ca7f",
    "cr-psgd-large-batch": "bd17a6d56d830261c60c1852",
    "psgd-B3": "61d3144c3d10f5790970ed70",
    "local-sgd-stich": "1640fbbfcf6b9b1a4ac582f4",
    "local-sgd-N1": "90a4325ff4ca758573537667",
    "catalyst-nonconvex": "347426385aa43c9e96b4c0d6",
    "catalyst-l2-N3": "3e05575e1e7aa07e3dbab4f2",
    "heart-sparse-cr-psgd": "128c01af54b6d4f0d3448759",
    "heart-dense-psgd-none": "d671681a1039078c315f7f6e",
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


#: Run in a fresh interpreter under another machine's conditions: the large-batch case (the compiled kernel) and
#: the sparse one; the cache of f* and of numba's code is the subprocess's own.
VARIED = {"numpy baseline SIMD": {"NPY_DISABLE_CPU_FEATURES": "X86_V3"},
          "numba generic x86-64": {"NUMBA_CPU_NAME": "generic"},
          "3 BLAS threads": {"OMP_NUM_THREADS": "3", "OPENBLAS_NUM_THREADS": "3"},
          "exact sum in numpy": {"CRPSGD_EXACT": "numpy"}}
CHILD = """
import sys
from pathlib import Path
sys.path.insert(0, {tests!r})
import test_reference as t
print(t.run_case(sys.argv[1], Path(sys.argv[2])))
"""


@pytest.mark.parametrize("condition", sorted(VARIED))
def test_digests_hold_under_other_machine_conditions(tmp_path: Path, condition: str) -> None:
    env = {**os.environ, **VARIED[condition], "CRPSGD_CACHE": str(tmp_path / "cache"),
           "NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    if "NPY_DISABLE_CPU_FEATURES" in env:
        features = np._core._multiarray_umath.__cpu_features__
        if not features.get("X86_V3"):
            pytest.skip("this CPU has no AVX2 dispatch to hold back")
    code = CHILD.format(tests=str(Path(__file__).parent))
    for name in ("cr-psgd-large-batch", "heart-sparse-cr-psgd", "catalyst-nonconvex"):
        res = subprocess.run([sys.executable, "-c", code, name, str(tmp_path)], env=env, capture_output=True,
                             text=True, timeout=300)
        assert res.returncode == 0, res.stderr
        assert res.stdout.strip().splitlines()[-1] == DIGESTS[name], (condition, name)


if __name__ == "__main__":
    import os
    import tempfile

    sys.path.insert(0, str(Path(__file__).parent))
    os.environ.setdefault("CRPSGD_CACHE", tempfile.mkdtemp())
    with tempfile.TemporaryDirectory() as d:
        for n in CASES:
            print(f'    "{n}": "{run_case(n, Path(d))}",')
