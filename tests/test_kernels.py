"""The dense kernels' determinism: each kernel's bits do not depend on the alignment of X, on how many workers are
stacked, on threads, on numpy's SIMD dispatch or on the instruction set numba compiles for; the stacked evaluation
of (unequal, zero-padded) shards gives each shard's own bits; the rule picks the compiled kernel for large work."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from crpsgd_mpi.memory import aligned_empty
from crpsgd_mpi.problems import (
    block_rows,
    dense_minibatch_grads,
    gathered_minibatch_grad,
    gram_apply,
    loss_grad_sums,
    stacked_gram_apply,
    stacked_loss_grad_sums,
    uses_compiled,
)

#: (k, B, d): batches for the compiled kernel (d a multiple of 8 and not), for the numpy kernel in several blocks,
#: and in one block (stacked).
COMPILED = [(1, 1400, 785), (2, 3500, 300), (3, 20600, 51)]
BLOCKED = [(2, 3 * block_rows(300) + 5, 300), (3, 2600, 51), (2, 200, 700)]
STACKED = [(4, 1, 785), (3, 17, 51), (5, 300, 14), (3, 40, 1)]


def shifted(a: np.ndarray, nbytes: int) -> np.ndarray:
    """A copy of `a` whose data starts `nbytes` (a multiple of 8) past a 64-byte boundary."""
    raw = aligned_empty(a.size + 8)
    out = raw[nbytes // 8:nbytes // 8 + a.size].reshape(a.shape)
    out[:] = a
    return out


def grads(Xb: np.ndarray, yb: np.ndarray, models: np.ndarray) -> np.ndarray:
    out = np.empty(models.shape)
    dense_minibatch_grads(Xb, yb, models, out)
    return out


def case(k: int, B: int, d: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((k, B, d)), rng.choice([-1.0, 1.0], (k, B)), 0.05 * rng.standard_normal((k, d))


def reference(X: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    return X.T @ (-y / (1 + np.exp(y * (X @ x)))) / X.shape[0]


@pytest.mark.parametrize("k, B, d", COMPILED + BLOCKED + STACKED)
def test_kernel_does_not_depend_on_alignment_or_stacking(k: int, B: int, d: int) -> None:
    assert uses_compiled(B, d) == ((k, B, d) in COMPILED)
    Xb, yb, models = case(k, B, d)
    ref = grads(Xb, yb, models)
    np.testing.assert_allclose(ref[0], reference(Xb[0], yb[0], models[0]), rtol=1e-10, atol=1e-14)
    for off in (8, 24, 40):
        assert np.array_equal(grads(shifted(Xb, off), yb, models), ref), off
    for w in range(k):  # each worker alone, as an MPI rank computes it, at several alignments
        for off in (0, 8, 56):
            one = grads(shifted(Xb[w:w + 1], off), yb[w:w + 1].copy(), models[w:w + 1].copy())
            assert np.array_equal(one[0], ref[w]), (w, off)


@pytest.mark.parametrize("k, B, d", COMPILED)
def test_gathered_batch_gives_the_kernel_bits(k: int, B: int, d: int) -> None:
    rng = np.random.default_rng(1)
    shard, y = rng.standard_normal((B // 2 + 3, d)), rng.choice([-1.0, 1.0], B // 2 + 3)
    rows, x = rng.integers(0, shard.shape[0], B), 0.05 * rng.standard_normal(d)
    out = np.empty(d)
    for off in (0, 8, 40):
        gathered_minibatch_grad(shifted(shard, off), y, rows, x, out)
        assert np.array_equal(out, grads(shard[rows][None], y[rows][None], x[None])[0]), off


@pytest.mark.parametrize("n, d", [(600, 785), (9000, 51), (190, 700), (1400, 785), (21000, 51)])
def test_evaluation_does_not_depend_on_alignment(n: int, d: int) -> None:
    rng = np.random.default_rng(2)
    X, y, x = rng.standard_normal((n, d)), rng.choice([-1.0, 1.0], n), 0.05 * rng.standard_normal(d)
    loss, grad = loss_grad_sums(X, y, x)
    gram = gram_apply(X, x)
    yz = y * (X @ x)
    assert loss == pytest.approx(np.sum(np.logaddexp(0.0, -yz)), rel=1e-12)
    np.testing.assert_allclose(grad, X.T @ (-y / (1.0 + np.exp(yz))), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(gram, X.T @ (X @ x), rtol=1e-9, atol=1e-12)
    for off in range(8, 64, 16):
        Xs = shifted(X, off)
        l2, g2 = loss_grad_sums(Xs, y, x)
        assert l2 == loss and np.array_equal(g2, grad) and np.array_equal(gram_apply(Xs, x), gram), off


def test_stacked_evaluation_of_padded_shards_gives_each_shards_bits() -> None:
    """Shards of unequal sizes in zero-padded slots (as Workers stores them) evaluated at once give the bits of
    each shard evaluated alone."""
    rng = np.random.default_rng(3)
    for sizes, d in [([7, 8, 8, 7, 8], 13), ([143, 142, 143], 52), ([1, 2, 2], 5), ([20, 19], 2)]:
        slot = max(sizes)
        X3, y2 = np.zeros((len(sizes), slot, d)), np.ones((len(sizes), slot))
        shards = []
        for i, n in enumerate(sizes):
            Xi, yi = rng.standard_normal((n, d)), rng.choice([-1.0, 1.0], n)
            X3[i, :n], y2[i, :n] = Xi, yi
            shards.append((Xi, yi))
        x = rng.standard_normal(d)
        loss, grad = stacked_loss_grad_sums(X3, y2, x, np.asarray(sizes))
        gram = stacked_gram_apply(X3, x)
        for i, (Xi, yi) in enumerate(shards):
            li, gi = loss_grad_sums(Xi, yi, x)
            assert li == loss[i] and np.array_equal(gi, grad[i]), (sizes, i)
            assert np.array_equal(gram_apply(Xi, x), gram[i]), (sizes, i)


SCRIPT = """
import hashlib, numpy as np
from crpsgd_mpi.problems import dense_minibatch_grads, gathered_minibatch_grad, gram_apply, loss_grad_sums
rng = np.random.default_rng(0)
h = hashlib.blake2b(digest_size=16)
for B, d in [(700, 785), (40000, 51), (5000, 301), (3, 51), (300, 14)]:
    X, y, x = rng.standard_normal((B, d)), rng.choice([-1.0, 1.0], B), 0.05 * rng.standard_normal(d)
    out = np.empty((1, d))
    dense_minibatch_grads(X[None], y[None], x[None], out)
    h.update(out.tobytes())
    if B * d >= 1 << 20:
        gathered_minibatch_grad(X, y, rng.integers(0, B, B), x, out[0])
        h.update(out.tobytes())
    loss, grad = loss_grad_sums(X, y, x)
    h.update(np.float64(loss).tobytes() + grad.tobytes() + gram_apply(X, x).tobytes())
