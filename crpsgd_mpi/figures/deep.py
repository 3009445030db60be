"""The deep-network study (the paper's second experiment, issue 17): per method, training loss and test accuracy
against epochs and against communication rounds (median over seeds, band min-max), the step size and the batch
size per round; for a step-size grid, the final training loss against gamma and the winners; a results table and a
computed verdict (does CR-PSGD reach the small batch's accuracy within 1 point with at least 10x fewer rounds, at
what SFO). Reads traces only."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.transforms as mtransforms  # noqa: E402
import numpy as np  # noqa: E402

from ..experiment import _tag  # noqa: E402
from ..trace import Trace  # noqa: E402
from .curves import Curve, final_value, median_crossing  # noqa: E402
from .plots import _save, draw_band, plain_log_ticks  # noqa: E402

HEADER = ["family", "run", "gamma", "seeds", "rounds", "SFO/worker", "epochs", "final training loss",
          "final test accuracy (%)", "best test accuracy (%)", "wall time (s)", "evaluation share"]
#: The small batch with the standard step decay: the accuracy CR-PSGD is held to.
REFERENCE = "psgd-b16-step"
#: The method every CR-PSGD run with the geometric batch schedule belongs to (its rho x B1 variants compete as one).
CR_PSGD = "cr-psgd"
#: "Within 1 point" of test accuracy, and "at least 10x fewer rounds".
GAP, FEWER = 0.01, 10.0
#: The band drawn around each median: min to max over the seeds (3 seeds: an interquartile range would be
#: interpolated between them).
SPAN = (0.0, 100.0)
#: Statuses drawn: finished runs (a diverged one is a result: no finite final loss); with `partial`, also those
#: still running or stopped, marked as such.
DONE = ("complete", "diverged")
PARTIAL = ("running", "interrupted", "failed")


@dataclass
class Setting:
    """The traces (seeds) of one run of a family at one point of its sweep."""

    name: str  # the traces' label: the run's label and its swept values (`psgd-b512-gamma_0.1`)
    run: str  # the family's run label (`psgd-b512`)
    method: str  # what competes in a grid: the run label, or CR_PSGD for every geometric CR-PSGD run
    swept: dict[str, Any]
    traces: list[Trace]

    @property
    def config(self) -> dict[str, Any]:
        return self.traces[0].config

    @property
    def done(self) -> bool:
        """Every seed finished (complete or diverged)."""
        return all(tr.status in DONE for tr in self.traces)

    @property
    def shown(self) -> str:
        """The run label, marked when some seed has not finished."""
        return self.run if self.done else f"{self.run} (partial)"


def epochs(tr: Trace, sfo: np.ndarray) -> np.ndarray:
    """Passes over the training set: SFO per worker x N / training samples."""
    return np.asarray(sfo, dtype=np.float64) * int(tr.attrs["N"]) / int(tr.config["n_samples"])


def method_of(fam: Any, run: str) -> str:
    """The method a run of the family belongs to: CR_PSGD for CR-PSGD with the geometric batch schedule (whatever
    its rho and B1), else the run's own label."""
    merged = {**fam.base, **fam.runs[run]}
    geometric = merged.get("algorithm") == "cr-psgd" and merged.get("schedule", "geometric") == "geometric"
    return CR_PSGD if geometric else run


def settings_of(fam: Any, groups: dict[str, list[Trace]]) -> list[Setting]:
    """The groups of traces as settings of the family (its runs' file order, then the sweep's): which run and
    swept values each is, and its method. Groups the family does not name (an old label) are their own run."""
    keys = list(fam.sweep)
    index: dict[str, tuple[int, str, str, dict[str, Any]]] = {}
    for run in fam.runs:
        for values in itertools.product(*(fam.sweep[k] for k in keys)):
            name = "-".join([run, *(_tag(k, v) for k, v in zip(keys, values))])
            index[name] = (len(index), run, method_of(fam, run), dict(zip(keys, values)))
    out = []
    for name, traces in groups.items():
        traces = [tr for tr in traces if len(tr.evals)]
        if traces:
            _, run, method, swept = index.get(name, (len(index), name, name, {}))
            out.append(Setting(name, run, method, swept, traces))
    return sorted(out, key=lambda s: (index.get(s.name, (len(index),))[0], s.name))


