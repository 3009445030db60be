"""Theory-derived quantities: the smoothness L of a problem (its own estimate) and the optimum f* of convex ones."""

from __future__ import annotations

import numpy as np

from .problems.base import Smoothness
from .workers import Workers


def smoothness(workers: Workers) -> Smoothness | None:
    """The problem's estimate of L, computed collectively over every worker's shard; None if it has none."""
    return workers.problem.smoothness(workers.backend.sum)


def optimum(workers: Workers, x0: np.ndarray) -> float:
    """f* by L-BFGS on the full objective to a tight tolerance; deterministic, so every rank runs the
    same iterations in lockstep (each evaluation is one ordered reduction)."""
    from scipy.optimize import minimize  # 25 MB of imports, needed by l2 runs only

    res = minimize(workers.objective, x0, jac=True, method="L-BFGS-B",
                   options={"maxiter": 20_000, "maxcor": 30, "gtol": 1e-11, "ftol": 1e-15})
    return float(res.fun)
