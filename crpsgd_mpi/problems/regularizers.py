"""Regularisers r(x) added to a problem's data loss: their value and gradient are exact and cost no SFO."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from ..arith import dot


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
        return 0.5 * self.lam * dot(x, x)

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
        return self.lam * float(np.add.reduce(sq / (1.0 + sq)))

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
