"""Theory-derived quantities: the smoothness L of a problem (its own estimate) and the optimum f* of convex ones."""

from __future__ import annotations

import math

import numpy as np

from .arith import dot
from .problems.base import Smoothness
from .workers import Workers


def smoothness(workers: Workers) -> Smoothness | None:
    """The problem's estimate of L, computed collectively over every worker's shard; None if it has none."""
    return workers.problem.smoothness(workers.backend.sum)


#: L-BFGS memory, and the stopping rules of f*: the gradient's largest entry, the relative decrease of a step (as
#: scipy's L-BFGS-B gtol and ftol), and an iteration cap.
MEMORY, GTOL, FTOL, MAX_ITERATIONS = 30, 1e-11, 1e-15, 20_000


def optimum(workers: Workers, x0: np.ndarray) -> float:
    """f* by L-BFGS on the full objective with a backtracking Armijo search, in fixed-order arithmetic (`dot`, no
    BLAS or LAPACK), so that f* has the same bits on every machine; every rank runs the same iterations in lockstep
    (each evaluation is one ordered reduction)."""
    x = np.array(x0, dtype=np.float64)
    f, g = _evaluate(workers, x)
    pairs: list[tuple[np.ndarray, np.ndarray, float]] = []
    for _ in range(MAX_ITERATIONS):
        if float(np.max(np.abs(g))) <= GTOL:
            break
        p = _direction(g, pairs)
        slope = dot(g, p)
        if not slope < 0.0:  # not a descent direction (round-off): start the memory afresh
            pairs.clear()
            p, slope = -g, -dot(g, g)
        step = 1.0 if pairs else min(1.0, 1.0 / math.sqrt(dot(g, g)))
        while True:
            x_new = x + step * p
            f_new, g_new = _evaluate(workers, x_new)
            if f_new <= f + 1e-4 * step * slope or step < 1e-20:
                break
            step *= 0.5
        if not f_new <= f:
            break
        s, y = x_new - x, g_new - g
        sy = dot(s, y)
        if sy > 0.0:
            pairs.append((s, y, 1.0 / sy))
            if len(pairs) > MEMORY:
                pairs.pop(0)
        done = (f - f_new) <= FTOL * max(abs(f), abs(f_new), 1.0)
        x, f, g = x_new, f_new, g_new
        if done:
            break
    return f


def _evaluate(workers: Workers, x: np.ndarray) -> tuple[float, np.ndarray]:
    f, g = workers.objective(x)
    assert g is not None, "f* needs the problem's gradient"
    return f, np.array(g, dtype=np.float64)


def _direction(g: np.ndarray, pairs: list[tuple[np.ndarray, np.ndarray, float]]) -> np.ndarray:
    """-H g by the L-BFGS two-loop recursion (initial scaling s.y / y.y of the newest pair)."""
    q = -g
    alphas = []
    for s, y, rho in reversed(pairs):
        a = rho * dot(s, q)
        alphas.append(a)
        q -= a * y
    if pairs:
        s, y, _ = pairs[-1]
        q *= dot(s, y) / dot(y, y)
    for (s, y, rho), a in zip(pairs, reversed(alphas)):
        b = rho * dot(y, q)
        q += (a - b) * s
    return q
