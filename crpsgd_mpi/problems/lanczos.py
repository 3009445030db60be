"""The largest eigenvalue of a symmetric positive semi-definite operator: Lanczos with full reorthogonalisation and
explicit restarts, in fixed-order arithmetic (no LAPACK, no BLAS, no ARPACK), so that every process that applies the
same operator to the same vectors computes the same bits on any CPU."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from ..arith import dot

#: Lanczos vectors per restart cycle (fewer when d is smaller: then one cycle spans the whole space).
BASIS = 40
#: Operator products before L is recorded as not converged.
MAX_PRODUCTS = 4000


class TopEigenvalue(NamedTuple):
    """The estimate, whether its residual met the tolerance, and the operator products it took."""

    value: float
    converged: bool
    products: int


def top_eigenvalue(apply: Callable[[np.ndarray], np.ndarray], v0: np.ndarray, tol: float = 1e-10,
                   basis: int | None = None, max_products: int | None = None) -> TopEigenvalue:
    """lambda_max of the operator `apply` (d x d, symmetric) from the start vector v0: cycles of at most `basis`
    Lanczos steps, each restarted from the last cycle's top Ritz vector, until the Ritz residual
    beta_m |s_m| <= tol * |theta| (ARPACK's test), the Krylov space is invariant, or it spans all d dimensions."""
    d = v0.size
    basis = BASIS if basis is None else basis
    max_products = MAX_PRODUCTS if max_products is None else max_products
    v = v0 / math.sqrt(dot(v0, v0))
    products, theta = 0, 0.0
    while True:
        m = min(basis, d)
        V = np.empty((m, d))
        alpha: list[float] = []
        beta: list[float] = []
        V[0] = v
        b = 0.0
        for j in range(m):
            w = np.array(apply(V[j]), dtype=np.float64)
            products += 1
            alpha.append(dot(w, V[j]))
            for _ in range(2):  # modified Gram-Schmidt against every Lanczos vector, twice
                for i in range(j + 1):
                    w -= dot(w, V[i]) * V[i]
            b = math.sqrt(dot(w, w))
            if j + 1 < m and b > 1e-14 * max(abs(a) for a in alpha):
                beta.append(b)
                V[j + 1] = w / b
            else:
                break
        n = len(alpha)
        theta, s = _top_ritz(alpha, beta[:n - 1])
        residual = b * abs(s[-1])
        invariant = n < m or b <= 1e-14 * max(abs(a) for a in alpha)
        if residual <= tol * abs(theta) or invariant or n == d:
            return TopEigenvalue(theta, True, products)
        if products >= max_products:
            return TopEigenvalue(theta, False, products)
        v = np.zeros(d)
        for i in range(n):
            v += s[i] * V[i]
        v /= math.sqrt(dot(v, v))


def _top_ritz(alpha: list[float], beta: list[float]) -> tuple[float, list[float]]:
    """The largest eigenvalue of the symmetric tridiagonal matrix (alpha on the diagonal, beta beside it), by
    bisection on its Sturm sequence, and a unit eigenvector by inverse iteration: Python floats, a fixed order."""
    n = len(alpha)
    if n == 1:
        return alpha[0], [1.0]
    radius = [abs(beta[i - 1]) if i else 0.0 for i in range(n)]
    for i in range(n - 1):
        radius[i] += abs(beta[i])
    lo = min(a - r for a, r in zip(alpha, radius))
    hi = max(a + r for a, r in zip(alpha, radius))
    while True:  # the number of eigenvalues above mid is 0 at hi and >= 1 at lo
        mid = 0.5 * (lo + hi)
        if mid <= lo or mid >= hi:
            break
        if _count_below(alpha, beta, mid) == n:
            hi = mid
        else:
            lo = mid
    theta = hi
    return theta, _eigenvector(alpha, beta, theta)


def _count_below(alpha: list[float], beta: list[float], x: float) -> int:
    """How many eigenvalues are < x (the negative pivots of T - x I)."""
    count, q = 0, 1.0
    for i, a in enumerate(alpha):
        q = (a - x) - (beta[i - 1] ** 2 / q if i else 0.0)
        if q == 0.0:
            q = -1e-300
        if q < 0.0:
            count += 1
    return count


def _eigenvector(alpha: list[float], beta: list[float], theta: float) -> list[float]:
    """Three steps of inverse iteration with T - theta I (tridiagonal elimination, tiny pivots replaced)."""
    n = len(alpha)
    scale = max(abs(a) for a in alpha) + max(abs(b) for b in beta)
    tiny = 1e-15 * scale if scale > 0.0 else 1e-300
    x = [1.0] * n
    for _ in range(3):
        diag, upper, rhs = [alpha[0] - theta], [], [x[0]]
        for i in range(1, n):
            p = diag[i - 1] if abs(diag[i - 1]) > tiny else tiny
            f = beta[i - 1] / p
            diag.append((alpha[i] - theta) - f * beta[i - 1])
            rhs.append(x[i] - f * rhs[i - 1])
            upper.append(beta[i - 1])
        y = [0.0] * n
        for i in range(n - 1, -1, -1):
            p = diag[i] if abs(diag[i]) > tiny else tiny
            y[i] = (rhs[i] - (upper[i] * y[i + 1] if i < n - 1 else 0.0)) / p
        norm = math.sqrt(math.fsum(c * c for c in y))
        x = [c / norm for c in y]
    return x
