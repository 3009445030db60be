"""Theory-derived quantities: smoothness L, default step sizes, the optimum f* of convex problems."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .workers import Workers


@dataclass(frozen=True)
class Constants:
    """L and the step sizes actually used, recorded in the trace's config."""

    L: float
    gamma: float
    theta: float | None


def smoothness(workers: Workers, seed: int) -> float:
    """L <= lambda_max(A^T A)/(4M) + (bound on the regulariser's curvature)."""
    return workers.gram_top_eigenvalue(seed) / 4.0 + workers.reg.curvature_bound()


def default_constants(algorithm: str, L: float, gamma: float | None, theta: float | None) -> Constants:
    """gamma = 1/L on f; for catalyst theta = 2L and gamma = 1/(L + theta) on h_theta (NOTES.md)."""
    if algorithm == "catalyst":
        th = 2.0 * L if theta is None else theta
        return Constants(L, 1.0 / (L + th) if gamma is None else gamma, th)
    return Constants(L, 1.0 / L if gamma is None else gamma, None)


def optimum(workers: Workers, x0: np.ndarray) -> float:
    """f* by L-BFGS on the full objective to a tight tolerance; deterministic, so every rank runs the
    same iterations in lockstep (each evaluation is one ordered reduction)."""
    from scipy.optimize import minimize  # 25 MB of imports, needed by l2 runs only

    res = minimize(workers.objective, x0, jac=True, method="L-BFGS-B",
                   options={"maxiter": 20_000, "maxcor": 30, "gtol": 1e-11, "ftol": 1e-15})
    return float(res.fun)
