"""The figures of the studies and the results table; reads traces only (Agg backend, no display)."""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker as ticker  # noqa: E402
import numpy as np  # noqa: E402

from ..algorithms import catalyst_counts, resolve_period  # noqa: E402
from ..netmodel import NETWORKS  # noqa: E402
from ..schedules import BatchSchedule, Geometric, Linear, Step  # noqa: E402
from ..trace import Trace  # noqa: E402
from .curves import Curve, band, median_crossing, metric_curve  # noqa: E402
from .netclock import eval_times  # noqa: E402

METRIC = {"pl": ("suboptimality", "suboptimality f(x) - f*"), "nonconvex": ("grad_norm_sq", "||grad f(x)||^2"),
          "schedules": ("suboptimality", "suboptimality f(x) - f*")}
RATE_LINE = {"pl": "1/(NT)", "schedules": "1/(NT)", "nonconvex": "1/sqrt(NT)"}


def _schedule(cfg: dict[str, Any]) -> BatchSchedule | None:
    """The deterministic schedule a trace's resolved config used (traces before --schedule: geometric)."""
    name = cfg.get("schedule", "geometric")
    if name == "geometric":
        return Geometric(cfg["B1"], cfg["rho"])
    if name == "linear":
        return Linear(cfg["B1"])
    if name == "step":
        return Step(cfg["B1"], cfg["step_factor"], cfg["step_every"])
    return None


def theoretical_rounds(cfg: dict[str, Any]) -> int | None:
    """Closed-form round count of a run from its resolved config; None for an adaptive schedule."""
    T, N, alg = int(cfg["T"]), int(cfg["workers"]), cfg["algorithm"]
    if alg in ("cr-psgd", "catalyst"):
        schedule = _schedule(cfg)
        if schedule is None:
            return None
        if alg == "cr-psgd":
            return schedule.rounds_and_sfo(T)[0]
        K, inner = catalyst_counts(N, T)
        return K * schedule.rounds_and_sfo(inner)[0]
    if alg == "psgd":
        return T // int(cfg["batch_size"])
    return T // (resolve_period(cfg["period"], N, T) * int(cfg["local_batch"]))


def _save(fig: plt.Figure, out: Path, name: str, dpi: int = 110) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.png", out / f"{name}.pdf"]
    for p in paths:
        fig.savefig(p, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return paths


def _curves(traces: list[Trace], metric: str, xkey: str) -> list[Curve]:
    return [metric_curve(tr, metric, tr.evals[xkey].to_numpy(np.float64)) for tr in traces]


def draw_band(ax: plt.Axes, curves: list[Curve], label: str, color: Any, logx: bool = True,
              logy: bool = True, span: tuple[float, float] = (25.0, 75.0), interp_logx: bool = False) -> bool:
    """One group of seeds: the median line and the interquartile band over `curves` (another pair of percentiles
    with `span`: (0, 100) for min-max), on a common grid of 200 points (geometric with `logx`) over the x range the
    curves cover; interpolated in log y with `logy`, in log x with `interp_logx` (straight segments between
    evaluations on a log x axis: what few evaluations need). A group with a single point is one marker; False
    (nothing drawn) when the curves hold no point."""
    curves = [c for c in curves if c.x.size]
    if not curves:
        return False
    lo = min(c.x.min() for c in curves)
    hi = max(c.x.max() for c in curves)
    if lo == hi:
        ax.plot([lo], [float(np.median([c.y[-1] for c in curves]))], color=color, marker="o", label=label)
        return True
    grid = np.geomspace(lo, hi, 200) if logx else np.linspace(lo, hi, 200)
    med, q1, q3 = band(curves, grid, log_y=logy, span=span, log_x=interp_logx)
    ax.plot(grid, med, color=color, label=label)
    ax.fill_between(grid, q1, q3, color=color, alpha=0.2, linewidth=0)
    return True


def study_figure(name: str, fam: Any, groups: dict[str, list[Trace]], out: Path) -> list[Path]:
    """Metric vs SFO per worker (log-log, with the theory slope) and vs rounds (theory round counts)."""
    metric, ylabel = METRIC[fam.study]
    batches = fam.study == "schedules"  # a third panel: how each schedule grows its batch
    fig, axes = plt.subplots(1, 3 if batches else 2, figsize=(18 if batches else 12, 4.5))
    a1, a2 = axes[0], axes[1]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    any_tr = next(iter(groups.values()))[0]
    N, T = int(any_tr.attrs["N"]), int(any_tr.attrs["T"])
    for i, (label, traces) in enumerate(sorted(groups.items())):
        c = colors[i % len(colors)]
        draw_band(a1, _curves(traces, metric, "sfo"), label, c)
        draw_band(a2, _curves(traces, metric, "round"), label, c)
        if batches:
            axes[2].step(traces[0].rounds["round"], traces[0].rounds["batch_size"], where="post", color=c, label=label)
        R = theoretical_rounds(traces[0].config)
        if R is not None:
            a2.axvline(R, color=c, linestyle=":", linewidth=1)
    s = np.geomspace(T / 100, T, 20)
    first = next(iter(sorted(groups.items())))[1]
    anchor = float(np.median([tr.evals[metric].iloc[-1] for tr in first]))
    if RATE_LINE[fam.study] == "1/(NT)":
        a1.plot(s, anchor * T / s, "k--", linewidth=1, label="O(1/(NT)) slope")
    else:
        a1.plot(s, anchor * np.sqrt(T / s), "k--", linewidth=1, label="O(1/sqrt(NT)) slope")
    for ax in (a1, a2):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="major", alpha=0.3)
    a1.set_xlabel("SFO per worker (stochastic gradients)")
    a2.set_xlabel("communication rounds (dotted: closed-form count)")
    a1.legend(fontsize=8)
    if batches:
        axes[2].set(xscale="log", yscale="log", xlabel="round", ylabel="per-worker batch size (seed 0)")
        axes[2].grid(True, which="major", alpha=0.3)
    fig.suptitle(f"{fam.title}: N={N}, T={T} (median and IQR over {len(first)} seeds)")
    return _save(fig, out, name)