def final_loss(s: Setting) -> float:
    """Median over the seeds of the final training loss; inf where a seed diverged (or ended without a finite one)."""
    vals = [final_value(tr, "loss") if tr.status != "diverged" else math.inf for tr in s.traces]
    return float(np.median([v if math.isfinite(v) else math.inf for v in vals]))


def winners(settings: list[Setting]) -> dict[str, Setting]:
    """Per method, the finished setting with the lowest final training loss (median over seeds), in the order the
    methods first appear; a method none of whose settings finished with a finite loss has no winner."""
    best: dict[str, Setting] = {}
    for s in settings:
        if not s.done or not math.isfinite(final_loss(s)):
            continue
        if s.method not in best or final_loss(s) < final_loss(best[s.method]):
            best[s.method] = s
    order = list(dict.fromkeys(s.method for s in settings))
    return {m: best[m] for m in order if m in best}


def chosen(fam: Any, settings: list[Setting]) -> list[Setting]:
    """What the curves and the table show: every setting of a family without a sweep (several CR-PSGD variants
    included); of a grid, each method's winner (a method with no finished setting: its lowest loss so far)."""
    if not fam.sweep:
        return settings
    won = winners(settings)
    out = []
    for method in dict.fromkeys(s.method for s in settings):
        mine = [s for s in settings if s.method == method]
        out.append(won.get(method) or min(mine, key=final_loss))
    return out


def gamma_text(cfg: dict[str, Any], prefix: str = "gamma ") -> str:
    """The base step size and its schedule: `gamma 0.1 (x0.1 at rounds 117,175)`, `gamma 0.2`."""
    parts = []
    name = str(cfg.get("gamma_schedule", "constant"))
    if name == "step":
        f = float(cfg.get("gamma_factor", 0.1))
        parts.append(f"x{f:g} at rounds {cfg['gamma_milestones']}" if cfg.get("gamma_milestones")
                     else f"x{f:g} every {cfg.get('gamma_every')} rounds")
    elif name != "constant":
        parts.append(name)
    if int(cfg.get("warmup_rounds", 0) or 0):
        parts.append(f"warm-up {cfg['warmup_rounds']} rounds")
    gamma = cfg.get("gamma")
    text = prefix + (f"{gamma:g}" if isinstance(gamma, (int, float)) else "default")
    return text + (f" ({', '.join(parts)})" if parts else "")


def optimizer_text(cfg: dict[str, Any]) -> str:
    """Momentum and weight decay as the runs used them."""
    beta = float(cfg.get("momentum", 0.0) or 0.0)
    text = (f"{'Nesterov' if cfg.get('nesterov') else 'heavy-ball'} momentum {beta:g}" if beta else "no momentum")
    if float(cfg.get("weight_decay", 0.0) or 0.0):
        text += f", weight decay {cfg['weight_decay']:g}"
    if cfg.get("regularizer") == "l2" and float(cfg.get("lam", 0.0) or 0.0):
        text += f", L2 {cfg['lam']:g}"
    return text


def _legend(s: Setting) -> str:
    extra = ""
    if s.method == CR_PSGD:
        extra = f", rho {s.config.get('rho'):g}, B1 {s.config.get('B1')}"
    return f"{s.shown}: {gamma_text(s.config)}{extra}"


def _eval_curves(s: Setting, metric: str, x: str) -> list[Curve]:
    """Each seed's metric at its evaluations against epochs (from 0) or rounds (from round 1: a log axis); test
    accuracy in percent."""
    out = []
    for tr in s.traces:
        ev = tr.evals
        y = ev[metric].to_numpy(np.float64) * (100.0 if metric == "test_accuracy" else 1.0)
        xs = epochs(tr, ev["sfo"].to_numpy()) if x == "epochs" else ev["round"].to_numpy(np.float64)
        keep = np.isfinite(y) & ((xs > 0) if x == "rounds" else np.isfinite(xs))
        out.append(Curve(xs[keep], y[keep]))
    return out


def _markers(ax: plt.Axes, curves: list[Curve], color: Any) -> None:
    """The median at each evaluation, where every seed evaluated at the same points (where the evaluations are)."""
    curves = [c for c in curves if c.x.size]
    if curves and all(c.x.shape == curves[0].x.shape and np.allclose(c.x, curves[0].x) for c in curves):
        ax.plot(curves[0].x, np.median(np.vstack([c.y for c in curves]), axis=0), ".", color=color, markersize=5)


