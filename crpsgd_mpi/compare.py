"""`python -m crpsgd_mpi.compare TRACE...`: one figure and one table comparing any traces; seeds of one setting are
one curve (median and interquartile band), labelled by the settings that differ between the curves."""

from __future__ import annotations

import argparse
import math
import os
import stat
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError
from .outcome import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, say, show
from .trace import Trace, load_trace

X_LABELS = {"sfo": "SFO per worker (stochastic gradients)", "rounds": "communication rounds"}
NETWORK_NAMES = {"10gbe": 0, "ib": 1}  # index into netmodel.NETWORKS
FORMATS = (".png", ".pdf", ".svg")
#: Columns a trace must have for any comparison.
NEEDED = {"rounds": ("round", "sfo", "bytes"), "evals": ("round", "sfo")}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m crpsgd_mpi.compare", description=__doc__,
        epilog="Labels: the settings (recorded config) that differ between the groups of traces, key=value; seed and "
               "run mechanics (out, backend, checkpoints, ...) never split a group.")
    p.add_argument("traces", nargs="+", metavar="TRACE", help="trace files (.h5), any mix: runs, sweeps, plug-ins")
    p.add_argument("--out", default="compare.png", help="figure file, .png, .pdf or .svg (default: compare.png)")
    p.add_argument("--x", choices=("sfo", "rounds", "time"), default="sfo",
                   help="x axis: SFO per worker, communication rounds, or modelled time (alpha-beta clock)")
    p.add_argument("--y", choices=("auto", "suboptimality", "grad_norm_sq", "loss", "test_accuracy", "test_loss"),
                   default="auto", help="metric (auto: suboptimality if every trace has f*, else ||grad f||^2, else "
                   "test accuracy)")
    p.add_argument("--eps", help="epsilon of the to-epsilon columns (default: from the data, stated in the table)")
    p.add_argument("--network", choices=tuple(NETWORK_NAMES), default="10gbe",
                   help="--x time: 10 Gb Ethernet (default) or 100 Gb InfiniBand")
    p.add_argument("--sfo-seconds", help="--x time: compute seconds per SFO (default: measured here for logistic "
                   "regression, from the trace's own clock for other models)")
    return p