def time_figure(name: str, fam: Any, groups: dict[str, list[Trace]], out: Path, spsfo: float) -> list[Path]:
    """Metric vs modelled wall-clock time under each network (ring Allreduce + measured compute)."""
    metric, ylabel = METRIC[fam.study]
    fig, axes = plt.subplots(1, len(NETWORKS), figsize=(12, 4.5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    any_tr = next(iter(groups.values()))[0]
    N, T = int(any_tr.attrs["N"]), int(any_tr.attrs["T"])
    for ax, net in zip(axes, NETWORKS):
        for i, (label, traces) in enumerate(sorted(groups.items())):
            curves = [metric_curve(tr, metric, eval_times(tr, net, spsfo)) for tr in traces]
            draw_band(ax, curves, label, colors[i % len(colors)])
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("modelled time (s)")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{net.name}: alpha={net.alpha * 1e6:g} us, {1e-9 / net.beta:g} GB/s", fontsize=9)
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{fam.title}: N={N}, T={T}, ring Allreduce, {spsfo * 1e6:.2f} us per SFO")
    return _save(fig, out, name)


def staircase_figure(name: str, series: dict[str, Trace], out: Path, stages: int = 8,
                     dataset: str = "") -> list[Path]:
    """Batch size per round for CR-PSGD and the first `stages` Catalyst stages (boundaries marked)."""
    fig, axes = plt.subplots(1, len(series), figsize=(6 * len(series), 4.2), squeeze=False)
    for ax, (label, tr) in zip(axes[0], series.items()):
        r, b, st = (tr.rounds[c].to_numpy() for c in ("round", "batch_size", "stage"))
        if st.max() > 0:
            keep = st <= stages
            r, b, st = r[keep], b[keep], st[keep]
            for k in np.unique(st)[1:]:
                ax.axvline(r[st == k][0] - 0.5, color="gray", linestyle=":", linewidth=1)
        ax.step(r, b, where="mid")
        ax.set_yscale("log")
        ax.set_xlabel("communication round" + (" (dotted: Catalyst stage boundaries)" if st.max() > 0 else ""))
        ax.set_ylabel("batch size per worker (samples)")
        ax.set_title(f"{label}: N={tr.attrs['N']}, T={tr.attrs['T']}", fontsize=9)
        ax.grid(True, alpha=0.3)
    fig.suptitle("Batch-size staircase" + (f", {dataset}" if dataset else ""))
    return _save(fig, out, name)


def speedup_figure(name: str, fam: Any, groups: dict[str, list[Trace]], out: Path) -> tuple[list[Path], float]:
    """Final suboptimality vs N (log-log), median and IQR over seeds, fitted slope and the -1 theory line."""
    counts, medians, lower, upper = [], [], [], []
    for traces in groups.values():
        vals = [tr.evals["suboptimality"].iloc[-1] for tr in traces]
        counts.append(int(traces[0].attrs["N"]))
        medians.append(np.median(vals))
        lower.append(np.percentile(vals, 25))
        upper.append(np.percentile(vals, 75))
    order = np.argsort(counts)
    Ns, med, q1, q3 = (np.asarray(v)[order] for v in (counts, medians, lower, upper))
    slope = float(np.polyfit(np.log(Ns), np.log(med), 1)[0])
    T = int(next(iter(groups.values()))[0].attrs["T"])
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.errorbar(Ns, med, yerr=[med - q1, q3 - med], fmt="o-", capsize=3, label=f"CR-PSGD (fitted slope {slope:.2f})")
    ax.plot(Ns, med[0] * Ns[0] / Ns, "k--", linewidth=1, label="theory O(1/(NT)): slope -1")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("workers N")
    ax.set_ylabel("final suboptimality f(x) - f*")
    ax.set_title(f"{fam.title}: T={T} per worker")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, out, name), slope


def table_rows(fam: Any, groups: dict[str, list[Trace]], spsfo: float) -> list[list[str]]:
    """Per label: rounds, SFO, final metric, SFO/rounds/modelled time to epsilon (medians over seeds)."""
    metric, _ = METRIC[fam.study]
    rows = []
    for label, traces in sorted(groups.items()):
        ev = [{c: tr.evals[c].to_numpy() for c in tr.evals.columns} for tr in traces]
        final = np.median([e[metric][-1] for e in ev])
        rounds = np.median([len(tr.rounds["round"]) for tr in traces])
        sfo = np.median([tr.rounds["sfo"].iloc[-1] for tr in traces])
        def to_eps(xs: list[np.ndarray], ev: list[dict[str, np.ndarray]] = ev) -> str:
            v = median_crossing(xs, [e[metric] for e in ev], fam.epsilon)
            return "not reached" if math.isnan(v) else f"{v:.3g}"

        times = [to_eps([eval_times(tr, net, spsfo) for tr in traces]) for net in NETWORKS]
        rows.append([fam.name, label, f"{rounds:.0f}", f"{sfo:.0f}", f"{final:.3g}",
                     to_eps([e["sfo"].astype(float) for e in ev]), to_eps([e["round"].astype(float) for e in ev]),
                     *times])
    return rows


def compare_figure(path: Path, series: list[tuple[str, list[Curve]]], xlabel: str, ylabel: str, *,
                   logx: bool = True, logy: bool = True, legend_title: str = "", title: str = "",
                   eps: float | None = None, dpi: int = 120) -> None:
    """One panel: a median line and IQR band per (label, curves of its seeds), a dotted line at `eps`; written
    atomically to `path` (a temporary file in its folder, then renamed; its format from the suffix)."""
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    if len(series) > len(colors):
        colors = [plt.get_cmap("tab20")(i % 20) for i in range(len(series))]
    drawn = [draw_band(ax, curves, label, colors[i], logx, logy) for i, (label, curves) in enumerate(series)]
    if eps is not None and math.isfinite(eps) and any(drawn):
        ax.axhline(eps, color="gray", linestyle=":", linewidth=1, label=f"epsilon = {eps:.3g}")
    if not any(drawn):
        ax.text(0.5, 0.5, "no evaluations to show", transform=ax.transAxes, ha="center", va="center")
    else:
        ax.set_xscale("log" if logx else "linear")
        ax.set_yscale("log" if logy else "linear")
        for axis, lim, log in ((ax.xaxis, ax.get_xlim(), logx), (ax.yaxis, ax.get_ylim(), logy)):
            if log:
                plain_log_ticks(axis, *lim)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="major", alpha=0.3)
    if title:
        ax.set_title(title, fontsize=10)
    if any(drawn):
        wide = len(series) > 5 or max(len(label) for label, _ in series) > 30
        where = {"loc": "upper left", "bbox_to_anchor": (1.01, 1.0)} if wide else {"loc": "best"}
        ax.legend(title=legend_title or None, fontsize=8, title_fontsize=8, **where)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        mask = os.umask(0o022)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=path.suffix.lstrip(".").lower())
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)


def plain_log_ticks(axis: Any, lo: float, hi: float) -> None:
    """On a log axis spanning under three decades, ticks at 1, 2, 5 x 10^k labelled as plain numbers (0.2, 50),
    not 2 x 10^-1 on every minor tick; wider axes keep matplotlib's decade labels."""
    if lo > 0 and hi / lo < 1e3:
        axis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(ticker.FormatStrFormatter("%g"))
        axis.set_minor_formatter(ticker.NullFormatter())


def text_table(header: list[str], rows: list[list[str]]) -> str:
    """Columns aligned with two spaces, a dashed rule under the header: for a terminal."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