def _per_round(tr: Trace, column: str) -> tuple[np.ndarray, np.ndarray]:
    """A per-round column against the epochs done at the end of each round, from epoch 0 (for a step plot "pre":
    the round's value over the epochs it spends; traces before `rounds/gamma`: the config's constant step)."""
    x = epochs(tr, tr.rounds["sfo"].to_numpy())
    if column in tr.rounds:
        y = tr.rounds[column].to_numpy(np.float64)
    else:
        y = np.full(x.shape, np.nan)
    if column == "gamma" and not np.isfinite(y).any() and isinstance(tr.config.get("gamma"), (int, float)):
        y = np.full(x.shape, float(tr.config["gamma"]))
    return np.concatenate([[0.0], x]), np.concatenate([y[:1], y])  # the first round from epoch 0


def _clip(ax: plt.Axes, values: list[np.ndarray], rising: bool) -> None:
    """A linear y axis over the evaluations after round 0: a loss from its lowest value to the 98th percentile (the
    start and the first spikes above it are cut), an accuracy from the 2nd percentile to its highest value."""
    v = np.concatenate(values) if values else np.array([])
    v = v[np.isfinite(v)]
    if v.size < 2:
        return
    lo, hi = (np.percentile(v, 2), v.max()) if rising else (v.min(), np.percentile(v, 98))
    pad = 0.05 * (hi - lo) if hi > lo else 0.05 * abs(hi) + 1e-3
    ax.set_ylim(max(lo - pad, 0.0), min(hi + pad, 100.0) if rising else hi + pad)


def _seed_text(settings: list[Setting], band: bool = True) -> str:
    seeds = sorted({int(tr.attrs.get("seed", -1)) for s in settings for tr in s.traces})
    if len(seeds) == 1:
        return f"seed {seeds[0]}"
    return f"seeds {','.join(map(str, seeds))}: median over seeds" + (", band min to max" if band else "")


def deep_figure(name: str, fam: Any, groups: dict[str, list[Trace]], out: Path) -> list[Path]:
    """The curves of `chosen` settings (2 x 3 panels: training loss and test accuracy against epochs and against
    rounds, the step size and the per-worker batch size per round against epochs); for a family with a sweep also
    `grid_figure` as `<name>_gamma`."""
    settings = settings_of(fam, groups)
    shown = chosen(fam, settings)
    if not shown:
        return []
    fig, axes = plt.subplots(2, 3, figsize=(17, 9.5), layout="constrained")
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    if len(shown) > len(colors):
        colors = [plt.get_cmap("tab20")(i % 20) for i in range(len(shown))]
    seen: dict[str, list[np.ndarray]] = {"loss": [], "test_accuracy": []}
    for i, s in enumerate(shown):
        c, text = colors[i], _legend(s)
        for row, metric in enumerate(("loss", "test_accuracy")):
            for col, x in enumerate(("epochs", "rounds")):
                curves = _eval_curves(s, metric, x)
                draw_band(axes[row, col], curves, text if (row, col) == (0, 0) else "", c, logx=x == "rounds",
                          logy=False, span=SPAN, interp_logx=x == "rounds")
                _markers(axes[row, col], curves, c)
            seen[metric] += [cv.y for cv in _eval_curves(s, metric, "rounds")]
        for ax, column in ((axes[0, 2], "gamma"), (axes[1, 2], "batch_size")):
            at, values = _per_round(s.traces[0], column)
            ax.step(at, values, where="pre", color=c)
    what = "training loss" + (f" (eval mode, {shown[0].config.get('eval_samples')} training images)"
                              if shown[0].config.get("eval_samples") else "")
    for row, (metric, ylabel) in enumerate((("loss", what), ("test_accuracy", "test accuracy (%)"))):
        axes[row, 0].set(xlabel="epochs (SFO per worker x N / training samples)", ylabel=ylabel)
        axes[row, 1].set(xlabel="communication rounds", ylabel=ylabel, xscale="log")
        for ax in axes[row, :2]:
            _clip(ax, seen[metric], rising=metric == "test_accuracy")
    axes[0, 0].set_title("y axis: the evaluations after round 0, loss up to its 98th percentile", fontsize=9)
    axes[1, 0].set_title("y axis: the evaluations after round 0, from their 2nd percentile", fontsize=9)
    axes[0, 2].set(xlabel="epochs", ylabel="step size gamma of the round (first seed)", yscale="log")
    axes[1, 2].set(xlabel="epochs", ylabel="per-worker batch size of the round (first seed)", yscale="log")
    for ax in axes.flat:
        ax.grid(True, which="major", alpha=0.3)
    for ax in (axes[0, 2], axes[1, 2]):
        lo, hi = ax.get_ylim()
        plain_log_ticks(ax.yaxis, lo, hi)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(3, len(labels)), fontsize=9)
    tr0 = shown[0].traces[0]
    T = int(tr0.attrs["T"])
    grid = " each method at its best gamma of the grid (lowest final training loss);" if fam.sweep else ""
    fig.suptitle(f"{fam.title}: N={tr0.attrs['N']}, T={T} SFO per worker ({float(epochs(tr0, np.array([T]))[0]):.3g} "
                 f"epochs), {optimizer_text(tr0.config)};{grid} {_seed_text(shown)}")
    made = _save(fig, out, name, dpi=100)
    if fam.sweep:
        made += grid_figure(f"{name}_gamma", fam, settings, out)
    return made


