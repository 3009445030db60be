"""Theory-derived quantities: the smoothness L and the optimum f* of convex problems."""

from __future__ import annotations

import numpy as np

from .workers import Workers


def smoothness(workers: Workers, seed: int) -> float:
    """L <= lambda_max(A^T A)/(4M) + (bound on the regulariser's curvature)."""
    return workers.gram_top_eigenvalue(seed) / 4.0 + workers.reg.curvature_bound()


def optimum(workers: Workers, x0: np.ndarray) -> float:
    """f* by L-BFGS on the full objective to a tight tolerance; deterministic, so every rank runs the
    same iterations in lockstep (each evaluation is one ordered reduction)."""
    from scipy.optimize import minimize  # 25 MB of imports, needed by l2 runs only

    res = minimize(workers.objective, x0, jac=True, method="L-BFGS-B",
                   options={"maxiter": 20_000, "maxcor": 30, "gtol": 1e-11, "ftol": 1e-15})
    return float(res.fun)