def _positive(field: str, text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        raise InputError(field, text, "must be a number") from None
    if not math.isfinite(value) or value <= 0:
        raise InputError(field, text, "must be a positive finite number")
    return value


def read(path: str) -> Trace:
    """A trace read for comparison; anything else (missing, a folder, not HDF5, damaged, not ours) is one
    InputError naming it."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise InputError("trace", path, exc.strerror or str(exc)) from None
    if not stat.S_ISREG(st.st_mode):
        raise InputError("trace", path, "is not a regular file")
    try:
        tr = load_trace(path)
        if not isinstance(tr.config, dict):
            raise ValueError("its config is not a mapping")
        for group, columns in NEEDED.items():
            frame = getattr(tr, group)
            missing = [c for c in columns if c not in frame]
            if missing:
                raise ValueError(f"/{group} lacks {', '.join(missing)}")
        if len(tr.rounds) and not np.all(np.diff(tr.rounds["round"].to_numpy()) > 0):
            raise ValueError("its rounds are not in order")
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - a damaged file can make h5py, json or pandas raise anything
        raise InputError("trace", path, f"damaged trace: {type(exc).__name__}: {exc}") from None
    return tr


def check_out(out: str, inputs: Sequence[str]) -> Path:
    """The figure's path: a known format, not one of the inputs, not something other than a file, writable."""
    p = Path(out)
    for other in inputs:
        if p.resolve() == Path(other).resolve() or (p.exists() and Path(other).exists() and os.path.samefile(p, other)):
            raise InputError("out", out, f"is the input {other}: it would be destroyed")
    if p.suffix.lower() not in FORMATS:
        raise InputError("out", out, f"must end in {', '.join(FORMATS)}")
    if (p.exists() or p.is_symlink()) and not p.is_file():
        raise InputError("out", out, "exists and is not a regular file")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError("out", out, f"cannot create its folder: {exc.strerror or exc}") from None
    if not os.access(p.parent, os.W_OK):
        raise InputError("out", out, f"cannot write in {p.parent}")
    return p


def pick_metric(choice: str, traces: list[Trace], paths: list[str]) -> str:
    from .figures.curves import auto_metric, recorded

    if choice == "auto":
        return auto_metric(traces)
    for tr, path in zip(traces, paths):
        if len(tr.evals) and not recorded(tr, choice):
            why = "no f* (f* is known for the l2 regularizer only)" if choice == "suboptimality" else f"no {choice}"
            raise InputError("y", choice, f"trace {path} has {why}; choose another --y")
    return choice


def seconds_per_sfo(tr: Trace, given: float | None, cache: dict[int, float]) -> tuple[float, str]:
    """Compute time per SFO for the modelled clock, and where it came from."""
    from .figures.netclock import measure_seconds_per_sfo

    if given is not None:
        return given, "given"
    d = int(tr.config.get("n_features", 0) or 0)
    if tr.config.get("model", "logreg") == "logreg" and d > 0:
        if d not in cache:
            cache[d] = measure_seconds_per_sfo(d)
        return cache[d], "measured here"
    sfo = float(tr.rounds["sfo"].iloc[-1]) if len(tr.rounds) else 0.0
    wall = float(tr.rounds["wall_time"].iloc[-1]) if len(tr.rounds) and "wall_time" in tr.rounds else 0.0
    if sfo > 0 and wall > 0:  # the in-process backend computes the N workers one after another
        per_process = int(tr.attrs.get("N", 1)) if tr.config.get("backend") == "local" else 1
        return wall / sfo / per_process, "from the traces' clocks"
    if d not in cache:
        cache[d] = measure_seconds_per_sfo(max(d, 1))
    return cache[d], "measured here"


def _seeds(seeds: list[int]) -> str:
    """0,1 or 0-4 (three or more in a row as a range)."""
    parts, i = [], 0
    while i < len(seeds):
        j = i
        while j + 1 < len(seeds) and seeds[j + 1] == seeds[j] + 1:
            j += 1
        parts += [f"{seeds[i]}-{seeds[j]}"] if j - i >= 2 else [str(v) for v in seeds[i:j + 1]]
        i = j + 1
    return ",".join(parts)


def _num(v: float) -> str:
    return "not reached" if math.isnan(v) else f"{v:.3g}"


def _status(counts: dict[str, int]) -> str:
    if list(counts) == ["complete"]:
        return "complete"
    return ", ".join(f"{n} {s}" for s, n in sorted(counts.items(), key=lambda kv: kv[0] != "complete"))


def _common_title(traces: list[Trace]) -> str:
    parts = []
    for name, get in (("", lambda t: t.config.get("dataset_name") or t.config.get("dataset")),
                      ("N=", lambda t: t.attrs.get("N")), ("T=", lambda t: t.attrs.get("T"))):
        values = {str(get(t)) for t in traces}
        if len(values) == 1 and "None" not in values:
            parts.append(name + values.pop())
    head = ", ".join(parts)
    return (head + ": " if head else "") + "median and interquartile range over seeds"


def compare(paths: list[str], out: str, x: str = "sfo", y: str = "auto", eps: float | None = None,
            network: str = "10gbe", sfo_seconds: float | None = None) -> str:
    """Read the traces, draw the figure to `out`, and return the table (text). Bad input raises InputError before
    anything is written."""
    from .figures.curves import METRICS, default_epsilon, group_by_settings, label_groups, metric_curve, summarize
    from .figures.netclock import eval_times
    from .figures.plots import compare_figure, text_table
    from .netmodel import NETWORKS

    target = check_out(out, paths)
    traces = [read(p) for p in paths]
    metric = METRICS[pick_metric(y, traces, paths)]
    groups = group_by_settings(traces)
    labels, legend_title, order = label_groups(groups)
    net = NETWORKS[NETWORK_NAMES[network]]
    xs: dict[int, np.ndarray] = {}
    sources, costs = set(), set()
    cache: dict[int, float] = {}
    for tr in traces:
        if x == "time":
            seconds, source = seconds_per_sfo(tr, sfo_seconds, cache)
            sources.add(source)
            costs.add(seconds)
            xs[id(tr)] = eval_times(tr, net, seconds)
        else:
            xs[id(tr)] = tr.evals["sfo" if x == "sfo" else "round"].to_numpy(np.float64)
    summaries = [summarize(g, metric.column, math.nan, metric.rising) for g in groups]
    how = "given"
    if eps is None:
        starts = [float(tr.evals[metric.column].iloc[0]) if len(tr.evals) else math.nan for tr in traces]
        eps, how = default_epsilon([sm.final for sm in summaries], starts, metric)
    summaries = [summarize(g, metric.column, eps, metric.rising, [xs[id(t)] for t in g] if x == "time" else None)
                 for g in groups]

    if x == "time":
        cost = f"{costs.pop() * 1e6:.3g} us per SFO" if len(costs) == 1 else "compute per SFO"
        xlabel = (f"modelled time (s)\nring Allreduce on {net.name} (alpha {net.alpha * 1e6:g} us, "
                  f"{1e-9 / net.beta:g} GB/s) + {cost} ({', '.join(sorted(sources))})")
    else:
        xlabel = X_LABELS[x]
    series = [(labels[i], [metric_curve(t, metric.column, xs[id(t)]) for t in groups[i]]) for i in order]
    logy = metric.to_zero or (not metric.rising and _spans_decade([c for _, cs in series for c in cs]))
    compare_figure(target, series, xlabel, metric.label, logx=True, logy=logy, legend_title=legend_title,
                   title=_common_title(traces), eps=eps)

    header = ["label", "runs (seeds)", "rounds", "SFO/worker", f"final {metric.column}", "SFO to eps",
              "rounds to eps", *(["time to eps (s)"] if x == "time" else []), "status"]
    rows = []
    for i in order:
        s = summaries[i]
        rows.append([labels[i], f"{s.runs} ({_seeds(s.seeds)})", f"{s.rounds:.0f}", f"{s.sfo:.0f}", _num(s.final),
                     _num(s.sfo_to_eps), _num(s.rounds_to_eps), *([_num(s.time_to_eps)] if x == "time" else []),
                     _status(s.statuses)])
    direction = "rises to" if metric.rising else "falls to"
    note = (f"{metric.label}: medians over seeds (final: each run's last evaluation)\n"
            f"eps = {eps:.3g} ({how}); to eps: where the metric first {direction} eps, interpolated between "
            "evaluations; 'not reached' unless more than half the seeds reach it")
    return note + "\n\n" + text_table(header, rows)


def _spans_decade(curves: list[Any]) -> bool:
    ys = np.concatenate([c.y for c in curves]) if curves else np.array([])
    ys = ys[np.isfinite(ys)]
    return bool(ys.size) and float(ys.min()) > 0 and float(ys.max()) / float(ys.min()) > 10


def main(argv: list[str] | None = None) -> int:
    ns = parser().parse_args(argv)
    try:
        table = compare(ns.traces, ns.out, ns.x, ns.y, _positive("eps", ns.eps), ns.network,
                        _positive("sfo_seconds", ns.sfo_seconds))
    except InputError as exc:
        say(f"crpsgd_mpi: error: {exc}")
        return EXIT_USAGE
    except OSError as exc:
        say(f"crpsgd_mpi: error: cannot write the figure {ns.out}: {exc.strerror or exc}")
        return EXIT_FAILED
    except KeyboardInterrupt:
        say("crpsgd_mpi: interrupted")
        return EXIT_INTERRUPTED
    show(table)
    show(f"figure: {ns.out}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