def grid_figure(name: str, fam: Any, settings: list[Setting], out: Path) -> list[Path]:
    """Final training loss (how the winners are chosen) and final test accuracy against gamma, one line per run
    label (medians over seeds); each method's winner circled, a diverged run an x at the top."""
    fig, axes = plt.subplots(1, 2, figsize=(15, 5.8), layout="constrained")
    runs = list(dict.fromkeys(s.run for s in settings))
    cmap = plt.get_cmap("tab10")
    won = {id(s) for s in winners(settings).values()}
    top = mtransforms.blended_transform_factory(axes[0].transData, axes[0].transAxes)
    for i, run in enumerate(runs):
        mine = sorted((s for s in settings if s.run == run), key=lambda s: float(s.config.get("gamma", math.nan)))
        g = np.array([float(s.config.get("gamma", math.nan)) for s in mine])
        loss = np.array([final_loss(s) for s in mine])
        acc = np.array([np.median([final_value(tr, "test_accuracy") for tr in s.traces]) for s in mine])
        style = "--" if mine[0].method == CR_PSGD else "-"
        label = run + ("" if all(s.done for s in mine) else " (partial)")
        ok, part = np.isfinite(loss), np.array([not s.done for s in mine])
        c = cmap(i % 10)
        axes[0].plot(g[ok], loss[ok], style, color=c, label=label)
        axes[1].plot(g, 100 * acc, style, color=c)
        for ax, y in ((axes[0], loss), (axes[1], 100 * acc)):
            ax.plot(g[ok & ~part], y[ok & ~part], "o", color=c)
            ax.plot(g[ok & part], y[ok & part], "o", mfc="white", mec=c)  # still running: not a final value
        axes[0].plot(g[~ok], np.full((~ok).sum(), 0.97), "x", color=c, markersize=9, transform=top)
        for s, gi, li, ai in zip(mine, g, loss, acc):
            if id(s) in won:
                axes[0].plot([gi], [li], "o", markersize=15, mfc="none", mec=cmap(i % 10), mew=2)
                axes[1].plot([gi], [100 * ai], "o", markersize=15, mfc="none", mec=cmap(i % 10), mew=2)
    gammas = sorted({float(s.config.get("gamma", math.nan)) for s in settings})
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xticks(gammas, [f"{v:g}" for v in gammas])
        ax.minorticks_off()
        ax.set_xlabel("base step size gamma")
        ax.grid(True, which="major", alpha=0.3)
    axes[0].set_ylabel("final training loss (median over seeds)")
    axes[0].set_title("winner per method circled (lowest final training loss); x at the top: diverged; "
                      "hollow: still running", fontsize=9)
    axes[1].set_ylabel("final test accuracy (%, median over seeds)")
    axes[1].set_title("dashed: CR-PSGD's rho x B1 variants, which compete as one method", fontsize=9)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(4, len(labels)), fontsize=9)
    tr0 = settings[0].traces[0]
    T = int(tr0.attrs["T"])
    fig.suptitle(f"{fam.title}: final values against gamma, N={tr0.attrs['N']}, T={T} SFO per worker "
                 f"({float(epochs(tr0, np.array([T]))[0]):.3g} epochs), {optimizer_text(tr0.config)}; "
                 f"{_seed_text(settings, band=False)}")
    return _save(fig, out, name, dpi=100)


