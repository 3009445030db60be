"""Per-seed curves read from traces, their median/IQR on a common grid, and epsilon crossings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..trace import Trace, read_trace


@dataclass
class Curve:
    """One trace's evaluation points: x (SFO, rounds or time) against a metric."""

    x: np.ndarray
    y: np.ndarray


def load_family_traces(folder: Path) -> dict[str, list[Trace]]:
    """Traces of one family folder grouped by label (file names '<label>-seed<k>.h5'); only finished ones."""
    groups: dict[str, list[Trace]] = {}
    for path in sorted(folder.glob("*-seed*.h5")):
        tr = read_trace(path)
        if tr.status != "complete":
            continue
        label = path.stem.rsplit("-seed", 1)[0]
        groups.setdefault(label, []).append(tr)
    return groups


def band(curves: list[Curve], grid: np.ndarray, log_y: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Median, 25th and 75th percentile over curves, each interpolated (in log y) onto `grid`; NaN
    where a curve does not cover a grid point."""
    rows = []
    for c in curves:
        y = np.log(np.maximum(c.y, 1e-300)) if log_y else c.y
        v = np.interp(grid, c.x, y, left=np.nan, right=np.nan)
        rows.append(np.exp(v) if log_y else v)
    stack = np.vstack(rows)
    with np.errstate(all="ignore"):
        return (np.nanmedian(stack, axis=0), np.nanpercentile(stack, 25, axis=0),
                np.nanpercentile(stack, 75, axis=0))


def first_crossing(x: np.ndarray, y: np.ndarray, eps: float) -> float:
    """The x at which y first falls to eps, interpolated linearly in log y between the evaluation before
    and the one at/below eps; NaN if never reached; x[0] if already there."""
    below = np.nonzero(y <= eps)[0]
    if below.size == 0:
        return float("nan")
    i = int(below[0])
    if i == 0:
        return float(x[0])
    y0, y1 = np.log(max(y[i - 1], 1e-300)), np.log(max(y[i], 1e-300))
    t = (y0 - np.log(eps)) / (y0 - y1) if y0 != y1 else 1.0
    return float(x[i - 1] + t * (x[i] - x[i - 1]))


def majority_crossings(xs: list[np.ndarray], ys: list[np.ndarray], eps: float) -> list[float]:
    """`first_crossing` of every seed that reaches eps if more than half do; [] ("not reached") otherwise."""
    vals = [first_crossing(x, y, eps) for x, y in zip(xs, ys)]
    reached = [v for v in vals if not np.isnan(v)]
    return reached if len(reached) * 2 > len(vals) else []


def median_crossing(xs: list[np.ndarray], ys: list[np.ndarray], eps: float) -> float:
    """Median of `majority_crossings`; NaN when not reached."""
    reached = majority_crossings(xs, ys, eps)
    return float(np.median(reached)) if reached else float("nan")
