"""Loss and gradients: finite differences for each regulariser, dense == sparse, numerical stability."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from crpsgd_mpi.problems import dense_minibatch_grads, loss_grad_sums, make_regularizer, sparse_minibatch_grad


def objective(X, y, x, reg):  # type: ignore[no-untyped-def]
    loss, grad = loss_grad_sums(X, y, x)
    g = grad / len(y)
    reg.add_grad(x, g)
    return loss / len(y) + reg.value(x), g


@pytest.mark.parametrize("name", ["l2", "nonconvex", "none"])
def test_gradient_matches_finite_differences(name: str) -> None:
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((40, 6)), rng.choice([-1.0, 1.0], 40)
    x = rng.standard_normal(6)
    reg = make_regularizer(name, 0.3)
    _, g = objective(X, y, x, reg)
    h = 1e-6
    fd = np.array([(objective(X, y, x + h * e, reg)[0] - objective(X, y, x - h * e, reg)[0]) / (2 * h)
                   for e in np.eye(6)])
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-8)


def test_nonconvex_curvature_bound() -> None:
    reg = make_regularizer("nonconvex", 0.5)
    t = np.linspace(-5, 5, 10001)
    second = 2 * reg.lam * (1 - 3 * t**2) / (1 + t**2) ** 3
    assert np.max(np.abs(second)) <= reg.curvature_bound() + 1e-12


def test_dense_equals_sparse() -> None:
    rng = np.random.default_rng(1)
    X = rng.standard_normal((30, 9)) * (rng.random((30, 9)) < 0.3)
    y, x = rng.choice([-1.0, 1.0], 30), rng.standard_normal(9)
    ld, gd = loss_grad_sums(X, y, x)
    ls, gs = loss_grad_sums(sp.csr_matrix(X), y, x)
    assert ld == pytest.approx(ls, rel=1e-14)
    np.testing.assert_allclose(gd, gs, rtol=1e-13, atol=1e-15)
    out_d, out_s = np.empty((1, 9)), np.empty(9)
    dense_minibatch_grads(X[None], y[None], x[None], out_d)
    sparse_minibatch_grad(sp.csr_matrix(X), y, x, out_s)
    np.testing.assert_allclose(out_d[0], out_s, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(out_d[0], gd / 30, rtol=1e-13, atol=1e-15)


def test_stacked_kernel_is_bit_identical_per_worker() -> None:
    rng = np.random.default_rng(2)
    for k, B, d in [(4, 1, 785), (3, 17, 51), (2, 300, 14)]:
        Xb, yb = rng.standard_normal((k, B, d)), rng.choice([-1.0, 1.0], (k, B))
        models, out = rng.standard_normal((k, d)), np.empty((k, d))
        dense_minibatch_grads(Xb, yb, models, out)
        for w in range(k):
            one = np.empty((1, d))
            dense_minibatch_grads(Xb[w:w + 1].copy(), yb[w:w + 1].copy(), models[w:w + 1].copy(), one)
            assert np.array_equal(one[0], out[w])


def test_loss_is_stable_for_huge_margins() -> None:
    X = np.array([[1e4], [-1e4]])
    y = np.array([1.0, 1.0])
    loss, grad = loss_grad_sums(X, y, np.array([1.0]))
    assert np.isfinite(loss) and loss == pytest.approx(1e4)
    assert np.all(np.isfinite(grad))