def grid_report(fam: Any, groups: dict[str, list[Trace]]) -> str:
    """The grid in words: final training loss per run and gamma (the winners starred), how many settings have
    finished, and each method's winner with the values the final config needs."""
    settings = settings_of(fam, groups)
    total = len(fam.runs) * math.prod(len(v) for v in fam.sweep.values()) if fam.sweep else len(fam.runs)
    finished = sum(s.done for s in settings)
    won = winners(settings)
    lines = [f"{fam.name}: {finished} of {total} grid settings finished; the winners by final training loss "
             f"(median over seeds; CR-PSGD's rho x B1 variants compete as one method):"]
    gammas = sorted({float(s.config.get("gamma", math.nan)) for s in settings})
    width = max((len(r) for r in fam.runs), default=10)
    lines.append("  " + "run".ljust(width) + "".join(f"  gamma {g:<8g}" for g in gammas))
    ids = {id(s) for s in won.values()}
    for run in dict.fromkeys(s.run for s in settings):
        cells = []
        for g in gammas:
            s = next((t for t in settings if t.run == run and float(t.config.get("gamma", math.nan)) == g), None)
            if s is None:
                cells.append("-")
            else:
                v = final_loss(s)
                cell = ("diverged" if math.isinf(v) else f"{v:.4f}") + ("*" if id(s) in ids else "")
                cells.append(cell + ("" if s.done else " (part)"))
        lines.append("  " + run.ljust(width) + "".join(f"  {c:<14}" for c in cells))
    for method, s in won.items():
        extra = f" ({s.run}: rho {s.config.get('rho'):g}, B1 {s.config.get('B1')})" if method == CR_PSGD else ""
        lines.append(f"  {method} -> {gamma_text(s.config)}{extra}; final training loss {final_loss(s):.4f}")
    missing = [m for m in dict.fromkeys(method_of(fam, run) for run in fam.runs) if m not in won]
    if missing:
        lines.append(f"  no finished setting yet: {', '.join(missing)}")
    return "\n".join(lines)


def _median_spread(vals: list[float], fmt: str, scale: float = 1.0, none: str = "-") -> str:
    """The median over seeds, and their range where it shows at this precision: `87.3 (86.9-87.6)`; `none` where no
    seed has a finite value."""
    v = [scale * x for x in vals if math.isfinite(x)]
    if not v:
        return none
    text, lo, hi = (format(float(x), fmt) for x in (np.median(v), min(v), max(v)))
    if lo != hi:
        text += f" ({lo}-{hi})"
    return text


def _wall(tr: Trace) -> tuple[float, float]:
    """Seconds of rounds plus evaluations, and the evaluations' share of them (a running trace: from its rounds)."""
    rounds = tr.attrs.get("wall_time")
    if rounds is None:
        rounds = float(tr.rounds["wall_time"].iloc[-1]) if len(tr.rounds) and "wall_time" in tr.rounds else math.nan
    ev = float(tr.attrs.get("eval_time", math.nan))
    total = float(rounds) + (ev if math.isfinite(ev) else 0.0)
    return total, (ev / total if total > 0 and math.isfinite(ev) else math.nan)


def deep_rows(fam: Any, groups: dict[str, list[Trace]]) -> list[list[str]]:
    """One row per `chosen` setting: gamma and its schedule, seeds, rounds, SFO per worker and epochs (medians),
    final training loss, final and best test accuracy, wall time (rounds + evaluations) and the evaluations' share
    of it: medians over seeds, with the range over them where there are several."""
    rows = []
    for s in chosen(fam, settings_of(fam, groups)):
        tr0 = s.traces[0]
        rounds = float(np.median([len(tr.rounds) for tr in s.traces]))
        sfo = float(np.median([tr.rounds["sfo"].iloc[-1] if len(tr.rounds) else 0 for tr in s.traces]))
        walls = [_wall(tr) for tr in s.traces]
        run = s.run + (f" (rho {s.config.get('rho'):g}, B1 {s.config.get('B1')})"
                       if s.method == CR_PSGD and fam.sweep else "") + ("" if s.done else " (partial)")
        diverged = "diverged" if any(tr.status == "diverged" for tr in s.traces) else "-"
        rows.append([
            fam.name, run, gamma_text(s.config, prefix=""), str(len(s.traces)), f"{rounds:.0f}", f"{sfo:.0f}",
            f"{float(epochs(tr0, np.array([sfo]))[0]):.2f}",
            _median_spread([final_value(tr, "loss") for tr in s.traces], ".4f", none=diverged),
            _median_spread([final_value(tr, "test_accuracy") for tr in s.traces], ".1f", 100.0),
            _median_spread([float(np.nanmax(tr.evals["test_accuracy"].to_numpy(np.float64))) for tr in s.traces],
                           ".1f", 100.0),
            _median_spread([w for w, _ in walls], ".0f"),
            _median_spread([e for _, e in walls], ".0%")])
    return rows


