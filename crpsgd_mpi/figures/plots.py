"""The figures of the studies and the results table; reads traces only (Agg backend, no display)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..algorithms import catalyst_counts, resolve_period  # noqa: E402
from ..netmodel import NETWORKS  # noqa: E402
from ..schedules import BatchSchedule, Geometric, Linear, Step  # noqa: E402
from ..trace import Trace  # noqa: E402
from .curves import Curve, band, median_crossing  # noqa: E402
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
    out = []
    for tr in traces:
        x = tr.evals[xkey].to_numpy(np.float64)
        keep = x > 0
        out.append(Curve(x[keep], tr.evals[metric].to_numpy()[keep]))
    return out


def _draw(ax: plt.Axes, curves: list[Curve], label: str, color: str, logx: bool = True) -> None:
    lo = min(c.x.min() for c in curves)
    hi = max(c.x.max() for c in curves)
    grid = np.geomspace(lo, hi, 200) if logx else np.linspace(lo, hi, 200)
    med, q1, q3 = band(curves, grid)
    ax.plot(grid, med, color=color, label=label)
    ax.fill_between(grid, q1, q3, color=color, alpha=0.2, linewidth=0)


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
        _draw(a1, _curves(traces, metric, "sfo"), label, c)
        _draw(a2, _curves(traces, metric, "round"), label, c)
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
            curves = []
            for tr in traces:
                t = eval_times(tr, net, spsfo)
                keep = t > 0
                curves.append(Curve(t[keep], tr.evals[metric].to_numpy()[keep]))
            _draw(ax, curves, label, colors[i % len(colors)])
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
    Ns, med, q1, q3 = [], [], [], []
    for traces in groups.values():
        vals = [tr.evals["suboptimality"].iloc[-1] for tr in traces]
        Ns.append(int(traces[0].attrs["N"]))
        med.append(np.median(vals))
        q1.append(np.percentile(vals, 25))
        q3.append(np.percentile(vals, 75))
    order = np.argsort(Ns)
    Ns, med, q1, q3 = (np.asarray(v)[order] for v in (Ns, med, q1, q3))
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
