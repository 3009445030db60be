"""Logistic regression with labels +-1: stable loss and gradients, regularisers, minibatch kernels."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import scipy.sparse as sp
from scipy.special import expit

Matrix = np.ndarray | sp.csr_matrix


class Regularizer(ABC):
    """r(x), added to the data loss; its gradient is exact and costs no SFO."""

    name: str
    lam: float
    convex: bool

    @abstractmethod
    def value(self, x: np.ndarray) -> float:
        """r(x)."""

    @abstractmethod
    def add_grad(self, x: np.ndarray, out: np.ndarray) -> None:
        """out += grad r(x), row-wise if x is 2-D."""

    @abstractmethod
    def curvature_bound(self) -> float:
        """An upper bound on the spectral norm of the Hessian of r."""


class NoRegularizer(Regularizer):
    """r = 0."""

    name, lam, convex = "none", 0.0, True

    def value(self, x: np.ndarray) -> float:
        return 0.0

    def add_grad(self, x: np.ndarray, out: np.ndarray) -> None:
        return None

    def curvature_bound(self) -> float:
        return 0.0


class L2(Regularizer):
    """r = (lam/2) ||x||^2: the objective is then lam-strongly convex, hence PL with mu >= lam."""

    name, convex = "l2", True

    def __init__(self, lam: float) -> None:
        self.lam = lam

    def value(self, x: np.ndarray) -> float:
        return 0.5 * self.lam * float(x @ x)

    def add_grad(self, x: np.ndarray, out: np.ndarray) -> None:
        out += self.lam * x

    def curvature_bound(self) -> float:
        return self.lam


class NonConvex(Regularizer):
    """r = lam * sum_j x_j^2 / (1 + x_j^2): smooth, non-convex, with |r''| <= 2 lam."""

    name, convex = "nonconvex", False

    def __init__(self, lam: float) -> None:
        self.lam = lam

    def value(self, x: np.ndarray) -> float:
        sq = x * x
        return self.lam * float(np.sum(sq / (1.0 + sq)))

    def add_grad(self, x: np.ndarray, out: np.ndarray) -> None:
        denom = 1.0 + x * x
        out += (2.0 * self.lam) * x / (denom * denom)

    def curvature_bound(self) -> float:
        return 2.0 * self.lam


def make_regularizer(name: str, lam: float) -> Regularizer:
    """The regulariser called `name` ('l2', 'nonconvex', 'none')."""
    if name == "l2":
        return L2(lam)
    if name == "nonconvex":
        return NonConvex(lam)
    return NoRegularizer()


def loss_grad_sums(X: Matrix, y: np.ndarray, x: np.ndarray) -> tuple[float, np.ndarray]:
    """Sum over the rows of log(1 + exp(-y a.x)) and of its gradient (no regulariser, no 1/M).
    Dense X uses einsum, whose result does not depend on BLAS threads or on where X sits in memory."""
    dense = isinstance(X, np.ndarray)
    yz = y * (np.einsum("bj,j->b", X, x) if dense else X @ x)
    loss = float(np.sum(np.logaddexp(0.0, -yz)))
    coef = -y * expit(-yz)
    grad = np.einsum("bj,b->j", X, coef) if dense else np.asarray(X.T @ coef).ravel()
    return loss, grad


def gram_apply(X: Matrix, v: np.ndarray) -> np.ndarray:
    """X^T (X v): one step of power iteration on the shard's Gram matrix (unscaled); einsum for dense X,
    as in `loss_grad_sums`."""
    if isinstance(X, np.ndarray):
        return np.einsum("bj,b->j", X, np.einsum("bj,j->b", X, v))
    return np.asarray(X.T @ (X @ v)).ravel()


def dense_minibatch_grads(Xb: np.ndarray, yb: np.ndarray, models: np.ndarray, out: np.ndarray,
                          work: np.ndarray | None = None) -> None:
    """Mean data-gradient of each worker's batch: Xb (k,B,d), yb (k,B), models (k,d) -> out (k,d);
    `work` (k,B) is scratch space.

    einsum is used rather than BLAS because its result for one worker does not depend on how many
    workers are stacked with it: this is what makes the in-process backend bit-identical to MPI.
    """
    z = np.einsum("wbj,wj->wb", Xb, models, out=work)
    z *= yb
    np.negative(z, out=z)
    expit(z, out=z)
    z *= yb
    z *= -1.0 / yb.shape[1]
    np.einsum("wbj,wb->wj", Xb, z, out=out)


def sparse_minibatch_grad(Xb: sp.csr_matrix, yb: np.ndarray, model: np.ndarray, out: np.ndarray) -> None:
    """Mean data-gradient of one worker's sparse batch Xb (B,d) into out (d,)."""
    yz = yb * (Xb @ model)
    coef = (-1.0 / yb.size) * yb * expit(-yz)
    out[:] = Xb.T @ coef