def _name(s: Setting) -> str:
    return "CR-PSGD" if s.method == CR_PSGD else s.run


def deep_verdict(fam: Any, groups: dict[str, list[Trace]]) -> list[str]:
    """One line per growing-batch method of the family (CR-PSGD, and a step batch schedule if there is one) against
    PSGD B=16 (`REFERENCE`), both as `chosen`: does it reach PSGD B=16's final test accuracy (median over seeds)
    within 1 point (its test accuracy first at that level, interpolated between evaluations, for more than half
    of its seeds), with at least 10x fewer rounds than PSGD B=16 needs to reach the same level, and at what SFO per
    worker against PSGD B=16's to that level. Computed from the traces."""
    shown = {s.method: s for s in chosen(fam, settings_of(fam, groups))}
    ref = shown.get(REFERENCE)
    growing = [s for m, s in shown.items() if m != REFERENCE and s.config.get("algorithm") == "cr-psgd"]
    if ref is None or not growing:
        what = f"no {REFERENCE} run" if ref is None else "no CR-PSGD run"
        return [f"{fam.name}: {what} with traces yet: no verdict."]

    def series(s: Setting, x: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
        return ([tr.evals[x].to_numpy(np.float64) for tr in s.traces],
                [tr.evals["test_accuracy"].to_numpy(np.float64) for tr in s.traces])

    def med(s: Setting, f: Any) -> float:
        return float(np.median([f(tr) for tr in s.traces]))

    acc = med(ref, lambda tr: final_value(tr, "test_accuracy"))
    level = acc - GAP
    ref_rounds, ref_sfo = median_crossing(*series(ref, "round"), level, True), \
        median_crossing(*series(ref, "sfo"), level, True)
    ref_total = med(ref, lambda tr: len(tr.rounds))
    partial = "" if ref.done and all(s.done for s in growing) else " [partial traces]"
    lines = []
    for s in growing:
        final = med(s, lambda tr: final_value(tr, "test_accuracy"))
        best = med(s, lambda tr: float(np.nanmax(tr.evals["test_accuracy"].to_numpy(np.float64))))
        rounds, sfo = median_crossing(*series(s, "round"), level, True), median_crossing(*series(s, "sfo"), level, True)
        total = med(s, lambda tr: len(tr.rounds))
        head = (f"{fam.name}: {_name(s)} ({s.run}, {gamma_text(s.config)}) against PSGD B=16 ({gamma_text(ref.config)}; "
                f"final test accuracy {100 * acc:.1f}% after {ref_total:.0f} rounds): ")
        if math.isnan(rounds):
            lines.append(head + f"does not reach {100 * level:.1f}% (final {100 * final:.1f}%, best {100 * best:.1f}%, "
                         f"in {total:.0f} rounds and {med(s, lambda tr: tr.rounds['sfo'].iloc[-1]):.0f} SFO per "
                         f"worker): no.{partial}")
            continue
        if math.isnan(ref_rounds):
            lines.append(head + f"reaches {100 * level:.1f}% after {rounds:.0f} rounds and {sfo:.0f} SFO per worker, "
                         f"which PSGD B=16 itself does not reach for most seeds: no comparison.{partial}")
            continue
        ratio = ref_rounds / rounds if rounds > 0 else math.inf
        yes = ratio >= FEWER
        lines.append(head + f"reaches {100 * level:.1f}% (within 1 point) after {rounds:.0f} rounds against "
                     f"{ref_rounds:.0f} for PSGD B=16 ({ratio:.1f}x fewer), at {sfo:.0f} SFO per worker against "
                     f"{ref_sfo:.0f} ({sfo / ref_sfo:.2f}x); final {100 * final:.1f}%, best {100 * best:.1f}%: "
                     + ("yes." if yes else f"no (fewer than {FEWER:g}x fewer rounds).") + partial)
    return lines