print(h.hexdigest())
"""


def _digest(env: dict[str, str]) -> str:
    res = subprocess.run([sys.executable, "-c", SCRIPT], env={**os.environ, **env}, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


def test_kernels_do_not_depend_on_threads_simd_dispatch_or_the_compiled_instruction_set(tmp_path) -> None:
    """The same bits with 1 or 3 BLAS threads, with numpy's dispatch held to its baseline (no AVX2 loops), and with
    numba compiling for a generic x86-64 (no AVX, no FMA: a narrower vector and no fused multiply-add)."""
    runs = {"threads=1": {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"},
            "threads=3": {"OMP_NUM_THREADS": "3", "OPENBLAS_NUM_THREADS": "3"}}
    features = getattr(np, "_core", np)._multiarray_umath.__cpu_features__
    if features.get("AVX2"):
        runs["numpy baseline"] = {"NPY_DISABLE_CPU_FEATURES": "X86_V3" if "X86_V3" in features else "AVX2"}
    if os.uname().machine == "x86_64":
        runs["numba generic"] = {"NUMBA_CPU_NAME": "generic", "NUMBA_CACHE_DIR": str(tmp_path / "generic")}
    digests = {name: _digest(env) for name, env in runs.items()}
    assert len(set(digests.values())) == 1, digests
