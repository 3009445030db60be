"""Per-seed curves read from traces, their median/IQR on a common grid, and epsilon crossings."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ..trace import Trace, read_trace


@dataclass
class Curve:
    """One trace's evaluation points: x (SFO, rounds or time) against a metric."""

    x: np.ndarray
    y: np.ndarray


def load_family_traces(folder: Path, statuses: tuple[str, ...] = ("complete",)) -> dict[str, list[Trace]]:
    """Traces of one family folder grouped by label (file names '<label>-seed<k>.h5'); only those whose status is
    one of `statuses` (by default the finished ones)."""
    groups: dict[str, list[Trace]] = {}
    for path in sorted(folder.glob("*-seed*.h5")):
        tr = read_trace(path)
        if tr.status not in statuses:
            continue
        label = path.stem.rsplit("-seed", 1)[0]
        groups.setdefault(label, []).append(tr)
    return groups


def band(curves: list[Curve], grid: np.ndarray, log_y: bool = True, span: tuple[float, float] = (25.0, 75.0),
         log_x: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Median and the `span` percentiles over curves (by default the 25th and 75th: the interquartile range; (0, 100):
    min and max), each interpolated (in log y; with `log_x` in log x too: straight between evaluations on log-log
    axes) onto `grid`; NaN where a curve does not cover a grid point."""
    rows = []
    for c in curves:
        y = np.log(np.maximum(c.y, 1e-300)) if log_y else c.y
        if log_x:
            v = np.interp(np.log(grid), np.log(c.x), y, left=np.nan, right=np.nan)
        else:
            v = np.interp(grid, c.x, y, left=np.nan, right=np.nan)
        rows.append(np.exp(v) if log_y else v)
    stack = np.vstack(rows)
    with np.errstate(all="ignore"):
        return (np.nanmedian(stack, axis=0), np.nanpercentile(stack, span[0], axis=0),
                np.nanpercentile(stack, span[1], axis=0))


def first_crossing(x: np.ndarray, y: np.ndarray, eps: float, rising: bool = False) -> float:
    """The x at which y first falls to eps (with `rising`: first rises to eps, e.g. an accuracy), interpolated
    between the evaluation before and the one that reaches it, in log y for a falling metric, linearly for a rising
    one; NaN if never reached; x[0] if already there."""
    y = np.asarray(y, dtype=np.float64)
    reached = np.nonzero(y >= eps if rising else y <= eps)[0]
    if reached.size == 0:
        return float("nan")
    i = int(reached[0])
    if i == 0:
        return float(x[0])
    if rising:
        y0, y1, e = y[i - 1], y[i], eps
    else:
        y0, y1, e = np.log(max(y[i - 1], 1e-300)), np.log(max(y[i], 1e-300)), np.log(eps)
    t = (y0 - e) / (y0 - y1) if y0 != y1 else 1.0
    return float(x[i - 1] + t * (x[i] - x[i - 1]))


def majority_crossings(xs: list[np.ndarray], ys: list[np.ndarray], eps: float, rising: bool = False) -> list[float]:
    """`first_crossing` of every seed that reaches eps if more than half do; [] ("not reached") otherwise."""
    vals = [first_crossing(x, y, eps, rising) for x, y in zip(xs, ys)]
    reached = [v for v in vals if not np.isnan(v)]
    return reached if len(reached) * 2 > len(vals) else []


def median_crossing(xs: list[np.ndarray], ys: list[np.ndarray], eps: float, rising: bool = False) -> float:
    """Median of `majority_crossings`; NaN when not reached."""
    reached = majority_crossings(xs, ys, eps, rising)
    return float(np.median(reached)) if reached else float("nan")


class Metric(NamedTuple):
    """A per-evaluation column of a trace: its axis label, whether larger is better, whether it falls towards 0 (then
    log y is natural and the default epsilon is a multiple of the worst final value)."""

    column: str
    label: str
    rising: bool = False
    to_zero: bool = False


METRICS = {
    "suboptimality": Metric("suboptimality", "suboptimality f(x) - f*", to_zero=True),
    "grad_norm_sq": Metric("grad_norm_sq", "||grad f(x)||^2", to_zero=True),
    "loss": Metric("loss", "training loss f(x)"),
    "test_loss": Metric("test_loss", "test loss"),
    "test_accuracy": Metric("test_accuracy", "test accuracy", rising=True),
}


def recorded(tr: Trace, column: str) -> bool:
    """Whether the trace evaluated `column` (a finite value at some evaluation; NaN means "not available")."""
    if column not in tr.evals:
        return False
    return bool(np.isfinite(tr.evals[column].to_numpy(np.float64)).any())


def auto_metric(traces: list[Trace]) -> str:
    """Suboptimality when every trace has f*, else ||grad f||^2 when every trace evaluated it, else test accuracy
    (networks), else the training loss. A trace stopped before its first evaluation has no say."""
    evaluated = [tr for tr in traces if len(tr.evals)] or traces
    if all("f_star" in tr.attrs for tr in traces) and all(recorded(tr, "suboptimality") for tr in evaluated):
        return "suboptimality"
    for column in ("grad_norm_sq", "test_accuracy"):
        if all(recorded(tr, column) for tr in evaluated):
            return column
    return "loss"


def metric_curve(tr: Trace, metric: str, x: np.ndarray) -> Curve:
    """The metric at each evaluation against `x` (one value per evaluation: SFO, round, modelled time); the
    points a log x axis cannot show (x <= 0: the start) and evaluations without the metric are left out."""
    x = np.asarray(x, dtype=np.float64)
    y = tr.evals[metric].to_numpy(np.float64)
    keep = (x > 0) & np.isfinite(y)
    return Curve(x[keep], y[keep])


#: Keys of a recorded config that say how a run was carried out, not what it computed: never a label.
RUN_MECHANICS = frozenset({
    "seed", "out", "quiet", "overwrite", "checkpoint_every", "stall_timeout", "fault", "backend", "plugin",
    "fmnist_dir", "device", "storage", "eval_points", "eval_samples", "test_samples", "resume", "config", "list",
})
#: Keys the run derived and recorded beside the options (traces without `run_config` cannot say which they are).
DERIVED = frozenset({"L", "L_method", "L_converged", "L_products", "n_samples", "n_features", "dataset_name", "dtype"})


def settings(tr: Trace) -> dict[str, Any]:
    """What a run computed, as options: the recorded config (an open mapping: plug-ins' parameters included) with the
    options' values as given where the trace records them (`gamma` None: derived from L), the number of workers the
    run had, and neither run mechanics (`RUN_MECHANICS`) nor derived values (`DERIVED`)."""
    cfg = dict(tr.config)
    given = tr.attrs.get("run_config")
    if isinstance(given, str):
        try:
            given = json.loads(given)
        except ValueError:
            given = None
    derived = set(DERIVED)
    if isinstance(given, dict):
        derived |= set(cfg) - set(given)  # what the run added to the options
        cfg.update(given)
    out = {k: v for k, v in cfg.items() if k not in RUN_MECHANICS and k not in derived}
    if "N" in tr.attrs:
        out["workers"] = int(tr.attrs["N"])
    out.setdefault("algorithm", tr.attrs.get("algorithm", "?"))
    return out


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def shown(value: Any) -> str:
    """A setting's value as a label shows it: 1.1, 2.0, 1e-05, geometric, default (None: derived by the run)."""
    if value is None:
        return "default"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "+".join(shown(v) for v in value) or "none"
    if isinstance(value, dict):
        return _canonical(value)
    return str(value)


def group_by_settings(traces: list[Trace]) -> list[list[Trace]]:
    """Traces that differ only by seed (and run mechanics) in one group each, in order of first appearance."""
    groups: dict[str, list[Trace]] = {}
    for tr in traces:
        groups.setdefault(_canonical(settings(tr)), []).append(tr)
    return list(groups.values())


#: Settings that choose a component, outermost first: another component's options are not compared with its own.
SELECTORS = ("algorithm", "schedule")


def _value_key(s: dict[str, Any], k: str) -> str:
    """A setting's value, comparable; a missing key differs from every value."""
    return _canonical(s[k]) if k in s else "\0missing"


def _natural(value: Any) -> tuple[int, float, str]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, float(value), "")
    return (1, 0.0, shown(value))


def label_groups(groups: list[list[Trace]]) -> tuple[list[str], str, list[int]]:
    """Short labels of the groups from the settings that differ between them (key=value joined by ', '; the
    algorithm's name first, bare, when algorithms differ), the legend's title (the keys that differ), and the order
    to show the groups in (by algorithm, then by the values shown, numbers as numbers).

    A differing key is shown for a group when the group has it and either it differs between that group's peers,
    or it is not the option's default, or some other group lacks it (a plug-in's own parameter). Peers: the groups
    that select the same components (`SELECTORS`: the same algorithm, and for a key other than the schedule the
    same schedule). So `psgd, batch_size=4` stands beside `cr-psgd, rho=1.1`, and `schedule=step, step_factor=3.0`
    beside `schedule=geometric, rho=1.5`, not every option that one of them ignores. Groups with the same
    components differ in a key shown for both, groups with different ones in a shown selector: labels are distinct.
    One group, or nothing but seeds differing: the algorithm's name."""
    from ..config import Config

    sets = [settings(g[0]) for g in groups]
    algs = [str(s.get("algorithm", "?")) for s in sets]
    keys = sorted({k for s in sets for k in s}, key=lambda k: (k not in SELECTORS, SELECTORS.index(k)
                                                               if k in SELECTORS else 0, k))
    differ = [k for k in keys if len({_value_key(s, k) for s in sets}) > 1]
    if len(groups) <= 1 or not differ:
        return algs, "algorithm", list(range(len(groups)))
    defaults = {f.name: f.default for f in dataclasses.fields(Config) if f.default is not dataclasses.MISSING}

    def peers(i: int, k: str) -> list[dict[str, Any]]:
        chosen = SELECTORS[:SELECTORS.index(k)] if k in SELECTORS else SELECTORS
        return [t for t in sets if all(_value_key(t, c) == _value_key(sets[i], c) for c in chosen)]

    by_alg = "algorithm" in differ
    parts: list[list[tuple[str, Any]]] = []
    for i, s in enumerate(sets):
        mine = []
        for k in differ:
            if k == "algorithm" or k not in s:
                continue
            varies = len({_value_key(t, k) for t in peers(i, k)}) > 1
            lacking = any(k not in t for t in sets)
            if varies or lacking or k not in defaults or _canonical(s[k]) != _canonical(defaults[k]):
                mine.append((k, s[k]))
        parts.append(mine)
    labels = []
    for alg, mine in zip(algs, parts):
        items = ([alg] if by_alg else []) + [f"{k}={shown(v)}" for k, v in mine]
        labels.append(", ".join(items) or alg)
    used = [k for k in differ if k != "algorithm" and any(k == pk for p in parts for pk, _ in p)]
    title = ", ".join((["algorithm"] if by_alg else []) + used)
    order = sorted(range(len(groups)), key=lambda i: ((algs[i] if by_alg else ""),
                                                      [(k, _natural(sets[i].get(k))) for k in used]))
    return labels, title, order


class Summary(NamedTuple):
    """One group of traces (seeds) in numbers: medians over the seeds."""

    runs: int
    seeds: list[int]
    rounds: float
    sfo: float
    final: float
    sfo_to_eps: float
    rounds_to_eps: float
    time_to_eps: float
    statuses: dict[str, int]


def final_value(tr: Trace, metric: str) -> float:
    """The metric at the trace's last evaluation that has it (NaN if none)."""
    y = tr.evals[metric].to_numpy(np.float64) if metric in tr.evals else np.array([])
    y = y[np.isfinite(y)]
    return float(y[-1]) if y.size else math.nan


def summarize(traces: list[Trace], metric: str, eps: float, rising: bool = False,
              times: list[np.ndarray] | None = None) -> Summary:
    """Rounds, SFO per worker and final metric (medians over the traces), SFO, rounds and (given each trace's
    modelled time at its evaluations) time to eps (`median_crossing`: NaN unless more than half the seeds reach
    it), and how many traces ended in each status."""
    def last(tr: Trace, col: str) -> float:
        return float(tr.rounds[col].iloc[-1]) if len(tr.rounds) else 0.0

    finals = [v for v in (final_value(tr, metric) for tr in traces) if not math.isnan(v)]
    ys = [tr.evals[metric].to_numpy(np.float64) for tr in traces]
    statuses: dict[str, int] = {}
    for tr in traces:
        statuses[tr.status] = statuses.get(tr.status, 0) + 1
    return Summary(
        runs=len(traces), seeds=sorted({int(tr.attrs.get("seed", -1)) for tr in traces}),
        rounds=float(np.median([last(tr, "round") for tr in traces])),
        sfo=float(np.median([last(tr, "sfo") for tr in traces])),
        final=float(np.median(finals)) if finals else math.nan,
        sfo_to_eps=median_crossing([tr.evals["sfo"].to_numpy(np.float64) for tr in traces], ys, eps, rising),
        rounds_to_eps=median_crossing([tr.evals["round"].to_numpy(np.float64) for tr in traces], ys, eps, rising),
        time_to_eps=median_crossing(times, ys, eps, rising) if times is not None else math.nan,
        statuses=statuses)


def default_epsilon(finals: list[float], starts: list[float], metric: Metric) -> tuple[float, str]:
    """A level every group comes near, from the groups' final medians (`finals`) and the metric at the start
    (`starts`, one value per trace): 10x the worst final median for a metric that falls to 0, the worst + 10% for a
    loss, 0.9 x the worst for an accuracy; but never beyond halfway from the median start to the worst final median
    (geometric mean for a metric that falls to 0, else the mean), so that no group reaches it at the start. With
    how it was chosen, in words."""
    vals = [v for v in finals if math.isfinite(v)]
    if not vals:
        return math.nan, "no final values"
    begin = [v for v in starts if math.isfinite(v)]
    start = float(np.median(begin)) if begin else math.nan
    worst = min(vals) if metric.rising else max(vals)
    if metric.rising:
        eps, how = 0.9 * worst, "0.9 x the worst final median"
    elif metric.to_zero:
        eps, how = 10.0 * worst, "10 x the worst final median"
    else:
        eps, how = 1.1 * worst, "the worst final median + 10%"
    if math.isfinite(start):
        if metric.to_zero and start > 0 and worst > 0:
            mid, where = math.sqrt(start * worst), "in log"
        else:
            mid, where = 0.5 * (start + worst), "linearly"
        if (eps < mid) if metric.rising else (eps > mid):
            eps, how = mid, f"halfway ({where}) from the median start to the worst final median"
    return eps, how
