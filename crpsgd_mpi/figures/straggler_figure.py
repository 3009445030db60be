"""Time to epsilon with and without stragglers: the PL traces re-timed under compute-time models, 10 GbE."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, NamedTuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker as ticker  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from ..netmodel import ETHERNET_10G, Network  # noqa: E402
from ..stragglers import ComputeModel, Heterogeneous, Pareto, ShiftedExponential, Uniform, trace_eval_times  # noqa: E402
from ..trace import Trace  # noqa: E402
from .curves import majority_crossings  # noqa: E402
from .plots import METRIC, _save  # noqa: E402

#: Illustrative compute-bound cost per SFO (a small network's per-sample gradient), beside the measured one.
COMPUTE_BOUND = 1e-4
#: Mean per-worker delay of the per-round settings, seconds.
ROUND_DELAY = 1e-4


class Setting(NamedTuple):
    """One straggler setting: its table column, its legend and its model."""

    key: str
    legend: str
    model: ComputeModel


class Cell(NamedTuple):
    """Time to epsilon over seeds: median and quartiles of the seeds that reach it (NaN: not reached by
    more than half)."""

    median: float
    q1: float
    q3: float


class Block(NamedTuple):
    """One family under one compute cost: cells[label][setting key]."""

    family: str
    title: str
    workers: int
    spsfo: float
    measured: bool
    cells: dict[str, dict[str, Cell]]


def straggler_settings(s: float, n: int) -> list[Setting]:
    """The figure's settings for cost s per SFO and n workers; the random ones in pairs of equal mean
    (x2 work per worker; +100 us per round per worker), exponential vs heavy tail."""
    return [
        Setting("none", "no stragglers", Uniform(s)),
        Setting("slow worker", f"1 of {n} workers at half speed", Heterogeneous(s, (1.0,) * (n - 1) + (2.0,))),
        Setting("exp/SFO", "per SFO: x(1 + Exp(1)), shifted exp.", ShiftedExponential(s, 1.0)),
        Setting("Pareto/SFO", "per SFO: x(1 + Lomax(1.5)/2), Pareto", Pareto(s, 1.5, 0.5)),
        Setting("exp/round", "per round: +Exp(mean 100 us)", ShiftedExponential(s, ROUND_DELAY, "round")),
        Setting("Pareto/round", "per round: +Lomax(1.5), mean 100 us", Pareto(s, 1.5, ROUND_DELAY / 2, "round")),
    ]


def eps_cell(traces: list[Trace], metric: str, eps: float, model: ComputeModel, net: Network) -> Cell:
    """Time to eps of each trace re-timed under `model` (its straggler draws seeded by the trace's seed)."""
    times = [trace_eval_times(tr, net, model) for tr in traces]
    reached = majority_crossings(times, [tr.evals[metric].to_numpy() for tr in traces], eps)
    if not reached:
        return Cell(math.nan, math.nan, math.nan)
    return Cell(*(float(np.percentile(reached, q)) for q in (50, 25, 75)))


def straggler_study(families: list[tuple[Any, dict[str, list[Trace]], float]],
                    net: Network = ETHERNET_10G) -> list[Block]:
    """Every family under its measured cost and under COMPUTE_BOUND, every setting, every run label."""
    blocks = []
    for measured in (True, False):
        for fam, groups, spsfo in families:
            s = spsfo if measured else COMPUTE_BOUND
            n = int(next(iter(groups.values()))[0].attrs["N"])
            metric = METRIC[fam.study][0]
            cells = {label: {st.key: eps_cell(traces, metric, fam.epsilon, st.model, net)
                             for st in straggler_settings(s, n)}
                     for label, traces in sorted(groups.items())}
            blocks.append(Block(fam.name, fam.title, n, s, measured, cells))
    return blocks


def _cost(b: Block) -> str:
    return f"{b.spsfo * 1e6:.3g} us/SFO" + (" (measured)" if b.measured else " (illustrative)")


def straggler_table(blocks: list[Block]) -> tuple[list[str], list[list[str]]]:
    """Header and rows: time to eps (s) per family, cost, run and setting."""
    keys = [st.key for st in straggler_settings(1.0, 2)]
    rows = [[b.family, _cost(b), label, *("not reached" if math.isnan(c[k].median) else f"{c[k].median:.3g}"
                                           for k in keys)]
            for b in blocks for label, c in b.cells.items()]
    return ["family", "compute", "run", *keys], rows


COLORS = ("black", "tab:gray", "tab:blue", "tab:red", "tab:cyan", "tab:orange")
MARKERS = ("o", "s", "^", "v", "D", "P")


def _panel(ax: plt.Axes, b: Block, settings: list[Setting]) -> None:
    """One family under one cost: a band per run, a dot (median) and an IQR bar per setting inside it."""
    labels = list(b.cells)
    offsets = np.linspace(0.3, -0.3, len(settings))
    for i, label in enumerate(labels):
        y0 = len(labels) - 1 - i
        if all(math.isnan(c.median) for c in b.cells[label].values()):
            ax.annotate("epsilon not reached", (0.98, y0), xycoords=("axes fraction", "data"), ha="right",
                        va="center", fontsize=8, color="dimgray")
        for off, st, color, mk in zip(offsets, settings, COLORS, MARKERS):
            c = b.cells[label][st.key]
            if not math.isnan(c.median):
                ax.plot([c.q1, c.q3], [y0 + off] * 2, color=color, linewidth=1.5, alpha=0.6)
                ax.plot(c.median, y0 + off, marker=mk, color=color, markersize=5)
    ax.set_yticks(range(len(labels)), labels[::-1])
    for y in range(len(labels) - 1):
        ax.axhline(y + 0.5, color="lightgray", linewidth=0.8)
    ax.set_ylim(-0.5, len(labels) - 0.5)
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    ax.grid(True, axis="x", which="both", alpha=0.25)
    ax.set_xlabel("modelled time to epsilon (s)")
    ax.set_title(f"{b.title}\ncompute {_cost(b)}", fontsize=9)


def straggler_figure(name: str, blocks: list[Block], out: Path, net: Network = ETHERNET_10G) -> list[Path]:
    """Rows: compute cost (measured, compute-bound); columns: families."""
    fams = list(dict.fromkeys(b.family for b in blocks))
    fig, axes = plt.subplots(2, len(fams), figsize=(6.2 * len(fams), 8.4), squeeze=False)
    settings = straggler_settings(1.0, blocks[0].workers)
    for b in blocks:
        _panel(axes[0 if b.measured else 1][fams.index(b.family)], b, settings)
    handles = [Line2D([], [], color=c, marker=m, linestyle="none") for c, m in zip(COLORS, MARKERS)]
    fig.legend(handles, [st.legend for st in settings], loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.suptitle(f"Time to epsilon with stragglers: N={blocks[0].workers}, ring Allreduce on {net.name} "
                 "(median and IQR over seeds; delays drawn per worker and round, seeded)", fontsize=10)
    fig.tight_layout(rect=(0, 0.07, 1, 0.96))
    return _save(fig, out, name)
